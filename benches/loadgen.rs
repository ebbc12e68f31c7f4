//! Closed-loop load generator for vinoserve, and the in-process OpenVINO baseline it is compared
//! with (TESTING.md, "Benchmarks").
//!
//! ```text
//! cargo bench --bench loadgen -- --grpc 127.0.0.1:9000 --model resnet --input input --shape 1,224,224,3
//! cargo bench --bench loadgen -- --rest 127.0.0.1:8000 --model resnet --input input --shape 1,224,224,3
//! cargo bench --bench loadgen -- --raw generated/models/resnet_v1_50/1/model.xml --plugin PERFORMANCE_HINT=LATENCY
//! cargo bench --bench loadgen -- --spawn-server --model-dir generated/models/resnet_v1_50 \
//!     --plugin PERFORMANCE_HINT=LATENCY --clients 4 --duration 10 --compare-raw
//! ```
//!
//! Each of `--clients` clients keeps exactly one request outstanding (closed loop: the harness
//! the tests use too, tests/common/load.rs, included below). Requests are
//! built once: the gRPC `PredictRequest` carries the input as `tensor_content` (a `Bytes`, so a
//! clone shares it), the REST body is one prebuilt columnar JSON `Bytes`. Only requests that
//! complete inside the measurement window (after `--warmup`, for `--duration`) are counted.
//! Clients run on a tokio runtime of `--threads` workers (1 by default) so that on a small
//! machine the generator leaves the CPU to the server; its own CPU time is reported so its cost
//! stays visible.
//!
//! `--raw` runs the same model in this process through the `openvino` crate: one compiled model,
//! `--clients` threads each owning one infer request, doing per request what the server's worker
//! does (copy the input in, infer, copy every output out). `served ÷ raw` is then the price of
//! serving.
//!
//! Output: a markdown table (header + one row per run), plus one JSON line per run with `--json`.
//! Run with no target, as `cargo test --all-targets` does, it does nothing and succeeds.

use bytes::Bytes;
use clap::{ArgGroup, Parser, ValueEnum};
use openvino::{
    CompiledModel, Core, DeviceType, Dimension, ElementType, InferRequest, Model, PartialShape,
    PropertyKey, RwPropertyKey,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::{model_infer_request, ModelInferRequest};
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::{ModelSpec, PredictRequest};
use vinoserve::proto::tensorflow::{
    tensor_shape_proto, DataType as TfType, TensorProto, TensorShapeProto,
};

#[path = "../tests/common/load.rs"]
mod load;

use load::{Load, Settings, Tally, Window};

type Result<T, E = String> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Closed-loop load generator and raw OpenVINO baseline"
)]
#[command(group(ArgGroup::new("target").args(["grpc", "rest", "raw", "spawn_server"])))]
struct Args {
    /// Load a running server over TFS gRPC Predict at ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    grpc: Option<String>,
    /// Load a running server over KServe v2 gRPC ModelInfer (raw_input_contents) at ADDR.
    #[arg(long, value_name = "ADDR")]
    kserve: Option<String>,
    /// Load a running server over TFS REST :predict (columnar JSON) at ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    rest: Option<String>,
    /// Run the model file (IR .xml or .onnx) in this process: the OpenVINO baseline.
    #[arg(long, value_name = "MODEL_FILE")]
    raw: Option<PathBuf>,
    /// Start the vinoserve binary on 127.0.0.1 for --model-dir, load it, then stop it.
    #[arg(long, requires = "model_dir")]
    spawn_server: bool,
    /// Model folder with numbered version subfolders (for --spawn-server).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Protocol used against the spawned server.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// After the served run, run the raw baseline with the same model and plugin config.
    #[arg(long, requires = "spawn_server")]
    compare_raw: bool,
    /// The server binary (default: the one cargo built next to this bench).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra flag for the spawned server, repeatable, e.g. --server-arg=--nireq=2.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Model name (default with a model file: its folder's name).
    #[arg(long)]
    model: Option<String>,
    /// Input name (default with a model file: the model's only input).
    #[arg(long)]
    input: Option<String>,
    /// Input shape, e.g. 1,224,224,3; the first dimension is the batch (items per request).
    /// With a model file, a shape other than the model's reshapes it (server and raw alike).
    #[arg(long)]
    shape: Option<String>,
    /// Input precision: FP32, FP16, BF16, FP64, INT8..INT64, UINT8..UINT64, BOOL.
    #[arg(long)]
    dtype: Option<String>,
    /// OpenVINO CPU property KEY=VALUE, repeatable: the spawned server's plugin_config and the
    /// raw run's properties (with --grpc / --rest it only labels the row).
    #[arg(long = "plugin", value_name = "KEY=VALUE")]
    plugin: Vec<String>,
    /// Concurrent clients (raw: threads, each with its own infer request).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Worker threads of the clients' tokio runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Also print one JSON line per run.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// TFS PredictionService/Predict.
    Grpc,
    /// KServe v2 GRPCInferenceService/ModelInfer.
    Kserve,
    Rest,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if args.clients == 0 || args.threads == 0 || args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("--clients and --threads must be ≥ 1, --duration > 0, --warmup ≥ 0".into());
    }
    let plugin = parse_plugin(&args.plugin)?;
    let mut reports = Vec::new();
    if let Some(addr) = &args.grpc {
        let workload = Workload::from_flags(args)?;
        reports.push(run_served(
            args,
            &Target::Grpc(addr.clone()),
            &workload,
            None,
        )?);
    } else if let Some(addr) = &args.kserve {
        let workload = Workload::from_flags(args)?;
        reports.push(run_served(
            args,
            &Target::Kserve(addr.clone()),
            &workload,
            None,
        )?);
    } else if let Some(addr) = &args.rest {
        let workload = Workload::from_flags(args)?;
        reports.push(run_served(
            args,
            &Target::Rest(addr.clone()),
            &workload,
            None,
        )?);
    } else if let Some(file) = &args.raw {
        load_openvino()?;
        let workload = Workload::from_model(args, file, display_name(file))?;
        reports.push(run_raw(args, file, &workload, &plugin)?);
    } else if let Some(dir) = args.model_dir.as_ref().filter(|_| args.spawn_server) {
        load_openvino()?;
        let file = model_file(dir)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let workload = Workload::from_model(args, &file, name.unwrap_or_else(|| "model".into()))?;
        reports.push(run_spawned(args, dir, &workload, &plugin)?);
        if args.compare_raw {
            reports.push(run_raw(args, &file, &workload, &plugin)?);
        }
    } else {
        // `cargo test --all-targets` runs every bench once without arguments: say why nothing
        // happened, on one line that does not read like an error.
        println!("loadgen: nothing to measure without a target (--grpc, --kserve, --rest, --raw or --spawn-server; see --help or scripts/bench.sh)");
        return Ok(());
    }
    print_reports(args, &reports);
    Ok(())
}

