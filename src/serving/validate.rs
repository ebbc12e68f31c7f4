//! Checking a request against the model's signature, once, before it is queued.
//!
//! [`ValidatedInputs`] can only be built here, so a worker never sees unchecked tensors.

use crate::error::ServeError;
use crate::tensor::{element_count, Signature, Tensor, TensorData, TensorSpec};

/// Inputs that match the signature exactly, in the signature's input order.
#[derive(Debug)]
pub struct ValidatedInputs {
    tensors: Vec<Tensor>,
}

impl ValidatedInputs {
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Inputs already validated elsewhere: a placement worker process receives them from the
    /// server, which validated them against the same signature.
    pub fn trusted(tensors: Vec<Tensor>) -> ValidatedInputs {
        ValidatedInputs { tensors }
    }

    /// Zero-filled inputs of the model's shapes (dynamic dimensions become 1), for warm-up.
    pub fn zeros(signature: &Signature) -> Result<ValidatedInputs, ServeError> {
        let tensors = signature
            .inputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .shape
                    .iter()
                    .map(|&d| if d < 0 { 1 } else { d as usize })
                    .collect();
                let count = element_count(&shape).ok_or_else(|| overflow(&spec.name))?;
                Ok(match spec.dtype.element_size() {
                    Some(size) => Tensor::raw(spec.dtype, shape, vec![0u8; count * size]),
                    None => Tensor::strings(shape, vec![bytes::Bytes::new(); count]),
                })
            })
            .collect::<Result<_, ServeError>>()?;
        Ok(ValidatedInputs { tensors })
    }
}

fn overflow(input: &str) -> ServeError {
    ServeError::invalid(format!(
        "Invalid input shape - the element count overflows; input name: {input}"
    ))
}

/// The specs' names, comma-separated, as error messages list what a model takes.
pub(crate) fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches named inputs to the signature: every input present once, right dtype, right shape,
/// right byte count. Errors name the input and say what was expected and what came.
pub fn validate_inputs(
    model: &str,
    signature: &Signature,
    inputs: Vec<(String, Tensor)>,
) -> Result<ValidatedInputs, ServeError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    for (name, tensor) in inputs {
        let Some(index) = signature.input_index(&name) else {
            return Err(ServeError::UnexpectedInput {
                model: model.to_string(),
                input: name,
                expected: names(&signature.inputs),
            });
        };
        if slots[index].is_some() {
            return Err(ServeError::invalid(format!(
                "Input given more than once; input name: {name}"
            )));
        }
        check_tensor(&signature.inputs[index], &tensor)?;
        slots[index] = Some(tensor);
    }
    let tensors = slots
        .into_iter()
        .zip(&signature.inputs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| ServeError::MissingInput {
                model: model.to_string(),
                input: spec.name.clone(),
                expected: names(&signature.inputs),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ValidatedInputs { tensors })
}

fn check_tensor(spec: &TensorSpec, tensor: &Tensor) -> Result<(), ServeError> {
    if spec.dtype != tensor.dtype {
        return Err(ServeError::InvalidPrecision {
            input: spec.name.clone(),
            expected: spec.dtype,
            actual: tensor.dtype,
        });
    }
    let shape_matches = spec.shape.len() == tensor.shape.len()
        && spec
            .shape
            .iter()
            .zip(&tensor.shape)
            .all(|(&want, &got)| want < 0 || want as usize == got);
    if !shape_matches {
        return Err(ServeError::InvalidShape {
            input: spec.name.clone(),
            expected: spec.shape.clone(),
            actual: tensor.shape.clone(),
        });
    }
    let count = element_count(&tensor.shape).ok_or_else(|| overflow(&spec.name))?;
    match (&tensor.data, tensor.dtype.element_size()) {
        (TensorData::Raw(bytes), Some(size)) => {
            let expected = count
                .checked_mul(size)
                .ok_or_else(|| overflow(&spec.name))?;
            if bytes.len() != expected {
                return Err(ServeError::ByteSizeMismatch {
                    input: spec.name.clone(),
                    expected,
                    actual: bytes.len(),
                });
            }
        }
        (TensorData::Strings(values), None) => {
            if values.len() != count {
                return Err(ServeError::invalid(format!(
                    "Invalid number of strings - Expected: {count}; Actual: {}; input name: {}",
                    values.len(),
                    spec.name
                )));
            }
        }
        // The data's form disagrees with its own dtype (a transport bug or a forged tensor).
        _ => {
            return Err(ServeError::InvalidPrecision {
                input: spec.name.clone(),
                expected: spec.dtype,
                actual: tensor.dtype,
            })
        }
    }
    Ok(())
}

