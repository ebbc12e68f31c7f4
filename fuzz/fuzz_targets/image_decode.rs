//! JPEG/PNG inputs: `decode_images` on arbitrary bytes for a small NHWC spec.
//!
//! Input: one selector byte (bits 0-1: the spec, bit 2: `resize_images`), then the images,
//! separated by the 4 bytes `\0IMG` (at most 4 images).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vinoserve::model::image::decode_images;
use vinoserve::tensor::{element_count, DataType};

const SEPARATOR: &[u8] = b"\0IMG";

fn split(mut rest: &[u8]) -> Vec<Bytes> {
    let mut images = Vec::new();
    while images.len() < 3 {
        let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) else {
            break;
        };
        images.push(Bytes::copy_from_slice(&rest[..at]));
        rest = &rest[at + SEPARATOR.len()..];
    }
    images.push(Bytes::copy_from_slice(rest));
    images
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let spec = match selector & 3 {
        0 => common::spec("img", DataType::U8, &[1, 8, 8, 3]),
        1 => common::spec("img", DataType::F32, &[-1, 4, 6, 1]),
        2 => common::spec("img", DataType::F16, &[1, -1, -1, 3]),
        _ => common::spec("img", DataType::I32, &[-1, -1, 8, 1]),
    };
    let resize = selector & 4 != 0;
    let images = split(rest);
    match decode_images(&spec, &images, resize) {
        Ok(t) => {
            assert_eq!(t.dtype, spec.dtype);
            assert_eq!(t.shape.len(), 4);
            assert_eq!(t.shape[0], images.len());
            for (&want, &got) in spec.shape.iter().zip(&t.shape) {
                assert!(want < 0 || want as usize == got, "{:?}", t.shape);
            }
            let size = spec.dtype.element_size().expect("a numeric dtype");
            let expected = element_count(&t.shape).and_then(|n| n.checked_mul(size));
            assert_eq!(Some(t.byte_len()), expected);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
