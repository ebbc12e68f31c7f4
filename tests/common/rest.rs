//! A REST client of one server, for the protocol tests: every answer with its status, headers
//! and body, and what the two REST APIs' error bodies look like.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An answer: status, headers and body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:.300?}", self.status, self.body))
    }

    /// Status and body of a TF Serving REST answer, which is always `application/json`.
    pub fn tfs(&self) -> (StatusCode, Value) {
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            self.status
        );
        (self.status, self.json())
    }

    /// The JSON header and the binary data after it (KServe's binary-data extension).
    pub fn split(&self) -> (Value, Bytes) {
        let n: usize = self.headers["inference-header-content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let header = serde_json::from_slice(&self.body[..n]).unwrap();
        (header, self.body.slice(n..))
    }

    /// `{"error": "..."}` with this status, whose message contains `part`.
    pub fn assert_error(&self, status: u16, part: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        let message = self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(part),
            "{message:?} does not contain {part:?}"
        );
    }
}

/// A TFS columnar body of `rows` rows of 8 floats for the `dynamic` fixture (`x: [-1, 8]`), and
/// the floats: a body of any size.
pub fn big_columnar(rows: usize) -> (String, Vec<f32>) {
    let x: Vec<f32> = (0..rows * 8)
        .map(|i| (i % 1000) as f32 * 0.25 - 100.0)
        .collect();
    let nested: Vec<&[f32]> = x.chunks(8).collect();
    (serde_json::json!({"inputs": nested}).to_string(), x)
}

/// The message of a TFS error body, which is exactly `{"error": "..."}`.
pub fn error_message(body: &Value) -> &str {
    let object = body.as_object().expect("error body is an object");
    assert_eq!(object.len(), 1, "error body has only \"error\": {body}");
    object["error"].as_str().expect("\"error\" is a string")
}

pub struct Rest {
    pub client: reqwest::Client,
    /// `http://host:port`
    pub base: String,
}

impl Rest {
    pub fn new(base: String) -> Rest {
        Rest {
            client: reqwest::Client::new(),
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn answer(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    /// `method path`, with `body` as JSON when given.
    pub async fn send(&self, method: Method, path: &str, body: Option<String>) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        Rest::answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// `GET path` of the TFS API: status and JSON body.
    pub async fn tfs_get(&self, path: &str) -> (StatusCode, Value) {
        self.get(path).await.tfs()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body.to_string())).await
    }

    /// A JSON header followed by binary input data (KServe's binary-data extension).
    pub async fn post_binary(&self, path: &str, header: &Value, binary: &[u8]) -> Answer {
        let header = header.to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(binary);
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/octet-stream")
            .header("Inference-Header-Content-Length", header.len());
        Rest::answer(request.body(body).send().await.unwrap()).await
    }

    /// `POST /v1/models/{target}:predict` (TFS), `target` being `m`, `m/versions/n` or
    /// `m/labels/l`.
    pub async fn predict(&self, target: &str, body: &Value) -> (StatusCode, Value) {
        let path = format!("/v1/models/{target}:predict");
        self.post(&path, body).await.tfs()
    }

    pub async fn predict_ok(&self, target: &str, body: &Value) -> Value {
        let (status, answer) = self.predict(target, body).await;
        assert_eq!(status, StatusCode::OK, "{target}: {answer}");
        answer
    }
}
