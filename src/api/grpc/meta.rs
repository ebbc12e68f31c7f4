//! The standard gRPC services tooling expects beside ours: health checking (`grpc.health.v1`,
//! used by Kubernetes gRPC probes and load balancers) and server reflection (so `grpcurl list` /
//! `describe` work without the `.proto` files).

use crate::control::readiness::Readiness;
use crate::proto::inference::grpc_inference_service_server::SERVICE_NAME as KSERVE;
use crate::proto::tensorflow::serving::model_service_server::SERVICE_NAME as TFS_MODEL;
use crate::proto::tensorflow::serving::prediction_service_server::SERVICE_NAME as TFS_PREDICT;
use std::sync::Arc;
use std::time::Duration;
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus;

/// How often the health service re-reads readiness. The registry has no change feed; a snapshot
/// read is lock-free, so polling is cheap, and 500 ms is well inside any probe period.
const POLL: Duration = Duration::from_millis(500);

/// Services whose health follows the readiness rule: "" (the whole server) and the inference
/// services. `ModelService` (status, config reload) works whenever the process runs, so it is
/// always SERVING.
const FOLLOW_READINESS: [&str; 3] = ["", TFS_PREDICT, KSERVE];

/// The health service, with statuses set before it answers its first check, and kept up to date
/// by a task on the current runtime.
pub async fn health_service(
    readiness: Arc<Readiness>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = health_reporter();
    reporter
        .set_service_status(TFS_MODEL, ServingStatus::Serving)
        .await;
    let ready = readiness.server_ready();
    publish(&reporter, ready).await;
    tokio::spawn(follow(reporter, readiness, ready));
    service
}

async fn publish(reporter: &HealthReporter, ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in FOLLOW_READINESS {
        reporter.set_service_status(name, status).await;
    }
}

/// Republishes on every change of readiness (watchers of `Health/Watch` see each flip once).
async fn follow(reporter: HealthReporter, readiness: Arc<Readiness>, mut last: bool) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ready = readiness.server_ready();
        if ready != last {
            publish(&reporter, ready).await;
            last = ready;
        }
    }
}

/// Reflection (v1, and v1alpha for older clients) over every service we serve, including the
/// health and reflection services themselves. The descriptor set includes the imported
/// `google/protobuf/*.proto` files, so `describe` resolves every message.
pub fn reflection_services() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reflection_builds_from_the_descriptor_sets() {
        assert!(super::reflection_services().is_ok());
    }
}