/// Turns an output filter (names) into signature indices; an empty filter means every output.
pub fn select_outputs(
    model: &str,
    signature: &Signature,
    filter: &[String],
) -> Result<Vec<usize>, ServeError> {
    if filter.is_empty() {
        return Ok((0..signature.outputs.len()).collect());
    }
    let mut picked = Vec::with_capacity(filter.len());
    for name in filter {
        let index = signature
            .output_index(name)
            .ok_or_else(|| ServeError::UnknownOutput {
                model: model.to_string(),
                output: name.clone(),
                available: names(&signature.outputs),
            })?;
        if !picked.contains(&index) {
            picked.push(index);
        }
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{tensor_from_slice, DataType};

    fn sig() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    dtype: DataType::F32,
                    shape: vec![-1, 2],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DataType::I64,
                    shape: vec![1],
                },
            ],
            outputs: vec![
                TensorSpec {
                    name: "y".into(),
                    dtype: DataType::F32,
                    shape: vec![-1, 2],
                },
                TensorSpec {
                    name: "z".into(),
                    dtype: DataType::F32,
                    shape: vec![1],
                },
            ],
        }
    }

    fn a(rows: usize) -> (String, Tensor) {
        (
            "a".into(),
            tensor_from_slice(DataType::F32, vec![rows, 2], &vec![0f32; rows * 2]),
        )
    }

    fn b() -> (String, Tensor) {
        (
            "b".into(),
            tensor_from_slice(DataType::I64, vec![1], &[7i64]),
        )
    }

    #[test]
    fn accepts_and_orders_by_signature() {
        let v = validate_inputs("m", &sig(), vec![b(), a(3)]).unwrap();
        assert_eq!(v.tensors()[0].shape, vec![3, 2]);
        assert_eq!(v.tensors()[1].dtype, DataType::I64);
    }

    #[test]
    fn reports_each_mismatch_precisely() {
        let e = validate_inputs("m", &sig(), vec![a(1)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Missing input with specific name - Expected input: b; model m takes: a, b"
        );

        let e = validate_inputs("m", &sig(), vec![a(1), b(), ("c".into(), b().1)]).unwrap_err();
        assert!(matches!(e, ServeError::UnexpectedInput { ref input, .. } if input == "c"));

        let wrong_dtype = (
            "b".into(),
            tensor_from_slice(DataType::I32, vec![1], &[7i32]),
        );
        let e = validate_inputs("m", &sig(), vec![a(1), wrong_dtype]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid input precision - Expected: INT64; Actual: INT32; input name: b"
        );

        let wrong_shape = (
            "a".into(),
            tensor_from_slice(DataType::F32, vec![1, 3], &[0f32; 3]),
        );
        let e = validate_inputs("m", &sig(), vec![wrong_shape, b()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid input shape - Expected: (-1,2); Actual: (1,3); input name: a"
        );

        let short = (
            "a".into(),
            Tensor::raw(DataType::F32, vec![1, 2], vec![0u8; 7]),
        );
        let e = validate_inputs("m", &sig(), vec![short, b()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid content size of tensor proto - Expected: 8 bytes; Actual: 7 bytes; input name: a"
        );
    }

    #[test]
    fn overflowing_shapes_are_rejected_not_allocated() {
        let huge = (
            "a".into(),
            Tensor::raw(DataType::F32, vec![1 << 62, 2], vec![0u8; 8]),
        );
        let e = validate_inputs("m", &sig(), vec![huge, b()]).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn duplicate_inputs_are_rejected() {
        let e = validate_inputs("m", &sig(), vec![a(1), a(1), b()]).unwrap_err();
        assert!(e.to_string().contains("more than once"));
    }

    #[test]
    fn output_filter() {
        assert_eq!(select_outputs("m", &sig(), &[]).unwrap(), vec![0, 1]);
        assert_eq!(select_outputs("m", &sig(), &["z".into()]).unwrap(), vec![1]);
        let e = select_outputs("m", &sig(), &["q".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unknown output requested: q; model m gives: y, z"
        );
    }

    #[test]
    fn zeros_follow_signature() {
        let z = ValidatedInputs::zeros(&sig()).unwrap();
        assert_eq!(z.tensors()[0].shape, vec![1, 2]);
        assert_eq!(z.tensors()[0].byte_len(), 8);
        assert_eq!(z.tensors()[1].byte_len(), 8);
    }
}
