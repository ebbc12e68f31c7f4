//! Prometheus metrics, described once, with the OVMS names users already have dashboards for
//! (`ovms_*`) plus vinoserve's own (`vinoserve_*`). Served as text on `GET /metrics`.
//!
//! Hot-path cost is kept to pre-resolved histogram children (per version, in the worker pool)
//! and one counter increment per request; gauges are read from the registry at scrape time.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGaugeVec, Opts, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The `name` label of requests for models the server does not know.
pub const UNKNOWN_MODEL: &str = "(unknown)";

/// Request labels: which API family and transport, which call.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// "TensorFlowServing" or "KServe".
    pub api: &'static str,
    /// "gRPC" or "REST".
    pub interface: &'static str,
    /// e.g. "Predict", "GetModelMetadata", "ModelInfer".
    pub method: &'static str,
}

pub struct Metrics {
    registry: prometheus::Registry,
    pub requests_success: IntCounterVec,
    pub requests_fail: IntCounterVec,
    pub request_time_us: HistogramVec,
    pub inference_time_us: HistogramVec,
    pub wait_for_infer_req_time_us: HistogramVec,
    inferences_inline: IntCounterVec,
    current_requests: IntGaugeVec,
    streams: IntGaugeVec,
    infer_req_queue_size: IntGaugeVec,
    infer_req_active: IntGaugeVec,
    pub model_loads: IntCounterVec,
    pub model_load_seconds: HistogramVec,
    pub version_swaps: IntCounterVec,
    version_state: IntGaugeVec,
    pub placement_info: IntGaugeVec,
    pub placement_worker_restarts: IntCounterVec,
    pub repository_scans: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub topology_reloads: IntCounterVec,
    pub warmup_inferences: IntCounterVec,
    pub tensor_handover: IntCounterVec,
    pub grpc_send_timeouts: IntCounter,
    batch_size: HistogramVec,
    batch_wait_us: HistogramVec,
}

/// Microsecond buckets from 10 µs to ~100 s, four per decade (as OVMS).
fn micros() -> Vec<f64> {
    exponential_buckets(10.0, 10f64.powf(0.25), 29).expect("valid buckets")
}

