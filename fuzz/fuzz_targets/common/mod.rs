//! What several targets share: the fixed signatures requests are checked against, and the
//! invariants every decoded or validated tensor must keep.

#![allow(dead_code)]

use vinoserve::tensor::{element_count, DataType, Signature, Tensor, TensorData, TensorSpec};

pub fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

/// A model with a dynamic batch, a fixed shape, a string input and an image-shaped input.
pub fn signature() -> Signature {
    Signature {
        inputs: vec![
            spec("x", DataType::F32, &[-1, 3]),
            spec("ids", DataType::I64, &[2]),
            spec("s", DataType::Bytes, &[-1]),
            spec("img", DataType::U8, &[-1, 2, 2, 3]),
        ],
        outputs: vec![spec("y", DataType::F32, &[-1, 3])],
    }
}

/// A model with one input of `dtype` (bare values in the REST row and columnar formats).
pub fn single(dtype: DataType) -> Signature {
    Signature {
        inputs: vec![spec("x", dtype, &[-1, -1])],
        outputs: vec![spec("y", dtype, &[-1])],
    }
}

/// The data agrees with the dtype and the shape: raw bytes are exactly count × element size,
/// strings are exactly one per element.
pub fn assert_consistent(name: &str, t: &Tensor) {
    let count = element_count(&t.shape).expect("a decoded shape's element count fits usize");
    match (&t.data, t.dtype.element_size()) {
        (TensorData::Raw(bytes), Some(size)) => {
            let expected = count.checked_mul(size);
            assert_eq!(
                Some(bytes.len()),
                expected,
                "{name}: bytes for {:?}",
                t.shape
            )
        }
        (TensorData::Strings(values), None) => {
            assert_eq!(values.len(), count, "{name}: strings for {:?}", t.shape)
        }
        _ => panic!("{name}: data form disagrees with dtype {}", t.dtype),
    }
}

/// What validation promises: the signature's order, dtypes and shapes, consistent data.
pub fn assert_validated(signature: &Signature, tensors: &[Tensor]) {
    assert_eq!(tensors.len(), signature.inputs.len());
    for (spec, t) in signature.inputs.iter().zip(tensors) {
        assert_eq!(spec.dtype, t.dtype, "{}", spec.name);
        assert_eq!(spec.shape.len(), t.shape.len(), "{}", spec.name);
        let fits = |(&want, &got): (&i64, &usize)| want < 0 || want as usize == got;
        assert!(spec.shape.iter().zip(&t.shape).all(fits), "{}", spec.name);
        assert_consistent(&spec.name, t);
    }
}
