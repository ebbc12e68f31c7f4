//! JPEG and PNG inputs, as OVMS takes them: strings (TFS `string_val`, REST `{"b64": ..}`,
//! KServe `BYTES`) sent for a numeric NHWC input are decoded here into that input's tensor.
//!
//! Behaviour, chosen to match OVMS so a client and model moved from it get the same numbers:
//! * one string per image; the batch is the number of strings;
//! * pixels come out in **BGR** order (OVMS decodes with OpenCV), `0..=255` per channel, written
//!   as the input's dtype **without normalisation** (no mean/scale: a model that wants them has
//!   them in its graph; INT8 and BOOL inputs cannot hold the values and are refused); 16-bit
//!   PNGs are reduced to 8 bits; alpha is dropped;
//! * a colour image for a 1-channel input becomes luma with OpenCV's Rec. 601 weights, a grey
//!   image for a 3-channel input is replicated into every channel;
//! * unlike OVMS, an image whose size differs from the input's height × width is refused unless
//!   the model's config sets `resize_images` (a silent resize can hide a client bug); resizing is
//!   bilinear and does not keep the aspect ratio, like OVMS.

use crate::error::{invalid_input, ServeError};
use crate::tensor::{DataType, ShapeDisplay, Tensor, TensorData, TensorSpec};
use bytes::Bytes;
use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;

/// Largest image accepted, in pixels (8192 × 8192, 67.1 megapixels). Checked against the size the
/// header declares, before any pixel is decoded: a PNG of a few hundred bytes can declare
/// gigapixels and would otherwise make the server allocate them (a decompression bomb).
pub const MAX_IMAGE_PIXELS: u64 = 64 << 20;

/// Largest decoded batch, in bytes of the tensor built (1 GiB, the default message limit): a
/// small request of many tiny images for a dynamic batch or dynamic height/width must not turn
/// into an unbounded allocation.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// Pixel layout of an image input: `[batch, height, width, channels]`; `None` is dynamic.
struct Layout<'a> {
    input: &'a str,
    batch: Option<usize>,
    height: Option<u32>,
    width: Option<u32>,
    channels: usize,
}

/// One dimension of an image input: `Some(None)` when dynamic, `Some(Some(d))` when fixed,
/// `None` when it cannot be an image's (0, or too large for `T`).
fn dim<T: TryFrom<i64>>(d: i64) -> Option<Option<T>> {
    if d < 0 {
        Some(None)
    } else {
        T::try_from(d).ok().filter(|_| d > 0).map(Some)
    }
}