/// `KEY=VALUE` flags, in order (OpenVINO applies them in order too).
fn parse_plugin(flags: &[String]) -> Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--plugin {kv:?}: expected KEY=VALUE")),
        })
        .collect()
}

fn load_openvino() -> Result<()> {
    vinoserve::runtime::openvino::library::load(None).map(drop)
}

// ---------------------------------------------------------------------------------------------
// The workload: one input tensor, built once.

/// An input precision as the three parties name it.
struct Dtype {
    name: &'static str,
    tf: TfType,
    ov: ElementType,
    size: usize,
}

const DTYPES: [Dtype; 13] = [
    dtype("FP32", TfType::DtFloat, ElementType::F32, 4),
    dtype("FP16", TfType::DtHalf, ElementType::F16, 2),
    dtype("BF16", TfType::DtBfloat16, ElementType::Bf16, 2),
    dtype("FP64", TfType::DtDouble, ElementType::F64, 8),
    dtype("INT8", TfType::DtInt8, ElementType::I8, 1),
    dtype("INT16", TfType::DtInt16, ElementType::I16, 2),
    dtype("INT32", TfType::DtInt32, ElementType::I32, 4),
    dtype("INT64", TfType::DtInt64, ElementType::I64, 8),
    dtype("UINT8", TfType::DtUint8, ElementType::U8, 1),
    dtype("UINT16", TfType::DtUint16, ElementType::U16, 2),
    dtype("UINT32", TfType::DtUint32, ElementType::U32, 4),
    dtype("UINT64", TfType::DtUint64, ElementType::U64, 8),
    dtype("BOOL", TfType::DtBool, ElementType::Boolean, 1),
];

const fn dtype(name: &'static str, tf: TfType, ov: ElementType, size: usize) -> Dtype {
    Dtype { name, tf, ov, size }
}

fn dtype_named(name: &str) -> Result<&'static Dtype> {
    DTYPES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("unknown --dtype {name}"))
}

fn dtype_of(element: ElementType) -> Result<&'static Dtype> {
    DTYPES
        .iter()
        .find(|d| d.ov == element)
        .ok_or_else(|| format!("model input element type {element:?} is not supported here"))
}

