//! OpenVINO tensors over memory the server owns: a request's own input bytes, or a buffer that
//! becomes the response's output bytes. The `openvino` crate only makes tensors that allocate
//! (and so must be copied into and out of), so these are made with
//! `ov_tensor_create_from_host_ptr` and wrapped in the crate's `Tensor`, which frees the C
//! handle (never the memory: a host-pointer tensor does not own it).

use crate::error::BackendError;
use crate::tensor::DataType;
use bytes::Bytes;
use openvino::{ElementType, InferenceError, Tensor};
use openvino_sys::{ov_shape_t, ov_tensor_create_from_host_ptr, ov_tensor_t};

// `Tensor` holds exactly the `ov_tensor_t*` (one field); `wrap` relies on it, as `OwnedPort`
// does for `Node`.
const _: () = assert!(std::mem::size_of::<Tensor>() == std::mem::size_of::<*mut ov_tensor_t>());

pub fn element_type(dtype: DataType) -> Option<ElementType> {
    Some(match dtype {
        DataType::Bool => ElementType::Boolean,
        DataType::U8 => ElementType::U8,
        DataType::U16 => ElementType::U16,
        DataType::U32 => ElementType::U32,
        DataType::U64 => ElementType::U64,
        DataType::I8 => ElementType::I8,
        DataType::I16 => ElementType::I16,
        DataType::I32 => ElementType::I32,
        DataType::I64 => ElementType::I64,
        DataType::F16 => ElementType::F16,
        DataType::BF16 => ElementType::Bf16,
        DataType::F32 => ElementType::F32,
        DataType::F64 => ElementType::F64,
        DataType::Bytes => return None,
    })
}

/// Whether `bytes` may be read in place as elements of `dtype`: the pointer must be aligned for
/// the element type (C++ reads it as `float*`, `int64_t*`, ...). Bytes sliced out of a gRPC or
/// HTTP body sit wherever the client's framing put them, so often they are not.
pub fn aligned_for(dtype: DataType, bytes: &[u8]) -> bool {
    dtype
        .element_size()
        .is_some_and(|size| (bytes.as_ptr() as usize).is_multiple_of(size))
}

/// A tensor of `dtype` and `shape` over `data`.
///
/// # Safety
///
/// `data` must hold `shape`'s element count × the element size bytes, aligned for the element
/// type, and stay valid (not freed, not moved) while the tensor, or any infer request it is set
/// on, may use it: the caller must replace the tensor on the request before the memory goes.
/// If OpenVINO writes to it (an output), nothing else may read or write it meanwhile.
pub unsafe fn over(
    dtype: DataType,
    shape: &[usize],
    data: *mut u8,
) -> Result<Tensor, BackendError> {
    let element = element_type(dtype)
        .ok_or_else(|| BackendError::Unsupported(format!("{dtype} tensors have no fixed size")))?;
    let mut dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    // The C API copies the dimensions into its own shape before returning.
    let c_shape = ov_shape_t {
        rank: dims.len() as i64,
        dims: dims.as_mut_ptr(),
    };
    let mut tensor: *mut ov_tensor_t = std::ptr::null_mut();
    // SAFETY: `c_shape` points at `dims`, alive for the call; `tensor` receives a new handle; the
    // memory behind `data` is the caller's promise (see above).
    let status = unsafe {
        ov_tensor_create_from_host_ptr(element.into(), c_shape, data.cast(), &mut tensor)
    };
    InferenceError::convert(status, last_error())
        .map_err(|e| BackendError::Infer(format!("tensor over the request's memory: {e}")))?;
    // SAFETY: `tensor` is a fresh `ov_tensor_t*` owned by no one else; `Tensor` is that one
    // pointer (size checked above), and its `Drop` frees the handle once.
    Ok(unsafe { std::mem::transmute::<*mut ov_tensor_t, Tensor>(tensor) })
}

fn last_error() -> Option<String> {
    // SAFETY: returns a pointer to a thread-local C string, or null.
    let ptr = unsafe { openvino_sys::ov_get_last_err_msg() };
    // SAFETY: non-null pointers from `ov_get_last_err_msg` are NUL-terminated strings.
    (!ptr.is_null()).then(|| {
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

/// One cache line: the unit output buffers are allocated in, so they are aligned for every
/// element type (and for the CPU plugin's vector stores).
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A zeroed buffer for one output, written by OpenVINO during inference and then handed to the
/// response as [`Bytes`] without a copy.
pub struct OutputBuffer {
    lines: Vec<Line>,
    len: usize,
}

impl OutputBuffer {
    pub fn new(len: usize) -> OutputBuffer {
        OutputBuffer {
            lines: bytemuck::zeroed_vec(len.div_ceil(64)),
            len,
        }
    }

    /// Where OpenVINO writes. Valid while `self` is neither dropped nor turned into `Bytes`
    /// (moving `self` does not move the heap buffer).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr().cast()
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for OutputBuffer {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_follows_the_element_size() {
        let words = [0u64; 4];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert!(aligned_for(DataType::F64, bytes));
        assert!(aligned_for(DataType::F32, &bytes[4..]));
        assert!(!aligned_for(DataType::F32, &bytes[2..]));
        assert!(aligned_for(DataType::F16, &bytes[2..]));
        assert!(aligned_for(DataType::U8, &bytes[1..]));
        assert!(!aligned_for(DataType::Bytes, bytes));
    }

    #[test]
    fn output_buffers_are_aligned_and_sized() {
        let mut buffer = OutputBuffer::new(100);
        assert!((buffer.as_mut_ptr() as usize).is_multiple_of(64));
        let ptr = buffer.as_mut_ptr() as *const u8;
        let bytes = buffer.into_bytes();
        assert_eq!(bytes.len(), 100);
        assert_eq!(bytes.as_ptr(), ptr, "handed over, not copied");
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