impl<'a> Layout<'a> {
    /// The layout rule: rank 4 with 1 or 3 channels last (NHWC). Anything else cannot take
    /// images, which is first of all a precision error (strings for a numeric input).
    fn of(spec: &'a TensorSpec) -> Result<Layout<'a>, ServeError> {
        let not_an_image = || {
            ServeError::invalid(format!(
                "Invalid input precision - Expected: {}; Actual: BYTES; input name: {} \
                 (strings are decoded as JPEG/PNG images only for an NHWC input with 1 or 3 \
                 channels; this input's shape is {})",
                spec.dtype,
                spec.name,
                ShapeDisplay(&spec.shape)
            ))
        };
        let [n, h, w, c] = spec.shape[..] else {
            return Err(not_an_image());
        };
        let (Some(batch), Some(height), Some(width), Some(Some(channels @ (1 | 3)))) =
            (dim(n), dim(h), dim(w), dim::<usize>(c))
        else {
            return Err(not_an_image());
        };
        Ok(Layout {
            input: &spec.name,
            batch,
            height,
            width,
            channels,
        })
    }

    /// Image `index` of `size` (width, height) against the batch's `want`. A fixed dimension is
    /// the model's: resized to when allowed. A dynamic one was set by image 0: resizing to
    /// another image's size would be arbitrary, so the images of a batch must agree.
    fn check_size(
        &self,
        index: usize,
        size: (u32, u32),
        want: (u32, u32),
        resize: bool,
    ) -> Result<(), ServeError> {
        let dynamic_differs = (self.width.is_none() && size.0 != want.0)
            || (self.height.is_none() && size.1 != want.1);
        let why = if dynamic_differs {
            "the input's height or width is dynamic, so every image of a batch must have the size of image 0"
        } else if size != want && !resize {
            "set \"resize_images\": true in the model's config to have images resized"
        } else {
            return Ok(());
        };
        Err(invalid_input(
            self.input,
            format!(
                "Invalid image size of image {index} - Expected: {}x{}; Actual: {}x{} (width x height; {why})",
                want.0, want.1, size.0, size.1
            ),
        ))
    }
}

/// Each of the 256 pixel values as one element of `dtype` (little-endian bytes), or `None` when
/// the type cannot hold `0..=255` exactly.
fn element_table(dtype: DataType) -> Option<Vec<u8>> {
    use DataType::*;
    let mut table = Vec::with_capacity(256 * dtype.element_size()?);
    for v in 0..=255u8 {
        match dtype {
            U8 => table.push(v),
            U16 => table.extend_from_slice(&u16::from(v).to_le_bytes()),
            U32 => table.extend_from_slice(&u32::from(v).to_le_bytes()),
            U64 => table.extend_from_slice(&u64::from(v).to_le_bytes()),
            I16 => table.extend_from_slice(&i16::from(v).to_le_bytes()),
            I32 => table.extend_from_slice(&i32::from(v).to_le_bytes()),
            I64 => table.extend_from_slice(&i64::from(v).to_le_bytes()),
            F16 => table.extend_from_slice(&half::f16::from(v).to_le_bytes()),
            BF16 => table.extend_from_slice(&half::bf16::from(v).to_le_bytes()),
            F32 => table.extend_from_slice(&f32::from(v).to_le_bytes()),
            F64 => table.extend_from_slice(&f64::from(v).to_le_bytes()),
            Bool | I8 | Bytes => return None,
        }
    }
    Some(table)
}

/// Which of the two accepted formats the bytes are, by their signature.
fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// The first bytes in hex, to show what came instead of an image.
fn head(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "an empty string".into();
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{} bytes starting {}", bytes.len(), hex.join(" "))
}

/// A decoded image with the input's channel count.
enum Pixels {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Pixels {
    fn new(image: DynamicImage, channels: usize) -> Pixels {
        match (channels, image.color().has_color()) {
            (3, _) => Pixels::Rgb(image.into_rgb8()),
            // Already grey (8 or 16 bits, maybe with alpha): no colour weighting to apply.
            (_, false) => Pixels::Gray(image.into_luma8()),
            (_, true) => {
                let rgb = image.into_rgb8();
                let (w, h) = rgb.dimensions();
                // OpenCV's BGR2GRAY fixed-point weights (0.299, 0.587, 0.114), which OVMS uses;
                // the image crate's own `into_luma8` uses the Rec. 709 weights instead.
                let luma = rgb
                    .pixels()
                    .map(|p| {
                        let [r, g, b] = p.0.map(u32::from);
                        ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14) as u8
                    })
                    .collect();
                Pixels::Gray(GrayImage::from_raw(w, h, luma).expect("one byte per pixel"))
            }
        }
    }

    fn resize(self, width: u32, height: u32) -> Pixels {
        match self {
            Pixels::Gray(i) => {
                Pixels::Gray(imageops::resize(&i, width, height, FilterType::Triangle))
            }
            Pixels::Rgb(i) => {
                Pixels::Rgb(imageops::resize(&i, width, height, FilterType::Triangle))
            }
        }
    }