/// What every request sends: one named input with fixed pseudo-random values.
struct Workload {
    model: String,
    input: String,
    dtype: &'static Dtype,
    shape: Vec<usize>,
    /// The model's own input shape differs from `shape`: the server and raw runs reshape.
    reshape: bool,
    /// The input values, as the JSON body spells them and `bytes` encodes them.
    values: Vec<f64>,
    /// The input as little-endian tensor bytes.
    bytes: Bytes,
}

impl Workload {
    fn new(model: String, input: String, dtype: &'static Dtype, shape: Vec<usize>) -> Workload {
        let values = input_values(dtype, shape.iter().product());
        let bytes = Bytes::from(encode(dtype, &values));
        Workload {
            model,
            input,
            dtype,
            shape,
            reshape: false,
            values,
            bytes,
        }
    }

    /// For a server the generator knows nothing about: everything comes from the flags.
    fn from_flags(args: &Args) -> Result<Workload> {
        let need = |v: &Option<String>, flag: &str| {
            v.clone()
                .ok_or_else(|| format!("{flag} is required with --grpc / --rest"))
        };
        let shape = parse_shape(&need(&args.shape, "--shape")?)?;
        let dtype = dtype_named(args.dtype.as_deref().unwrap_or("FP32"))?;
        Ok(Workload::new(
            need(&args.model, "--model")?,
            need(&args.input, "--input")?,
            dtype,
            shape,
        ))
    }

    /// For a model file: the model's only input, its precision and shape, unless the flags
    /// say otherwise (a different --shape reshapes the model).
    fn from_model(args: &Args, file: &Path, default_name: String) -> Result<Workload> {
        let (input, element, model_shape) = model_input(file)?;
        if let Some(name) = args.input.as_ref().filter(|n| **n != input) {
            return Err(format!("the model's input is {input}, not {name}"));
        }
        let dtype = dtype_of(element)?;
        if let Some(name) = args.dtype.as_deref() {
            if dtype_named(name)?.ov != element {
                return Err(format!("the model's input is {}, not {name}", dtype.name));
            }
        }
        let shape = match &args.shape {
            Some(s) => parse_shape(s)?,
            None => static_shape(&model_shape).ok_or_else(|| {
                format!("input {input} has a dynamic shape {model_shape:?}: give --shape")
            })?,
        };
        let model = args.model.clone().unwrap_or(default_name);
        let mut workload = Workload::new(model, input, dtype, shape);
        workload.reshape = static_shape(&model_shape).as_ref() != Some(&workload.shape);
        Ok(workload)
    }

    /// Items per request: the batch dimension.
    fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    fn predict_request(&self) -> PredictRequest {
        let tensor = TensorProto {
            dtype: self.dtype.tf as i32,
            tensor_shape: Some(TensorShapeProto {
                dim: self
                    .shape
                    .iter()
                    .map(|&d| tensor_shape_proto::Dim {
                        size: d as i64,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            }),
            tensor_content: self.bytes.clone(),
            ..Default::default()
        };
        PredictRequest {
            model_spec: Some(ModelSpec {
                name: self.model.clone(),
                ..Default::default()
            }),
            inputs: HashMap::from([(self.input.clone(), tensor)]),
            ..Default::default()
        }
    }

    /// KServe ModelInfer with the input as `raw_input_contents` (shares the prebuilt bytes).
    fn infer_request(&self) -> ModelInferRequest {
        ModelInferRequest {
            model_name: self.model.clone(),
            inputs: vec![model_infer_request::InferInputTensor {
                name: self.input.clone(),
                datatype: self.dtype.name.to_string(),
                shape: self.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            }],
            raw_input_contents: vec![self.bytes.clone()],
            ..Default::default()
        }
    }

    /// `{"inputs": {"<input>": <nested array>}}`: TFS columnar, which carries the shape in the
    /// nesting.
    fn rest_body(&self) -> Bytes {
        let mut body = format!(
            "{{\"inputs\": {{{}: ",
            serde_json::Value::from(self.input.as_str())
        );
        json_array(&mut body, self.dtype, &self.shape, &self.values);
        body.push_str("}}");
        Bytes::from(body)
    }
}

fn parse_shape(text: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|d| match d.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "--shape {text:?}: expected positive dims like 1,224,224,3"
            )),
        })
        .collect()
}

