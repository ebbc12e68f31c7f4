//! The one internal tensor type every transport decodes into and encodes from.
//!
//! Core code never sees protobuf or JSON: a transport turns its wire tensors into
//! [`Tensor`] (dtype + shape + bytes), and the model's [`Signature`] says what it expects.

use bytes::Bytes;
use std::fmt;

/// Element types a model input or output can have. Names follow KServe v2 (`FP32`, `INT64`, ...),
/// which is also the vocabulary of the OVMS error messages clients already parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// Variable-length byte strings (TFS `DT_STRING`, KServe `BYTES`).
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Bytes per element, or `None` for variable-length strings.
    pub fn element_size(self) -> Option<usize> {
        use DataType::*;
        match self {
            Bool | U8 | I8 => Some(1),
            U16 | I16 | F16 | BF16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Bytes => None,
        }
    }

    /// The KServe v2 datatype string.
    pub fn name(self) -> &'static str {
        use DataType::*;
        match self {
            Bool => "BOOL",
            U8 => "UINT8",
            U16 => "UINT16",
            U32 => "UINT32",
            U64 => "UINT64",
            I8 => "INT8",
            I16 => "INT16",
            I32 => "INT32",
            I64 => "INT64",
            F16 => "FP16",
            BF16 => "BF16",
            F32 => "FP32",
            F64 => "FP64",
            Bytes => "BYTES",
        }
    }

    pub fn from_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shape as written in error messages: `(1,3,224,224)`; `-1` marks a dynamic dimension.
pub struct ShapeDisplay<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for ShapeDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str(")")
    }
}

/// Product of the dimensions, or `None` if it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A model input or output as the model declares it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    /// Dimensions; `-1` is dynamic (any size).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether any dimension is dynamic, so requests may send other sizes.
    pub fn is_dynamic(&self) -> bool {
        self.shape.iter().any(|&d| d < 0)
    }
}

/// What a loaded model version takes and gives, in the model's own order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|s| s.name == name)
    }

    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|s| s.name == name)
    }
}

/// Tensor contents: raw little-endian bytes for numeric types, a list of strings for `Bytes`.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Raw(Bytes),
    Strings(Vec<Bytes>),
}

/// One named-less tensor: element type, concrete shape and contents.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn raw(dtype: DataType, shape: Vec<usize>, bytes: impl Into<Bytes>) -> Tensor {
        Tensor {
            dtype,
            shape,
            data: TensorData::Raw(bytes.into()),
        }
    }

    pub fn strings(shape: Vec<usize>, values: Vec<Bytes>) -> Tensor {
        Tensor {
            dtype: DataType::Bytes,
            shape,
            data: TensorData::Strings(values),
        }
    }

    /// Raw bytes of a numeric tensor (empty for string tensors).
    pub fn raw_bytes(&self) -> &[u8] {
        match &self.data {
            TensorData::Raw(b) => b,
            TensorData::Strings(_) => &[],
        }
    }

    /// Number of bytes the contents take (for strings: the sum of their lengths).
    pub fn byte_len(&self) -> usize {
        match &self.data {
            TensorData::Raw(b) => b.len(),
            TensorData::Strings(v) => v.iter().map(|s| s.len()).sum(),
        }
    }
}

/// Build a tensor of native numbers (tests, warm-up, codecs). Every target we run on is
/// little-endian x86_64, which is also the wire order of `tensor_content` and raw KServe bytes.
pub fn tensor_from_slice<T: bytemuck::Pod>(
    dtype: DataType,
    shape: Vec<usize>,
    values: &[T],
) -> Tensor {
    Tensor::raw(dtype, shape, bytemuck::cast_slice::<T, u8>(values).to_vec())
}

/// Read a numeric tensor back as native numbers; `None` when the byte count is not a multiple
/// of the element size. Copies, so the source bytes need no particular alignment.
pub fn tensor_to_vec<T: bytemuck::Pod>(tensor: &Tensor) -> Option<Vec<T>> {
    let bytes = tensor.raw_bytes();
    bytes
        .len()
        .is_multiple_of(std::mem::size_of::<T>())
        .then(|| bytemuck::pod_collect_to_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_name(d.name()), Some(d));
        }
        assert_eq!(DataType::from_name("FLOAT"), None);
    }

    #[test]
    fn shape_display_matches_ovms_wording() {
        assert_eq!(
            ShapeDisplay(&[1i64, 3, 224, -1]).to_string(),
            "(1,3,224,-1)"
        );
        assert_eq!(ShapeDisplay::<usize>(&[]).to_string(), "()");
    }

    #[test]
    fn element_count_detects_overflow() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[1 << 40, 1 << 40]), None);
    }

    #[test]
    fn pod_round_trip() {
        let t = tensor_from_slice(DataType::F32, vec![3], &[1.0f32, -2.5, 3.25]);
        assert_eq!(t.byte_len(), 12);
        assert_eq!(tensor_to_vec::<f32>(&t).unwrap(), vec![1.0, -2.5, 3.25]);
        assert!(tensor_to_vec::<f64>(&Tensor::raw(DataType::F64, vec![1], vec![0u8; 5])).is_none());
    }
}