    /// Appends the pixels (row-major, channels last, BGR) as elements of the table's type.
    fn write(&self, table: &[u8], out: &mut Vec<u8>) {
        let size = table.len() / 256;
        let mut put = |v: u8| {
            let at = usize::from(v) * size;
            out.extend_from_slice(&table[at..at + size]);
        };
        match self {
            Pixels::Gray(i) => i.as_raw().iter().for_each(|&v| put(v)),
            Pixels::Rgb(i) => i.pixels().for_each(|p| {
                let [r, g, b] = p.0;
                put(b);
                put(g);
                put(r);
            }),
        }
    }
}

/// Decodes `images` (one JPEG or PNG per string) into one `[N, H, W, C]` tensor of `spec`'s
/// dtype. `resize`: scale images whose size differs from the input's fixed height/width
/// instead of refusing them. Errors are 400s naming the input, the image index, what was
/// expected and what came.
pub fn decode_images(
    spec: &TensorSpec,
    images: &[Bytes],
    resize: bool,
) -> Result<Tensor, ServeError> {
    let layout = Layout::of(spec)?;
    let input = layout.input;
    let table = element_table(spec.dtype).ok_or_else(|| {
        invalid_input(
            input,
            format!(
                "Invalid input precision - images decode to values 0..255, which {} cannot hold",
                spec.dtype
            ),
        )
    })?;
    let count = images.len();
    match layout.batch {
        _ if count == 0 => return Err(invalid_input(input, "No image given; send at least one")),
        Some(batch) if batch != count => {
            return Err(invalid_input(
                input,
                format!(
                    "Invalid number of images - Expected: {batch} (the input's batch size); Actual: {count}"
                ),
            ))
        }
        _ => {}
    }
    let mut out = Vec::new();
    // Width and height every image of the batch gets: the model's, or image 0's when dynamic.
    let mut target: Option<(u32, u32)> = None;
    for (index, bytes) in images.iter().enumerate() {
        let (decoder, format) = open(input, index, bytes)?;
        let size = decoder.dimensions();
        let want = match target {
            Some(want) => want,
            None => {
                let want = (
                    layout.width.unwrap_or(size.0),
                    layout.height.unwrap_or(size.1),
                );
                // Known for the whole batch once image 0's header is read: bound it, then
                // allocate it once.
                let bytes = [count, want.0 as usize, want.1 as usize, layout.channels]
                    .into_iter()
                    .try_fold(table.len() / 256, usize::checked_mul)
                    .filter(|&b| b as u64 <= MAX_DECODED_BYTES)
                    .ok_or_else(|| {
                        invalid_input(
                            input,
                            format!(
                                "Invalid image batch - {count} images of {}x{} as {} would exceed the {} MiB limit of a decoded batch",
                                want.0, want.1, spec.dtype, MAX_DECODED_BYTES >> 20
                            ),
                        )
                    })?;
                out.reserve_exact(bytes);
                *target.insert(want)
            }
        };
        layout.check_size(index, size, want, resize)?;
        let decoded =
            DynamicImage::from_decoder(decoder).map_err(|e| unreadable(input, index, format, e))?;
        let mut pixels = Pixels::new(decoded, layout.channels);
        if size != want {
            pixels = pixels.resize(want.0, want.1);
        }
        pixels.write(&table, &mut out);
    }
    let (width, height) = target.expect("at least one image");
    Ok(Tensor {
        dtype: spec.dtype,
        shape: vec![count, height as usize, width as usize, layout.channels],
        data: TensorData::Raw(out.into()),
    })
}

fn megapixels(pixels: u64) -> String {
    format!("{:.1} megapixels", pixels as f64 / 1e6)
}

fn unreadable(input: &str, index: usize, format: ImageFormat, e: image::ImageError) -> ServeError {
    let name = if format == ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    invalid_input(
        input,
        format!("Invalid image data - image {index} is not a valid {name}: {e}"),
    )
}

/// Recognises the format and reads the header only; refuses images too large to decode before
/// any pixel is read.
fn open<'b>(
    input: &str,
    index: usize,
    bytes: &'b [u8],
) -> Result<(impl ImageDecoder + 'b, ImageFormat), ServeError> {
    let format = sniff(bytes).ok_or_else(|| {
        invalid_input(
            input,
            format!(
                "Invalid image data - image {index} is neither JPEG nor PNG ({})",
                head(bytes)
            ),
        )
    })?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // The decoder's own allocations are capped at what the largest accepted image needs
    // (16-bit RGBA), should one get past the pixel count below.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(input, index, format, e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_IMAGE_PIXELS {
        let declared = match pixels {
            0 => "empty".to_string(),
            _ => megapixels(pixels),
        };
        return Err(invalid_input(
            input,
            format!(
                "Invalid image size of image {index} - {width}x{height} is {declared}; the limit is {}",
                megapixels(MAX_IMAGE_PIXELS)
            ),
        ));
    }
    // Every 8x8 block of a JPEG's full-resolution component takes at least one bit (no Huffman
    // code is shorter; arithmetic coding is not supported), so a file with fewer bytes than
    // blocks / 8 is truncated. The decoder would pad it to the declared size: a few hundred
    // bytes would cost the decoding, and the tensor, of an image of up to the pixel limit.
    let needed = u64::from(width / 8) * u64::from(height / 8) / 8;
    if format == ImageFormat::Jpeg && (bytes.len() as u64) < needed {
        return Err(invalid_input(
            input,
            format!(
                "Invalid image data - image {index} is a truncated JPEG: {width}x{height} takes at least {needed} bytes, it has {}",
                bytes.len()
            ),
        ));
    }
    Ok((decoder, format))
}

/// Whether `tensor`, sent for `spec`, is images to decode: strings for a numeric input.
/// Strings for a string input are left as they are.
pub fn is_image_batch(spec: &TensorSpec, tensor: &Tensor) -> bool {
    tensor.dtype == DataType::Bytes && spec.dtype != DataType::Bytes
}

