//! Readiness on every transport (REST, KServe gRPC, the gRPC health service) as model folders
//! come and go, the readiness rule, and gRPC reflection (moved from tests/kserve.rs).

use crate::common::eventually;
use crate::common::in_process::{fake_version, fixture, FakeModel, InProcess};
use crate::common::rest::Rest;
use crate::kserve_grpc::kserve_client;
use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::{ModelReadyRequest, ServerReadyRequest};

const KSERVE: &str = "inference.GRPCInferenceService";
const TFS_PREDICT: &str = "tensorflow.serving.PredictionService";
const TFS_MODEL: &str = "tensorflow.serving.ModelService";

/// A connection for the generated clients that have no `connect` (health, reflection).
async fn channel(server: &InProcess) -> Channel {
    Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health_status(client: &mut HealthClient<Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Readiness on every transport: REST, KServe gRPC, and the gRPC health service.
struct Probes {
    rest: Rest,
    kserve: GrpcInferenceServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Probes {
    async fn new(server: &InProcess) -> Probes {
        Probes {
            rest: Rest::new(server.rest_url("")),
            kserve: kserve_client(server).await,
            health: HealthClient::new(channel(server).await),
        }
    }

    /// (REST status, ServerReady, health of "", of the KServe and TFS predict services, of ModelService).
    async fn read(&mut self) -> (u16, bool, [i32; 4]) {
        let answer = self.rest.get("/v2/health/ready").await;
        let rest = answer.status.as_u16();
        assert_eq!(
            answer.json(),
            json!({"ready": rest == 200}),
            "the body says what the status code says"
        );
        let grpc = self
            .kserve
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready;
        let mut health = [0; 4];
        for (slot, service) in health.iter_mut().zip(["", KSERVE, TFS_PREDICT, TFS_MODEL]) {
            *slot = health_status(&mut self.health, service).await;
        }
        (rest, grpc, health)
    }

    async fn expect(&mut self, ready: bool) {
        let serving = ServingStatus::Serving as i32;
        let flag = if ready {
            serving
        } else {
            ServingStatus::NotServing as i32
        };
        let want = (
            if ready { 200 } else { 503 },
            ready,
            [flag, flag, flag, serving],
        );
        let what = format!("readiness {want:?}");
        eventually(&what, Duration::from_secs(60), async || {
            (self.read().await == want).then_some(())
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_model_folders() {
    let server = InProcess::serve(
        &[fixture("identity"), fixture("two_io")],
        &["--readiness", "strict"],
    );
    let mut probes = Probes::new(&server).await;
    probes.expect(true).await;
    let unknown = probes
        .health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        Code::NotFound,
        "the health protocol's answer for an unknown service"
    );

    // The only version of `identity` goes away: the server is no longer ready.
    std::fs::remove_dir_all(server.model_dir("identity").join("1")).unwrap();
    probes.expect(false).await;
    let mut kserve = kserve_client(&server).await;
    let ready = ModelReadyRequest {
        name: "identity".into(),
        version: String::new(),
    };
    assert!(
        !kserve
            .model_ready(ready.clone())
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert_eq!(
        probes.rest.get("/v2/models/identity/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        probes.rest.get("/v2/models/two_io/ready").await.status,
        StatusCode::OK
    );

    // Copied back: ready again.
    fake_version(&server.model_dir("identity"), 1);
    probes.expect(true).await;
    eventually("identity ready", Duration::from_secs(60), async || {
        let answer = kserve.model_ready(ready.clone()).await.unwrap();
        answer.into_inner().ready.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_rule_strict_or_any() {
    let models: [FakeModel; 2] = [fixture("identity"), fixture("broken")];
    let strict = InProcess::serve(&models, &[]);
    let any = InProcess::serve(&models, &["--readiness", "any"]);
    // The broken model never gets an AVAILABLE version: strict (the default) is not ready.
    Probes::new(&strict).await.expect(false).await;
    Probes::new(&any).await.expect(true).await;
    let status = Command::new(crate::common::binary())
        .args(["--readiness", "some"])
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("strict"),
        "the error lists the values"
    );
}

/// One reflection question, one answer.
async fn reflect(server: &InProcess, question: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(question),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_every_service() {
    let server = InProcess::serve(&[fixture("identity")], &[]);
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            KSERVE,
            TFS_MODEL,
            TFS_PREDICT,
        ]
    );
    // `describe` needs the service's file and every file it imports, down to google/protobuf.
    for symbol in [KSERVE, TFS_PREDICT] {
        let MessageResponse::FileDescriptorResponse(files) =
            reflect(&server, MessageRequest::FileContainingSymbol(symbol.into())).await
        else {
            panic!("no descriptor for {symbol}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    let MessageResponse::FileDescriptorResponse(any) = reflect(
        &server,
        MessageRequest::FileByFilename("google/protobuf/any.proto".into()),
    )
    .await
    else {
        panic!("google/protobuf/any.proto is not served");
    };
    assert_eq!(any.file_descriptor_proto.len(), 1);
}