fn static_shape(dims: &[i64]) -> Option<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// Image-like values (k/255) for floats, small integers otherwise, from a fixed-seed xorshift:
/// the served and raw runs see the same input, and no value is a denormal or NaN. (For the
/// models here the values do not change the inference cost.)
fn input_values(dtype: &Dtype, count: usize) -> Vec<f64> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match dtype.ov {
                ElementType::F32 | ElementType::F16 | ElementType::Bf16 | ElementType::F64 => {
                    (state % 256) as f64 / 255.0
                }
                ElementType::Boolean => (state % 2) as f64,
                _ => (state % 100) as f64,
            }
        })
        .collect()
}

fn encode(dtype: &Dtype, values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size);
    for &v in values {
        match dtype.ov {
            ElementType::F32 => out.extend((v as f32).to_le_bytes()),
            ElementType::F16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            ElementType::Bf16 => out.extend(half::bf16::from_f64(v).to_le_bytes()),
            ElementType::F64 => out.extend(v.to_le_bytes()),
            ElementType::I8 => out.extend((v as i8).to_le_bytes()),
            ElementType::I16 => out.extend((v as i16).to_le_bytes()),
            ElementType::I32 => out.extend((v as i32).to_le_bytes()),
            ElementType::I64 => out.extend((v as i64).to_le_bytes()),
            ElementType::U8 | ElementType::Boolean => out.push(v as u8),
            ElementType::U16 => out.extend((v as u16).to_le_bytes()),
            ElementType::U32 => out.extend((v as u32).to_le_bytes()),
            ElementType::U64 => out.extend((v as u64).to_le_bytes()),
            other => unreachable!("no Dtype entry for {other:?}"),
        }
    }
    out
}

/// Appends `values` as a JSON array nested by `shape` (row-major).
fn json_array(out: &mut String, dtype: &Dtype, shape: &[usize], values: &[f64]) {
    let Some((&outer, inner)) = shape.split_first() else {
        return json_scalar(out, dtype, values[0]);
    };
    let stride = values.len() / outer;
    out.push('[');
    for (i, chunk) in values.chunks(stride).enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_array(out, dtype, inner, chunk);
    }
    out.push(']');
}

fn json_scalar(out: &mut String, dtype: &Dtype, v: f64) {
    let _ = match dtype.ov {
        // f32's Display is the shortest string that reads back to the same f32 ("0.5019608").
        ElementType::F32 | ElementType::F16 | ElementType::Bf16 => write!(out, "{}", v as f32),
        ElementType::F64 => write!(out, "{v}"),
        ElementType::Boolean => write!(out, "{}", v != 0.0),
        _ => write!(out, "{}", v as i64),
    };
}

// ---------------------------------------------------------------------------------------------
// Measuring: the window, per-client tallies, CPU time.

/// CPU seconds and minor page faults so far of this process and, when known, of the server
/// process (with its placement workers).
#[derive(Clone, Copy)]
struct CpuSample {
    own: Usage,
    server: Option<Usage>,
}

/// What a process has used so far: CPU seconds and minor page faults (a fault per fresh page
/// touched: freshly mapped buffers show up here).
#[derive(Clone, Copy, Default)]
struct Usage {
    seconds: f64,
    minor_faults: u64,
}

impl Usage {
    fn minus(self, earlier: Usage) -> Usage {
        Usage {
            seconds: self.seconds - earlier.seconds,
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
        }
    }
}

impl CpuSample {
    fn take(server_pid: Option<u32>) -> CpuSample {
        CpuSample {
            own: own_usage(),
            server: server_pid.and_then(server_usage),
        }
    }

    fn since(self, earlier: CpuSample) -> CpuSample {
        CpuSample {
            own: self.own.minus(earlier.own),
            server: self.server.zip(earlier.server).map(|(a, b)| a.minus(b)),
        }
    }
}

fn own_usage() -> Usage {
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    // SAFETY: getrusage only writes the struct we pass; all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of this process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    Usage {
        seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        minor_faults: usage.ru_minflt as u64,
    }
}

/// Usage of the server and its live child processes (the placement workers of `--topology`,
/// which do the inference there).
fn server_usage(pid: u32) -> Option<Usage> {
    let children = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| process_stat(p).filter(|(ppid, _)| *ppid == pid))
        .fold(Usage::default(), |sum, (_, u)| Usage {
            seconds: sum.seconds + u.seconds,
            minor_faults: sum.minor_faults + u.minor_faults,
        });
    let own = process_stat(pid)?.1;
    Some(Usage {
        seconds: own.seconds + children.seconds,
        minor_faults: own.minor_faults + children.minor_faults,
    })
}