/// [`decode_images`] for a string tensor as a transport decoded it: its shape must be `[N]`
/// (or a scalar for one image), one string per image, as OVMS requires.
pub fn decode_image_tensor(
    spec: &TensorSpec,
    tensor: Tensor,
    resize: bool,
) -> Result<Tensor, ServeError> {
    let TensorData::Strings(images) = tensor.data else {
        return Err(ServeError::InvalidPrecision {
            input: spec.name.clone(),
            expected: spec.dtype,
            actual: tensor.dtype,
        });
    };
    let one_per_image = match tensor.shape[..] {
        [] => images.len() == 1,
        [n] => images.len() == n,
        _ => false,
    };
    if !one_per_image {
        // For an input that cannot take images at all, that is the better message.
        Layout::of(spec)?;
        return Err(invalid_input(
            &spec.name,
            format!(
                "Invalid shape of an image batch - Expected: (N), one string per image; Actual: {} with {} strings",
                ShapeDisplay(&tensor.shape),
                images.len()
            ),
        ));
    }
    decode_images(spec, &images, resize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::tensor_to_vec;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ImageEncoder, Luma, Rgb};

    fn spec(dtype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: "image".into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// A test pattern whose every pixel differs: r = 8x, g = 8y, b = 4(x + y) + 1.
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(8 * x) as u8, (8 * y) as u8, (4 * (x + y) + 1) as u8])
        })
    }

    fn png(image: &DynamicImage) -> Bytes {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner().into()
    }

    fn jpeg(image: &RgbImage) -> Bytes {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95)
            .write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out.into()
    }

    fn bgr(image: &RgbImage) -> Vec<u8> {
        image.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect()
    }

    fn message(r: Result<Tensor, ServeError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn png_round_trip_is_exact_in_bgr_order() {
        let img = pattern(32, 32);
        let t = decode_images(
            &spec(DataType::U8, &[1, 32, 32, 3]),
            &[png(&img.clone().into())],
            false,
        )
        .unwrap();
        assert_eq!(t.shape, vec![1, 32, 32, 3]);
        assert_eq!(t.dtype, DataType::U8);
        assert_eq!(t.raw_bytes(), bgr(&img));
        // The first pixel is (r, g, b) = (0, 0, 1): its B comes first.
        assert_eq!(&t.raw_bytes()[..3], &[1, 0, 0]);
    }

    #[test]
    fn float_types_get_the_plain_pixel_values() {
        let img = pattern(4, 2);
        let images = [png(&img.clone().into()), png(&img.clone().into())];
        let want: Vec<f32> = bgr(&img).repeat(2).into_iter().map(f32::from).collect();
        let t = decode_images(&spec(DataType::F32, &[-1, 2, 4, 3]), &images, false).unwrap();
        assert_eq!(t.shape, vec![2, 2, 4, 3]);
        assert_eq!(tensor_to_vec::<f32>(&t).unwrap(), want);
        let t = decode_images(&spec(DataType::F16, &[2, 2, 4, 3]), &images, false).unwrap();
        let halves: Vec<f32> = tensor_to_vec::<half::f16>(&t)
            .unwrap()
            .into_iter()
            .map(f32::from)
            .collect();
        assert_eq!(halves, want);
        let t = decode_images(&spec(DataType::I64, &[2, 2, 4, 3]), &images, false).unwrap();
        assert_eq!(
            tensor_to_vec::<i64>(&t).unwrap(),
            want.iter().map(|&v| v as i64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn jpeg_decodes_close_to_the_original() {
        let img = pattern(32, 32);
        let t = decode_images(&spec(DataType::U8, &[1, 32, 32, 3]), &[jpeg(&img)], false).unwrap();
        let worst = t
            .raw_bytes()
            .iter()
            .zip(bgr(&img))
            .map(|(&a, b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(worst <= 12, "JPEG error {worst}");
    }

    #[test]
    fn channels_follow_the_input() {
        // Grey → 3 channels: the grey value in each.
        let grey = GrayImage::from_fn(2, 1, |x, _| Luma([100 + x as u8]));
        let t = decode_images(
            &spec(DataType::U8, &[1, 1, 2, 3]),
            &[png(&grey.clone().into())],
            false,
        )
        .unwrap();
        assert_eq!(t.raw_bytes(), &[100, 100, 100, 101, 101, 101]);
        // Grey → 1 channel: unchanged.
        let t = decode_images(
            &spec(DataType::U8, &[1, 1, 2, 1]),
            &[png(&grey.into())],
            false,
        )
        .unwrap();
        assert_eq!(t.raw_bytes(), &[100, 101]);
        // Colour → 1 channel: Rec. 601 luma, as OpenCV computes it.
        let rgb = RgbImage::from_fn(3, 1, |x, _| match x {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let t = decode_images(
            &spec(DataType::U8, &[1, 1, 3, 1]),
            &[png(&rgb.into())],
            false,
        )
        .unwrap();
        assert_eq!(t.raw_bytes(), &[76, 150, 29]);
        // RGBA: alpha is dropped.
        let rgba = image::RgbaImage::from_pixel(1, 1, image::Rgba([10, 20, 30, 0]));
        let t = decode_images(
            &spec(DataType::U8, &[1, 1, 1, 3]),
            &[png(&rgba.into())],
            false,
        )
        .unwrap();
        assert_eq!(t.raw_bytes(), &[30, 20, 10]);
    }

    #[test]
    fn wrong_size_is_refused_unless_resizing() {
        let s = spec(DataType::U8, &[1, 224, 224, 3]);
        let image = [png(&pattern(200, 100).into())];
        assert_eq!(
            message(decode_images(&s, &image, false)),
            "Invalid image size of image 0 - Expected: 224x224; Actual: 200x100 (width x height; \
             set \"resize_images\": true in the model's config to have images resized); input name: image"
        );
        let t = decode_images(&s, &image, true).unwrap();
        assert_eq!(t.shape, vec![1, 224, 224, 3]);
        // A uniform image stays exactly uniform through the bilinear resize.
        let flat = RgbImage::from_pixel(64, 48, Rgb([10, 20, 30]));
        let t = decode_images(
            &spec(DataType::U8, &[1, 32, 32, 3]),
            &[png(&flat.into())],
            true,
        )
        .unwrap();
        assert_eq!(t.raw_bytes(), [30, 20, 10].repeat(32 * 32));
    }

    #[test]
    fn dynamic_height_and_width_take_the_images_size() {
        let s = spec(DataType::U8, &[-1, -1, -1, 3]);
        let same = [png(&pattern(5, 3).into()), png(&pattern(5, 3).into())];
        let t = decode_images(&s, &same, false).unwrap();
        assert_eq!(t.shape, vec![2, 3, 5, 3]);
        let mixed = [png(&pattern(5, 3).into()), png(&pattern(3, 5).into())];
        let e = message(decode_images(&s, &mixed, true));
        assert!(
            e.starts_with("Invalid image size of image 1 - Expected: 5x3; Actual: 3x5"),
            "{e}"
        );
    }

    #[test]
    fn batch_size_must_match() {
        let one = png(&pattern(2, 2).into());
        let s = spec(DataType::U8, &[1, 2, 2, 3]);
        assert_eq!(
            message(decode_images(&s, &[one.clone(), one.clone()], false)),
            "Invalid number of images - Expected: 1 (the input's batch size); Actual: 2; input name: image"
        );
        assert!(message(decode_images(&s, &[], false)).starts_with("No image given"));
    }

    #[test]
    fn not_an_image_is_named() {
        let s = spec(DataType::U8, &[-1, 2, 2, 3]);
        let good = png(&pattern(2, 2).into());
        let e = message(decode_images(
            &s,
            &[good.clone(), Bytes::from_static(b"GIF89a...")],
            false,
        ));
        assert_eq!(
            e,
            "Invalid image data - image 1 is neither JPEG nor PNG (9 bytes starting 47 49 46 38 39 61 2e 2e); input name: image"
        );
        let truncated = good.slice(..good.len() - 20);
        let e = message(decode_images(&s, &[truncated], false));
        assert!(
            e.starts_with("Invalid image data - image 0 is not a valid PNG: "),
            "{e}"
        );
        let e = message(decode_images(&s, &[Bytes::new()], false));
        assert!(
            e.contains("image 0 is neither JPEG nor PNG (an empty string)"),
            "{e}"
        );
    }

    /// CRC-32 (ISO-HDLC), to forge a PNG header.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn decompression_bombs_are_refused_from_the_header() {
        // A valid 1x1 PNG whose header is rewritten to declare 100000 x 100000 pixels; the
        // pixel data stays tiny, so only the header check can catch it.
        let mut bytes = png(&pattern(1, 1).into()).to_vec();
        // Signature (8), IHDR length (4) and type (4), then width and height.
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let s = spec(DataType::U8, &[1, -1, -1, 3]);
        for resize in [false, true] {
            let e = message(decode_images(&s, &[Bytes::from(bytes.clone())], resize));
            assert_eq!(
                e,
                "Invalid image size of image 0 - 100000x100000 is 10000.0 megapixels; the limit is 67.1 megapixels; input name: image"
            );
        }
        // The same with a JPEG whose frame header (SOF0: FF C0, length, precision, height,
        // width) declares 65535 x 65535.
        let mut bytes = jpeg(&pattern(8, 8)).to_vec();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        let e = message(decode_images(&s, &[Bytes::from(bytes)], true));
        assert!(
            e.starts_with("Invalid image size of image 0 - 65535x65535 is 4294.8 megapixels"),
            "{e}"
        );
    }

    #[test]
    fn truncated_jpegs_are_refused_before_decoding() {
        // An 8x8 JPEG whose frame header declares 4096 x 4096: the decoder would pad the
        // other 262143 blocks (48 MiB of pixels from ~650 bytes) instead of failing.
        let s = spec(DataType::U8, &[1, -1, -1, 3]);
        let mut bytes = jpeg(&pattern(8, 8)).to_vec();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0x10, 0x00, 0x10, 0x00]);
        let e = message(decode_images(&s, &[Bytes::from(bytes.clone())], false));
        assert_eq!(
            e,
            format!("Invalid image data - image 0 is a truncated JPEG: 4096x4096 takes at least 32768 bytes, it has {}; input name: image", bytes.len())
        );
        // The most compressible real JPEG, a flat one, is far above the bound.
        let flat = jpeg(&RgbImage::from_pixel(512, 512, Rgb([7, 7, 7])));
        assert!(flat.len() > 512 * 512 / 64 / 8, "{}", flat.len());
        let t = decode_images(&s, &[flat], false).unwrap();
        assert_eq!(t.shape, vec![1, 512, 512, 3]);
    }

    #[test]
    fn decoded_batches_are_bounded() {
        // 2 images for a dynamic batch whose fixed size would make a >1 GiB tensor.
        let s = spec(DataType::F64, &[-1, 8192, 8192, 3]);
        let one = png(&pattern(1, 1).into());
        let e = message(decode_images(&s, &[one.clone(), one], true));
        assert!(e.contains("would exceed the 1024 MiB limit"), "{e}");
    }

    #[test]
    fn inputs_that_cannot_take_images() {
        let image = [png(&pattern(2, 2).into())];
        assert_eq!(
            message(decode_images(&spec(DataType::F32, &[1, 10]), &image, false)),
            "Invalid input precision - Expected: FP32; Actual: BYTES; input name: image (strings are \
             decoded as JPEG/PNG images only for an NHWC input with 1 or 3 channels; this input's shape is (1,10))"
        );
        // NCHW: channels first is not an image layout.
        assert!(message(decode_images(
            &spec(DataType::F32, &[1, 3, 2, 2]),
            &image,
            false
        ))
        .starts_with("Invalid input precision"));
        assert!(message(decode_images(
            &spec(DataType::I8, &[1, 2, 2, 3]),
            &image,
            false
        ))
        .contains("which INT8 cannot hold"));
    }

    #[test]
    fn string_tensors_need_one_string_per_image() {
        let s = spec(DataType::U8, &[-1, 2, 2, 3]);
        let image = png(&pattern(2, 2).into());
        assert!(is_image_batch(&s, &Tensor::strings(vec![1], vec![])));
        assert!(!is_image_batch(
            &spec(DataType::Bytes, &[-1]),
            &Tensor::strings(vec![1], vec![])
        ));
        let t = decode_image_tensor(&s, Tensor::strings(vec![], vec![image.clone()]), false);
        assert_eq!(t.unwrap().shape, vec![1, 2, 2, 3]);
        let e = message(decode_image_tensor(
            &s,
            Tensor::strings(vec![1, 1], vec![image.clone()]),
            false,
        ));
        assert!(
            e.starts_with("Invalid shape of an image batch - Expected: (N)"),
            "{e}"
        );
        // The shape must agree with the strings (TFS `string_val` does not check it).
        let e = message(decode_image_tensor(
            &s,
            Tensor::strings(vec![2], vec![image]),
            false,
        ));
        assert_eq!(
            e,
            "Invalid shape of an image batch - Expected: (N), one string per image; Actual: (2) with 1 strings; input name: image"
        );
    }
}
