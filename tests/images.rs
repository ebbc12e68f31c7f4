//! JPEG and PNG inputs against the real server: TFS gRPC `string_val`, TFS REST `{"b64": ..}`,
//! KServe `BYTES` (gRPC and REST), decoded into the `image_stats` fixtures' NHWC inputs, whose
//! `mean` and `pixel00` outputs show the pixels the model got (BGR, 0..255).

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use common::{spec, Repo, Server};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, ImageFormat, Rgb, RgbImage};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Cursor;
use tonic::Code;
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::model_infer_request::InferInputTensor;
use vinoserve::proto::inference::{InferTensorContents, ModelInferRequest};
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

/// `image_stats` (u8 `[1,32,32,3]`, sizes checked) and `image_stats_f32` (f32 `[-1,32,32,3]`,
/// `resize_images` on). f32 inference is pinned so a bf16 default cannot round the means.
fn image_models() -> Repo {
    let exact = r#""plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}"#;
    Repo::new(&[
        ("image_stats", exact),
        (
            "image_stats_f32",
            &format!(r#"{exact}, "resize_images": true"#),
        ),
    ])
}

fn start(repo: &Repo) -> Server {
    let server = Server::with_config(repo, &[]);
    server.wait_loaded();
    server
}

/// Every pixel different and every channel's mean different: r = 8x, g = 4y + 100,
/// b = 2(x + y) + 7. Means (r, g, b) = (124, 162, 69); the top-left pixel is (0, 100, 7).
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(8 * x) as u8, (4 * y + 100) as u8, (2 * (x + y) + 7) as u8])
    })
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// What the model should report for `image`: (mean, pixel00), both in BGR order.
fn expected(image: &RgbImage) -> ([f32; 3], [f32; 3]) {
    let mut sum = [0f64; 3];
    for p in image.pixels() {
        for (total, &v) in sum.iter_mut().zip(&p.0) {
            *total += f64::from(v);
        }
    }
    let n = f64::from(image.width() * image.height());
    let p = image.get_pixel(0, 0);
    (
        [2, 1, 0].map(|c| (sum[c] / n) as f32),
        [2, 1, 0].map(|c| f32::from(p[c])),
    )
}

/// Checks one batch item's outputs against `image`; tolerances of 0 mean exact.
fn check(what: &str, got: (&[f32], &[f32]), image: &RgbImage, mean_tol: f32, pixel_tol: f32) {
    let (mean, pixel) = expected(image);
    let close = |a: &[f32], b: &[f32], tol: f32| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    };
    assert!(
        close(got.0, &mean, mean_tol),
        "{what}: mean {:?}, expected {mean:?} (±{mean_tol})",
        got.0
    );
    assert!(
        close(got.1, &pixel, pixel_tol),
        "{what}: pixel00 {:?}, expected {pixel:?} (±{pixel_tol})",
        got.1
    );
}

const PNG_EXACT: (f32, f32) = (0.0, 0.0);
/// JPEG at quality 95 of a smooth gradient: means within 1.5, single pixels within 8.
const JPEG_CLOSE: (f32, f32) = (1.5, 8.0);

fn tfs_images(model: &str, images: &[Vec<u8>]) -> PredictRequest {
    let proto = TensorProto {
        dtype: Tf::DtString as i32,
        tensor_shape: Some(shape_proto(&[images.len() as i64])),
        string_val: images.iter().cloned().map(Bytes::from).collect(),
        ..Default::default()
    };
    PredictRequest {
        model_spec: spec(model, None),
        inputs: HashMap::from([("image".to_string(), proto)]),
        ..Default::default()
    }
}

/// TFS gRPC Predict; returns (mean, pixel00) as flat f32 lists.
async fn tfs_grpc(
    server: &Server,
    model: &str,
    images: &[Vec<u8>],
) -> Result<(Vec<f32>, Vec<f32>), tonic::Status> {
    let mut client = server.predict_client().await;
    let response = client
        .predict(tfs_images(model, images))
        .await?
        .into_inner();
    let out = |name: &str| -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&response.outputs[name].tensor_content)
    };
    Ok((out("mean"), out("pixel00")))
}