/// (parent pid, usage) of a process, from /proc/PID/stat (fields 4, 10, 14, 15).
fn process_stat(pid: u32) -> Option<(u32, Usage)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let minor_faults = fields.get(7)?.parse().ok()?;
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((
        ppid,
        Usage {
            seconds: ticks / per_second,
            minor_faults,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Served runs: gRPC / REST clients on a small tokio runtime.

enum Target {
    Grpc(String),
    Kserve(String),
    Rest(String),
}

/// One client with its own connection and its own copy of the prebuilt request.
// A few long-lived values, never moved in the loop: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Grpc {
        client: PredictionServiceClient<Channel>,
        request: PredictRequest,
    },
    Kserve {
        client: GrpcInferenceServiceClient<Channel>,
        request: ModelInferRequest,
    },
    Rest {
        client: reqwest::Client,
        url: String,
        body: Bytes,
    },
}

async fn grpc_channel(addr: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to gRPC {addr}: {e}"))
}

impl Client {
    async fn connect(target: &Target, workload: &Workload) -> Result<Client> {
        Ok(match target {
            Target::Kserve(addr) => Client::Kserve {
                client: GrpcInferenceServiceClient::new(grpc_channel(addr).await?)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
                request: workload.infer_request(),
            },
            Target::Grpc(addr) => {
                let channel = grpc_channel(addr).await?;
                Client::Grpc {
                    client: PredictionServiceClient::new(channel)
                        .max_decoding_message_size(usize::MAX)
                        .max_encoding_message_size(usize::MAX),
                    request: workload.predict_request(),
                }
            }
            Target::Rest(addr) => Client::Rest {
                // One client (= one keep-alive connection pool) per simulated client.
                client: reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| e.to_string())?,
                url: format!("http://{addr}/v1/models/{}:predict", workload.model),
                body: workload.rest_body(),
            },
        })
    }

    /// One request, answered; the response is received in full and dropped.
    async fn send(&mut self) -> Result<()> {
        match self {
            Client::Grpc { client, request } => client
                .predict(request.clone())
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Client::Kserve { client, request } => client
                .model_infer(request.clone())
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Client::Rest { client, url, body } => {
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                // Read the body even on success: the connection is reused only once it is drained.
                let text = response.bytes().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text)))
                }
            }
        }
    }
}

impl load::Client for Client {
    type Outcome = Result<()>;

    fn call(&mut self, _n: u32) -> impl std::future::Future<Output = Result<()>> + Send {
        self.send()
    }
}

/// The measurement window of a run: `--warmup` from now, for `--duration`.
fn window(args: &Args) -> Window {
    Window::after(
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    )
}

/// Counts only the answers inside `window`, whose clients stop at its end.
fn measured(window: Window) -> Settings {
    Settings {
        window: Some(window),
        ..Settings::default()
    }
}

fn run_served(
    args: &Args,
    target: &Target,
    workload: &Workload,
    server_pid: Option<u32>,
) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (tally, cpu) = runtime.block_on(async {
        let mut clients = Vec::with_capacity(args.clients);
        for _ in 0..args.clients {
            clients.push(Client::connect(target, workload).await?);
        }
        // One request before the load, so a wrong model / input name fails once, clearly.
        clients[0]
            .send()
            .await
            .map_err(|e| format!("probe request failed: {e}"))?;
        let window = window(args);
        let labelled = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("client {i}"), c))
            .collect();
        let load = Load::spawn(measured(window), labelled);
        tokio::time::sleep_until(window.start.into()).await;
        let before = CpuSample::take(server_pid);
        tokio::time::sleep_until(window.end.into()).await;
        let cpu = CpuSample::take(server_pid).since(before);
        Ok::<_, String>((load.finish().await, cpu))
    })?;
    let kind = match target {
        Target::Grpc(_) => "grpc",
        Target::Kserve(_) => "kserve",
        Target::Rest(_) => "rest",
    };
    Ok(Report::new(
        args,
        kind,
        workload,
        tally,
        Some(cpu.own.seconds),
        cpu.server,
    ))
}

// ---------------------------------------------------------------------------------------------
// The raw baseline: OpenVINO in this process.

/// Properties shown next to the raw run, to tell what the hint chose.
const SHOWN_PROPERTIES: [&str; 4] = [
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "INFERENCE_PRECISION_HINT",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
];

