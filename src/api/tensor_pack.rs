//! What both tensor codecs (TF Serving's `TensorProto`, KServe's `InferTensorContents`) do
//! alike with a wire tensor: check its dimensions, check how many typed values it carries, and
//! pack those values into the little-endian bytes of a [`Tensor`](crate::tensor::Tensor), each
//! error naming the input. Which repeated field holds which element type is each protocol's own.

use crate::error::{invalid_input, ServeError};
use crate::tensor::{element_count, DataType};
use std::fmt::Display;

/// A request shape as concrete dimensions: none negative, element count within `usize`.
pub fn shape(input: &str, dims: &[i64]) -> Result<Vec<usize>, ServeError> {
    let shape = dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                invalid_input(
                    input,
                    format!("Invalid input shape - negative dimension {d}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    element_count(&shape)
        .ok_or_else(|| invalid_input(input, "Invalid input shape - the element count overflows"))?;
    Ok(shape)
}

/// One typed value per element: `given` values in `field` for `count` elements.
pub fn check_count(input: &str, field: &str, count: usize, given: usize) -> Result<(), ServeError> {
    if given == count {
        return Ok(());
    }
    Err(invalid_input(
        input,
        format!("Invalid number of values in {field} - Expected: {count}; Actual: {given}"),
    ))
}

/// The values' little-endian bytes: one bulk copy, no per-element work.
pub fn pack<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

/// Booleans as one byte each, 0 or 1.
pub fn pack_bools(values: &[bool]) -> Vec<u8> {
    values.iter().map(|&b| u8::from(b)).collect()
}

/// Packs values of a wider wire type (TFS `int_val`, KServe `int_contents`, `uint_contents`)
/// as the element type, rejecting any value that does not fit.
pub fn narrow<S: Copy + Display, T: TryFrom<S> + bytemuck::Pod>(
    input: &str,
    field: &str,
    dtype: DataType,
    values: &[S],
) -> Result<Vec<u8>, ServeError> {
    let narrowed = values
        .iter()
        .map(|&v| {
            T::try_from(v).map_err(|_| {
                invalid_input(input, format!("value {v} in {field} does not fit {dtype}"))
            })
        })
        .collect::<Result<Vec<T>, _>>()?;
    Ok(pack(&narrowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape("x", &[]), Ok(vec![]));
        assert_eq!(shape("x", &[2, 0, 3]), Ok(vec![2, 0, 3]));
        let e = shape("x", &[1, -1]).unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid input shape - negative dimension -1; input name: x"
        );
        let e = shape("x", &[1 << 40, 1 << 40]).unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid input shape - the element count overflows; input name: x"
        );
    }

    #[test]
    fn counts() {
        assert_eq!(check_count("x", "fp32_contents", 3, 3), Ok(()));
        assert_eq!(
            check_count("x", "float_val", 4, 2).unwrap_err().to_string(),
            "Invalid number of values in float_val - Expected: 4; Actual: 2; input name: x"
        );
    }

    #[test]
    fn packing_and_narrowing() {
        assert_eq!(pack(&[1u16, 0x0203]), vec![1, 0, 3, 2]);
        assert_eq!(pack_bools(&[true, false]), vec![1, 0]);
        assert_eq!(
            narrow::<i32, i8>("x", "int_val", DataType::I8, &[-128, 127]),
            Ok(vec![0x80, 0x7f])
        );
        assert_eq!(
            narrow::<u32, u16>("x", "uint_contents", DataType::U16, &[65536])
                .unwrap_err()
                .to_string(),
            "value 65536 in uint_contents does not fit UINT16; input name: x"
        );
    }
}