fn b64(bytes: &[u8]) -> Value {
    json!({ "b64": STANDARD.encode(bytes) })
}

async fn post(server: &Server, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = Client::new()
        .post(server.rest_url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// TFS REST row format, `{"instances": [{"b64": ..}, ..]}`; (mean, pixel00) per instance.
async fn tfs_rest(
    server: &Server,
    model: &str,
    images: &[Vec<u8>],
) -> Result<Vec<(Vec<f32>, Vec<f32>)>, (StatusCode, String)> {
    let body = json!({ "instances": images.iter().map(|i| b64(i)).collect::<Vec<_>>() });
    let (status, answer) = post(server, &format!("/v1/models/{model}:predict"), &body).await;
    if status != StatusCode::OK {
        return Err((status, answer["error"].as_str().unwrap_or_default().into()));
    }
    let floats = |v: &Value| -> Vec<f32> {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    Ok(answer["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|row| (floats(&row["mean"]), floats(&row["pixel00"])))
        .collect())
}

fn kserve_images(model: &str, images: &[Vec<u8>]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "image".into(),
            datatype: "BYTES".into(),
            shape: vec![images.len() as i64],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                bytes_contents: images.iter().cloned().map(Bytes::from).collect(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// KServe gRPC ModelInfer with `bytes_contents`; (mean, pixel00) as flat f32 lists.
async fn kserve_grpc(
    server: &Server,
    model: &str,
    images: &[Vec<u8>],
) -> Result<(Vec<f32>, Vec<f32>), tonic::Status> {
    let mut client = GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let response = client
        .model_infer(kserve_images(model, images))
        .await?
        .into_inner();
    let out = |name: &str| -> Vec<f32> {
        let i = response
            .outputs
            .iter()
            .position(|o| o.name == name)
            .unwrap();
        bytemuck::pod_collect_to_vec(&response.raw_output_contents[i])
    };
    Ok((out("mean"), out("pixel00")))
}

/// KServe REST JSON with `BYTES` data as `{"b64": ..}`; (mean, pixel00) as flat f32 lists.
async fn kserve_rest(
    server: &Server,
    model: &str,
    images: &[Vec<u8>],
) -> Result<(Vec<f32>, Vec<f32>), (StatusCode, String)> {
    let body = json!({"inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [images.len()],
        "data": images.iter().map(|i| b64(i)).collect::<Vec<_>>()
    }]});
    let (status, answer) = post(server, &format!("/v2/models/{model}/infer"), &body).await;
    if status != StatusCode::OK {
        return Err((status, answer["error"].as_str().unwrap_or_default().into()));
    }
    let out = |name: &str| -> Vec<f32> {
        let outputs = answer["outputs"].as_array().unwrap();
        let o = outputs.iter().find(|o| o["name"] == name).unwrap();
        serde_json::from_value(o["data"].clone()).unwrap()
    };
    Ok((out("mean"), out("pixel00")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_and_jpeg_through_every_transport() {
    let repo = image_models();
    let server = start(&repo);
    let image = pattern(32, 32);
    for (format, bytes, (mean_tol, pixel_tol)) in [
        ("PNG", png(&image), PNG_EXACT),
        ("JPEG", jpeg(&image), JPEG_CLOSE),
    ] {
        let images = [bytes];
        for model in ["image_stats", "image_stats_f32"] {
            let what = |api: &str| format!("{format} via {api} to {model}");
            let (mean, pixel) = tfs_grpc(&server, model, &images).await.unwrap();
            let tol = (mean_tol, pixel_tol);
            check(&what("TFS gRPC"), (&mean, &pixel), &image, tol.0, tol.1);

            let rows = tfs_rest(&server, model, &images).await.unwrap();
            assert_eq!(rows.len(), 1);
            check(
                &what("TFS REST"),
                (&rows[0].0, &rows[0].1),
                &image,
                tol.0,
                tol.1,
            );

            let (mean, pixel) = kserve_grpc(&server, model, &images).await.unwrap();
            check(&what("KServe gRPC"), (&mean, &pixel), &image, tol.0, tol.1);

            let (mean, pixel) = kserve_rest(&server, model, &images).await.unwrap();
            check(&what("KServe REST"), (&mean, &pixel), &image, tol.0, tol.1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_resizing() {
    let repo = image_models();
    let server = start(&repo);
    let first = pattern(32, 32);
    let second = RgbImage::from_pixel(32, 32, Rgb([200, 50, 25]));
    let batch = [png(&first), png(&second)];

    // One string per image: a batch of 2 for the dynamic-batch model.
    let (mean, pixel) = tfs_grpc(&server, "image_stats_f32", &batch).await.unwrap();
    check(
        "gRPC batch item 0",
        (&mean[..3], &pixel[..3]),
        &first,
        0.0,
        0.0,
    );
    check(
        "gRPC batch item 1",
        (&mean[3..], &pixel[3..]),
        &second,
        0.0,
        0.0,
    );
    let rows = tfs_rest(&server, "image_stats_f32", &batch).await.unwrap();
    assert_eq!(rows.len(), 2);
    check(
        "REST instance 0",
        (&rows[0].0, &rows[0].1),
        &first,
        0.0,
        0.0,
    );
    check(
        "REST instance 1",
        (&rows[1].0, &rows[1].1),
        &second,
        0.0,
        0.0,
    );
    let (mean, _) = kserve_grpc(&server, "image_stats_f32", &batch)
        .await
        .unwrap();
    assert_eq!(mean.len(), 6);

    // `resize_images: true`: a 64x48 image is scaled to 32x32. A uniform one stays uniform.
    let big = RgbImage::from_pixel(64, 48, Rgb([10, 20, 30]));
    for images in [vec![png(&big)], vec![jpeg(&big), png(&first)]] {
        let (mean, pixel) = tfs_grpc(&server, "image_stats_f32", &images).await.unwrap();
        // JPEG's colour conversion may move a flat colour by a level or two.
        let tol = if images[0][0] == 0xFF { 2.0 } else { 0.0 };
        let flat = RgbImage::from_pixel(32, 32, Rgb([10, 20, 30]));
        check("resized", (&mean[..3], &pixel[..3]), &flat, tol, tol);
    }
    // Without it (image_stats), the same image is refused with both sizes named.
    let e = tfs_grpc(&server, "image_stats", &[png(&big)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "Invalid image size of image 0 - Expected: 32x32; Actual: 64x48 (width x height; set \
         \"resize_images\": true in the model's config to have images resized); input name: image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_refused_and_the_server_keeps_serving() {
    let repo = image_models();
    let server = start(&repo);
    let good = png(&pattern(32, 32));
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let gif = b"GIF89a\x01\x00\x01\x00".to_vec();

    // (model, images, what the message says) — through TFS REST and KServe REST (400), and
    // TFS and KServe gRPC (INVALID_ARGUMENT), each time followed by a good request.
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        ("image_stats", vec![gif.clone()],
            "Invalid image data - image 0 is neither JPEG nor PNG (10 bytes starting 47 49 46 38 39 61 01 00); input name: image"),
        ("image_stats_f32", vec![good.clone(), truncated.clone()],
            "Invalid image data - image 1 is not a valid PNG: "),
        ("image_stats", vec![png(&pattern(200, 100))],
            "Invalid image size of image 0 - Expected: 32x32; Actual: 200x100"),
        ("image_stats", vec![good.clone(), good.clone()],
            "Invalid number of images - Expected: 1 (the input's batch size); Actual: 2; input name: image"),
    ];
    for (model, images, message) in &cases {
        let (status, error) = tfs_rest(&server, model, images).await.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(
            error.starts_with(message),
            "TFS REST: {error:?} lacks {message:?}"
        );

        let (status, error) = kserve_rest(&server, model, images).await.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(
            error.starts_with(message),
            "KServe REST: {error:?} lacks {message:?}"
        );

        let e = tfs_grpc(&server, model, images).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(message), "TFS gRPC: {e:?}");

        let e = kserve_grpc(&server, model, images).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(message), "KServe gRPC: {e:?}");

        let (mean, _) = tfs_grpc(&server, model, std::slice::from_ref(&good))
            .await
            .unwrap();
        assert_eq!(mean, expected(&pattern(32, 32)).0, "after {message}");
    }
}