fn read_model(core: &mut Core, file: &Path) -> Result<Model> {
    let bin = file.with_extension("bin");
    let weights = if bin.is_file() {
        bin.display().to_string()
    } else {
        String::new()
    };
    core.read_model_from_file(&file.display().to_string(), &weights)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// The model's single input: name, element type, shape (-1 for dynamic dimensions).
fn model_input(file: &Path) -> Result<(String, ElementType, Vec<i64>)> {
    let mut core = Core::new().map_err(|e| e.to_string())?;
    let model = read_model(&mut core, file)?;
    let count = model.get_inputs_len().map_err(|e| e.to_string())?;
    if count != 1 {
        return Err(format!("the model has {count} inputs; loadgen drives one"));
    }
    let node = model.get_input_by_index(0).map_err(|e| e.to_string())?;
    let shape = node.get_partial_shape().map_err(|e| e.to_string())?;
    let dims = shape
        .get_dimensions()
        .iter()
        .map(|d| if d.is_dynamic() { -1 } else { d.get_max() })
        .collect();
    Ok((
        node.get_name().map_err(|e| e.to_string())?,
        node.get_element_type().map_err(|e| e.to_string())?,
        dims,
    ))
}

/// Compiles on CPU as the server does: properties set on a fresh Core, then compile (the Rust
/// `compile_model` takes no per-call properties).
fn compile(file: &Path, workload: &Workload, plugin: &[(String, String)]) -> Result<CompiledModel> {
    let mut core = Core::new().map_err(|e| e.to_string())?;
    for (key, value) in plugin {
        core.set_property(
            &DeviceType::CPU,
            &RwPropertyKey::Other(key.clone().into()),
            value,
        )
        .map_err(|e| format!("--plugin {key}={value} rejected: {e}"))?;
    }
    let mut model = read_model(&mut core, file)?;
    if workload.reshape {
        let dims: Vec<Dimension> = workload
            .shape
            .iter()
            .map(|&d| Dimension::new(d as i64, d as i64))
            .collect();
        let shape = PartialShape::new(dims.len() as i64, &dims).map_err(|e| e.to_string())?;
        model
            .reshape(&[(workload.input.as_str(), &shape)])
            .map_err(|e| format!("reshape to {:?}: {e}", workload.shape))?;
    }
    core.compile_model(&model, DeviceType::CPU)
        .map_err(|e| format!("compile: {e}"))
}

/// What the server's worker does per request: copy the input in, infer, copy each output out.
fn infer_once(request: &mut InferRequest, input: &str, data: &[u8], outputs: usize) -> Result<()> {
    let err = |e: openvino::InferenceError| e.to_string();
    request
        .get_tensor(input)
        .map_err(err)?
        .get_raw_data_mut()
        .map_err(err)?
        .copy_from_slice(data);
    request.infer().map_err(err)?;
    for index in 0..outputs {
        let tensor = request.get_output_tensor_by_index(index).map_err(err)?;
        std::hint::black_box(Bytes::copy_from_slice(tensor.get_raw_data().map_err(err)?));
    }
    Ok(())
}

/// What a raw thread needs of the workload (owned, to move into the thread).
#[derive(Clone)]
struct RawJob {
    input: String,
    data: Bytes,
    outputs: usize,
}

fn run_raw(
    args: &Args,
    file: &Path,
    workload: &Workload,
    plugin: &[(String, String)],
) -> Result<Report> {
    let mut compiled = compile(file, workload, plugin)?;
    let properties = shown_properties(&compiled);
    eprintln!("loadgen: raw compiled model: {properties:?}");
    let job = RawJob {
        input: workload.input.clone(),
        data: workload.bytes.clone(),
        outputs: compiled.get_output_size().map_err(|e| e.to_string())?,
    };
    let mut requests = (0..args.clients)
        .map(|_| compiled.create_infer_request().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>>>()?;
    infer_once(&mut requests[0], &job.input, &job.data, job.outputs)
        .map_err(|e| format!("probe inference failed: {e}"))?;
    let window = window(args);
    let threads = requests
        .into_iter()
        .enumerate()
        .map(|(i, mut request)| {
            let job = job.clone();
            let infer = move |_n| infer_once(&mut request, &job.input, &job.data, job.outputs);
            (format!("raw {i}"), infer)
        })
        .collect();
    let load = Load::spawn_threads(measured(window), threads);
    std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
    let before = CpuSample::take(None);
    std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
    let cpu = CpuSample::take(None).since(before);
    let tally = load.finish_threads();
    // In-process, the inference *is* this process: its CPU goes in the server column.
    let mut report = Report::new(args, "raw", workload, tally, None, Some(cpu.own));
    report.properties = properties;
    Ok(report)
}

fn shown_properties(compiled: &CompiledModel) -> BTreeMap<String, String> {
    SHOWN_PROPERTIES
        .iter()
        .filter_map(|&key| {
            let value = compiled
                .get_property(&PropertyKey::Other(key.into()))
                .ok()?;
            Some((key.to_string(), value.into_owned()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// --spawn-server: the real binary on 127.0.0.1 with ephemeral ports.

/// The model file of the highest numbered version in a model folder.
fn model_file(dir: &Path) -> Result<PathBuf> {
    let read = |d: &Path| std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()));
    let version = read(dir)?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
        .max()
        .ok_or_else(|| format!("{}: no numbered version folder", dir.display()))?
        .1;
    let mut files: Vec<PathBuf> = read(&version)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml" || x == "onnx"))
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no .xml or .onnx model", version.display()))
}

/// `.../<model>/<version>/model.xml` → `<model>`.
fn display_name(file: &Path) -> String {
    file.parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

struct SpawnedServer {
    child: Child,
    grpc: String,
    rest: String,
}

impl SpawnedServer {
    /// Serves the model in single-model mode (`--model_name/--model_path/--plugin_config`), the
    /// flag form of a one-model config.json, so a run needs no files besides the model.
    fn start(
        args: &Args,
        model_dir: &Path,
        workload: &Workload,
        plugin: &[(String, String)],
    ) -> Result<SpawnedServer> {
        let bin = args
            .server_bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vinoserve")));
        let mut command = Command::new(&bin);
        command
            .args(["--port", "0", "--rest_port", "0"])
            .args(["--grpc_bind_address", "127.0.0.1"])
            .args(["--rest_bind_address", "127.0.0.1"])
            .args(["--model_name", &workload.model])
            .arg("--model_path")
            .arg(model_dir);
        if !plugin.is_empty() {
            let json: BTreeMap<_, _> = plugin.iter().cloned().collect();
            command.args(["--plugin_config", &serde_json::json!(json).to_string()]);
        }
        if workload.reshape {
            command.args(["--shape", &serde_json::json!(workload.shape).to_string()]);
        }
        let mut child = command
            .args(&args.server_arg)
            .env("VINOSERVE_LOG_LEVEL", "WARNING")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let lines = stdout_lines(&mut child);
        let mut server = SpawnedServer {
            child,
            grpc: String::new(),
            rest: String::new(),
        };
        server.wait_ready(&lines)?;
        Ok(server)
    }

    /// Reads the address lines, then waits for "models loaded" and refuses a failed load.
    fn wait_ready(&mut self, lines: &mpsc::Receiver<String>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| "the server exited or did not finish loading in 300 s")?;
            if let Some(addr) = line.strip_prefix("vinoserve: gRPC listening on ") {
                self.grpc = addr.trim().to_string();
            } else if let Some(addr) = line.strip_prefix("vinoserve: REST listening on ") {
                self.rest = addr.trim().to_string();
            } else if line.starts_with("vinoserve: models loaded") {
                if !line.ends_with("failures in: [])") {
                    return Err(format!("the server failed to load the model: {line}"));
                }
                return Ok(());
            }
        }
    }

    /// SIGTERM, then wait for a clean exit (the server drains and unloads).
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the server exited with {status} after SIGTERM"))
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the server did not exit within 60 s of SIGTERM".into())
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // Only matters on an error path; after `stop` the child has already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the child's stdout lines; the thread keeps draining so the pipe never fills.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = sender.send(line);
        }
    });
    lines
}

fn run_spawned(
    args: &Args,
    model_dir: &Path,
    workload: &Workload,
    plugin: &[(String, String)],
) -> Result<Report> {
    let server = SpawnedServer::start(args, model_dir, workload, plugin)?;
    let target = match args.protocol {
        Protocol::Grpc => Target::Grpc(server.grpc.clone()),
        Protocol::Kserve => Target::Kserve(server.grpc.clone()),
        Protocol::Rest => Target::Rest(server.rest.clone()),
    };
    eprintln!(
        "loadgen: server up (gRPC {}, REST {}), measuring",
        server.grpc, server.rest
    );
    let report = run_served(args, &target, workload, Some(server.child.id()));
    // Stop the server before any raw run, so the baseline has the machine to itself.
    server.stop()?;
    report
}

// ---------------------------------------------------------------------------------------------
// Reporting.

struct Report {
    target: &'static str,
    model: String,
    plugin: String,
    clients: usize,
    batch: usize,
    duration: f64,
    tally: Tally,
    /// CPU seconds of the load generator in the window (None for raw: it is the inference).
    own_cpu: Option<f64>,
    /// CPU seconds of the server (raw: of this process) in the window, when known.
    server_cpu: Option<f64>,
    /// Minor page faults of the server (raw: of this process) in the window, when known.
    server_faults: Option<u64>,
    properties: BTreeMap<String, String>,
}

impl Report {
    fn new(
        args: &Args,
        target: &'static str,
        workload: &Workload,
        tally: Tally,
        own_cpu: Option<f64>,
        server: Option<Usage>,
    ) -> Report {
        Report {
            target,
            model: workload.model.clone(),
            plugin: if args.plugin.is_empty() {
                "-".into()
            } else {
                args.plugin.join(",")
            },
            clients: args.clients,
            batch: workload.batch(),
            duration: args.duration,
            tally,
            own_cpu,
            server_cpu: server.map(|u| u.seconds),
            server_faults: server.map(|u| u.minor_faults),
            properties: BTreeMap::new(),
        }
    }

    fn requests(&self) -> u64 {
        self.tally.latency_ns.len()
    }

    fn req_per_s(&self) -> f64 {
        self.requests() as f64 / self.duration
    }

    /// Requests per CPU second of the serving side (raw: of this process). On a shared machine
    /// this moves less than req/s with the CPU that other processes leave over.
    fn req_per_server_cpu_s(&self) -> Option<f64> {
        self.server_cpu.map(|cpu| self.requests() as f64 / cpu)
    }

    /// Minor page faults of the serving side per request.
    fn faults_per_request(&self) -> Option<f64> {
        self.server_faults
            .map(|f| f as f64 / self.requests().max(1) as f64)
    }

    /// Latency quantile in milliseconds (q = 1.0 gives the max).
    fn ms(&self, q: f64) -> f64 {
        let h = &self.tally.latency_ns;
        let ns = if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        };
        ns as f64 / 1e6
    }

    /// CPU seconds as percent of one core over the window.
    fn pct(&self, seconds: Option<f64>) -> String {
        seconds.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s / self.duration))
    }

    fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
            self.target,
            self.model,
            self.plugin,
            self.clients,
            self.batch,
            self.req_per_s(),
            self.req_per_s() * self.batch as f64,
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(1.0),
            self.tally.failures,
            self.pct(self.own_cpu),
            self.pct(self.server_cpu),
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "model": self.model,
            "plugin": self.plugin,
            "clients": self.clients,
            "batch": self.batch,
            "duration_s": self.duration,
            "requests": self.requests(),
            "errors": self.tally.failures,
            "first_error": self.tally.first_failure,
            "req_per_s": self.req_per_s(),
            "items_per_s": self.req_per_s() * self.batch as f64,
            "req_per_server_cpu_s": self.req_per_server_cpu_s(),
            "mean_ms": self.tally.latency_ns.mean() / 1e6,
            "p50_ms": self.ms(0.5),
            "p90_ms": self.ms(0.9),
            "p99_ms": self.ms(0.99),
            "max_ms": self.ms(1.0),
            "loadgen_cpu_s": self.own_cpu,
            "server_cpu_s": self.server_cpu,
            "server_minor_faults_per_request": self.faults_per_request(),
            "properties": self.properties,
        })
    }
}

