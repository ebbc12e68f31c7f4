//! Tensor values as bytes and back (little-endian, as every wire format here carries them).

/// Floats that a lossy path would change: -0.0, a denormal, infinity, 0.1, a large value.
pub const AWKWARD_F32: [f32; 10] = [
    -0.0,
    1e-40,
    f32::INFINITY,
    3.5,
    -2.25,
    0.1,
    7.0,
    8.0,
    9.0,
    1e30,
];

pub fn le_bytes<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

pub fn from_le<T: bytemuck::Pod>(raw: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(raw)
}

pub fn halves(values: &[f32]) -> Vec<half::f16> {
    values.iter().map(|&v| half::f16::from_f32(v)).collect()
}

/// [`le_bytes`] for f32 (so untyped float literals are f32, not f64).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    le_bytes(values)
}