fn counter(r: &prometheus::Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &prometheus::Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(
    r: &prometheus::Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

const REQUEST: &[&str] = &["api", "interface", "method", "name", "version"];
const VERSION: &[&str] = &["name", "version"];

impl Metrics {
    fn new() -> Metrics {
        let r = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            requests_success: counter(
                &r,
                "ovms_requests_success",
                "Requests answered successfully.",
                REQUEST,
            ),
            requests_fail: counter(
                &r,
                "ovms_requests_fail",
                "Requests answered with an error.",
                REQUEST,
            ),
            request_time_us: histogram(
                &r,
                "ovms_request_time_us",
                "Time from decoded request to encoded answer, in microseconds.",
                &["interface", "name", "version"],
                micros(),
            ),
            inference_time_us: histogram(
                &r,
                "ovms_inference_time_us",
                "Time OpenVINO spends in one inference, in microseconds.",
                VERSION,
                micros(),
            ),
            wait_for_infer_req_time_us: histogram(
                &r,
                "ovms_wait_for_infer_req_time_us",
                "Time a request waits in the queue for a free infer request, in microseconds.",
                VERSION,
                micros(),
            ),
            inferences_inline: counter(
                &r,
                "vinoserve_inferences_inline_total",
                "Inferences run on the thread that received the request instead of a worker thread (fixed-shape versions whose recent inferences average under --inline_inference_us).",
                VERSION,
            ),
            current_requests: gauge(
                &r,
                "ovms_current_requests",
                "Requests in flight (queued or running).",
                VERSION,
            ),
            streams: gauge(
                &r,
                "ovms_streams",
                "OpenVINO execution streams of the compiled model.",
                VERSION,
            ),
            infer_req_queue_size: gauge(
                &r,
                "ovms_infer_req_queue_size",
                "Infer requests (worker threads) of the version.",
                VERSION,
            ),
            infer_req_active: gauge(
                &r,
                "ovms_infer_req_active",
                "Infer requests running an inference now.",
                VERSION,
            ),
            model_loads: counter(
                &r,
                "vinoserve_model_loads_total",
                "Version loads by result (success or failure).",
                &["name", "result"],
            ),
            model_load_seconds: histogram(
                &r,
                "vinoserve_model_load_seconds",
                "Time to read, compile and warm up one version, in seconds.",
                &["name"],
                exponential_buckets(0.01, 2.0, 14).expect("valid buckets"),
            ),
            version_swaps: counter(
                &r,
                "vinoserve_version_swaps_total",
                "Versions retired after a newer set was published.",
                &["name"],
            ),
            version_state: gauge(
                &r,
                "vinoserve_version_state",
                "1 for the state each version is in (TFS states).",
                &["name", "version", "state"],
            ),
            placement_info: gauge(
                &r,
                "vinoserve_placement_info",
                "Where a model runs: NUMA node and CPUs (value 1).",
                &["name", "node", "cpus"],
            ),
            placement_worker_restarts: counter(
                &r,
                "vinoserve_placement_worker_restarts_total",
                "Times a placement group's worker process exited and was restarted.",
                &["group"],
            ),
            repository_scans: counter(
                &r,
                "vinoserve_repository_scans_total",
                "Rescans of the model folders and the config file, by trigger: the periodic poll (one per --file_system_poll_wait_seconds for all of them) or a file-system change (reads never trigger one).",
                &["trigger"],
            ),
            config_reloads: counter(
                &r,
                "vinoserve_config_reloads_total",
                "Re-reads of the config file (SIGHUP, POST /v1/config/reload, a change on disk) by result: changed, unchanged, or rejected (invalid: nothing changed).",
                &["result"],
            ),
            topology_reloads: counter(
                &r,
                "vinoserve_topology_reloads_total",
                "Re-plans of the placement (the topology file re-read, or the set of models changed) by result: changed, unchanged, or rejected (invalid or unsatisfiable: nothing changed).",
                &["result"],
            ),
            warmup_inferences: counter(
                &r,
                "vinoserve_warmup_inferences_total",
                "Inferences run to warm a version up before it serves: the samples of its warm-up file, or one on zeros for a model whose inputs are all static.",
                VERSION,
            ),
            tensor_handover: counter(
                &r,
                "vinoserve_tensor_handover_total",
                "How tensors reached or left OpenVINO in this process, by direction (input, output) and mode: in_place (OpenVINO read the request's own bytes, or wrote into the response's buffer), copied (too small to be worth lending, or an output of dynamic shape), copied_misaligned (an input whose bytes were not aligned for its element type within the received body).",
                &["direction", "mode"],
            ),
            grpc_send_timeouts: {
                let c = IntCounter::new(
                    "vinoserve_grpc_send_timeouts_total",
                    "gRPC connections closed because their client took less than 1 MiB of an answer within --send_timeout_seconds (HTTP/2 flow control held the answer back).",
                )
                .expect("valid counter");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            batch_size: histogram(
                &r,
                "vinoserve_batch_size",
                "Requests merged into one inference by dynamic batching (models with \"batching\").",
                VERSION,
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            ),
            batch_wait_us: histogram(
                &r,
                "vinoserve_batch_wait_us",
                "Time the first request of a batch waited for the batch to fill, in microseconds.",
                VERSION,
                micros(),
            ),
            registry: r,
        }
    }

    /// Counts one finished request and its latency. `model` is labelled by name only if the
    /// server knows it (`registry`); any other name a client sends is counted under
    /// [`UNKNOWN_MODEL`], so made-up names cannot grow the exposition without bound.
    pub fn observe_request(
        &self,
        call: Call,
        (model, registry): (&str, &impl ModelCatalog),
        version: Option<u64>,
        ok: bool,
        elapsed: Duration,
    ) {
        // Inside the request's span (see api::trace): one line per request at debug level.
        tracing::debug!(
            api = call.api,
            interface = call.interface,
            ok,
            us = elapsed.as_micros() as u64,
            "request done"
        );
        let known = ok || registry.knows(model);
        let model = if known { model } else { UNKNOWN_MODEL };
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        let labels = [
            call.api,
            call.interface,
            call.method,
            model,
            version.as_str(),
        ];
        if ok {
            self.requests_success.with_label_values(&labels).inc();
            self.request_time_us
                .with_label_values(&[call.interface, model, version.as_str()])
                .observe(elapsed.as_secs_f64() * 1e6);
        } else {
            self.requests_fail.with_label_values(&labels).inc();
        }
    }

    /// Histograms one version's workers record into, resolved once at load.
    pub fn for_version(&self, model: &str, version: u64) -> VersionMetrics {
        let v = version.to_string();
        VersionMetrics {
            inference_us: self.inference_time_us.with_label_values(&[model, &v]),
            wait_us: self
                .wait_for_infer_req_time_us
                .with_label_values(&[model, &v]),
            inline: self.inferences_inline.with_label_values(&[model, &v]),
            batch_size: self.batch_size.with_label_values(&[model, &v]),
            batch_wait_us: self.batch_wait_us.with_label_values(&[model, &v]),
        }
    }

    /// Gauges that describe the served models right now (refreshed at every scrape).
    fn refresh(&self, catalog: &impl ModelCatalog) {
        for g in [
            &self.current_requests,
            &self.streams,
            &self.infer_req_queue_size,
            &self.infer_req_active,
            &self.version_state,
        ] {
            g.reset();
        }
        for v in catalog.version_gauges() {
            let version = v.version.to_string();
            self.version_state
                .with_label_values(&[&v.model, &version, v.state])
                .set(1);
            if let Some(pool) = v.serving {
                let labels = [v.model.as_str(), version.as_str()];
                self.current_requests
                    .with_label_values(&labels)
                    .set(pool.in_flight as i64);
                self.infer_req_queue_size
                    .with_label_values(&labels)
                    .set(pool.workers as i64);
                self.infer_req_active
                    .with_label_values(&labels)
                    .set(pool.active as i64);
                self.streams.with_label_values(&labels).set(pool.streams);
            }
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, catalog: &impl ModelCatalog) -> String {
        self.refresh(catalog);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What the metrics read from the server's models at scrape time; implemented by the model
/// registry, so this module depends on nothing of the model layer (which records into it).
pub trait ModelCatalog {
    /// Whether requests for `model` are labelled with its name (see [`UNKNOWN_MODEL`]).
    fn knows(&self, model: &str) -> bool;
    /// Every version the server lists, with its worker pool where it serves.
    fn version_gauges(&self) -> Vec<VersionGauges>;
}

impl<T: ModelCatalog + ?Sized> ModelCatalog for std::sync::Arc<T> {
    fn knows(&self, model: &str) -> bool {
        (**self).knows(model)
    }

    fn version_gauges(&self) -> Vec<VersionGauges> {
        (**self).version_gauges()
    }
}

/// One version's state, as `ovms_model_version_state`-style gauges show it.
pub struct VersionGauges {
    pub model: String,
    pub version: u64,
    pub state: &'static str,
    pub serving: Option<PoolGauges>,
}

/// A serving version's worker pool right now.
pub struct PoolGauges {
    pub in_flight: usize,
    pub workers: usize,
    pub active: usize,
    pub streams: i64,
}

/// What started a rescan, as `vinoserve_repository_scans_total` labels it.
#[derive(Clone, Copy, Debug)]
pub enum ScanTrigger {
    Poll,
    FileEvent,
}

impl Metrics {
    pub fn count_scan(&self, trigger: ScanTrigger) {
        let label = match trigger {
            ScanTrigger::Poll => "poll",
            ScanTrigger::FileEvent => "file_event",
        };
        self.repository_scans.with_label_values(&[label]).inc();
    }
}

/// Per-version histogram handles used by the worker threads.
#[derive(Clone)]
pub struct VersionMetrics {
    pub inference_us: Histogram,
    pub wait_us: Histogram,
    pub inline: IntCounter,
    pub batch_size: Histogram,
    pub batch_wait_us: Histogram,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