const MARKDOWN_HEADER: &str = "\
| target | model | plugin | clients | batch | req/s | items/s | p50 ms | p90 ms | p99 ms | max ms | errors | loadgen CPU | server CPU |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn print_reports(args: &Args, reports: &[Report]) {
    println!("{MARKDOWN_HEADER}");
    for report in reports {
        println!("{}", report.markdown_row());
    }
    if let [served, raw] = reports {
        println!(
            "\nserved ÷ raw: throughput {:.3}×, p50 {:.3}× ({:+.3} ms), p99 {:.3}× ({:+.3} ms)",
            served.req_per_s() / raw.req_per_s(),
            served.ms(0.5) / raw.ms(0.5),
            served.ms(0.5) - raw.ms(0.5),
            served.ms(0.99) / raw.ms(0.99),
            served.ms(0.99) - raw.ms(0.99),
        );
        if let Some((s, r)) = served
            .req_per_server_cpu_s()
            .zip(raw.req_per_server_cpu_s())
        {
            println!(
                "requests per server-CPU second: served {s:.1}, raw {r:.1}, ratio {:.3}×",
                s / r
            );
        }
        if let Some((s, r)) = served.faults_per_request().zip(raw.faults_per_request()) {
            println!("minor page faults per request: served {s:.0}, raw {r:.0}");
        }
    }
    for report in reports {
        if let Some(e) = &report.tally.first_failure {
            eprintln!(
                "loadgen: {} errors in {}; first: {e}",
                report.tally.failures, report.target
            );
        }
        if args.json {
            println!("{}", report.json());
        }
    }
}
