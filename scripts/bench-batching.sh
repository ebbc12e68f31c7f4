#!/usr/bin/env bash
# Dynamic batching benchmark (#15 item 2), in one run: the MLP of scripts/make_mlp.py with 32
# closed-loop batch-1 clients against vinoserve with and without batching and against Triton 2.51
# with dynamic_batching on the same IR, raw OpenVINO at batch 1 and 32, and ResNet-50 batch 1 with
# 8 clients, batching on and off; and the transport floor: the same 32 clients against a
# one-matmul model with the MLP's input and output widths, batching off, which is as fast as any
# server can answer them on this machine. Every side is measured once per round, the rounds alternate the
# order (forward, then backward) so drift cancels; the report gives medians and the spread.
# See docs/benchmarks.md, "Dynamic batching".
#
#   scripts/bench-batching.sh                       # 5 rounds of 3 s warm-up + 15 s (~12 min)
#   scripts/bench-batching.sh --rounds 1 --duration 3 --warmup 1   # a quick look (~2 min)
#   scripts/bench-batching.sh --mlp-widths 1024,8192,8192,256 --no-resnet  # a heavier MLP
#
# Triton: the tritonserver binary and its python backend ship in the nvidia-pytriton wheel
# (0.5.13 embeds Triton 2.51.0). It is installed the first time into a venv, .deps-bench/triton
# (git-ignored, beside and never inside the shared .deps); its model.py (benches/triton/) runs the
# IR with the same OpenVINO Python package that vinoserve links. If Triton cannot be installed or
# started, the run says why and goes on without it.
#
# Results: bench-results/batching-<timestamp>/ (results.md, results.jsonl, bench.log).
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
PYTRITON_VERSION="0.5.13" # embeds Triton 2.51.0
TRITON_VENV="$ROOT/.deps-bench/triton"
MLP_CLIENTS=32
RESNET_CLIENTS=8

usage() {
    cat <<'EOF'
Usage: scripts/bench-batching.sh [options]

  --rounds R          rounds; each measures every side once (default: 5)
  --duration S        seconds measured per window (default: 15)
  --warmup S          seconds of load before each window (default: 3)
  --timeout-us N      batch_timeout_micros of vinoserve and max_queue_delay_microseconds of
                      Triton (default: 1000)
  --nireq N           vinoserve's infer requests per model (default: 2)
  --mlp-widths W      the MLP's input and layer widths (default: 512,2048,2048,256, issue #15's)
  --triton-instances N  Triton python-backend instances of the MLP (default: 1)
  --no-triton         leave Triton out
  --no-resnet         leave the ResNet-50 part out
  --out DIR           results folder (default: bench-results/batching-<timestamp>)
  -h, --help          this text
EOF
}

die() { echo "bench-batching.sh: error: $*" >&2; exit 1; }

rounds=5 duration=15 warmup=3 timeout_us=1000 nireq=2 triton_instances=1 triton=1 resnet=1 out=""
mlp_widths=512,2048,2048,256
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --warmup) warmup="${2:?}"; shift ;;
        --timeout-us) timeout_us="${2:?}"; shift ;;
        --nireq) nireq="${2:?}"; shift ;;
        --mlp-widths) mlp_widths="${2:?}"; shift ;;
        --triton-instances) triton_instances="${2:?}"; shift ;;
        --no-triton) triton=0 ;;
        --no-resnet) resnet=0 ;;
        --out) out="${2:?}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done
for n in "$rounds" "$timeout_us" "$nireq" "$triton_instances"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "$n is not a positive integer"
done
[[ $mlp_widths =~ ^[1-9][0-9]*(,[1-9][0-9]*)+$ ]] || die "--mlp-widths $mlp_widths: want W,W[,W...]"
mlp_in=${mlp_widths%%,*} mlp_out=${mlp_widths##*,}

cd "$ROOT"
scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

if [[ -z $out ]]; then
    out="$ROOT/bench-results/batching-$(date +%Y%m%d-%H%M%S)"
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/bench.log"
results="$out/results.jsonl"
: >"$results"
say() { echo "bench-batching.sh: $*" | tee -a "$log"; }

# Build once, then run private copies, so that other builds cannot swap a binary mid-run.
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
say "building the server and loadgen (release)"
cargo bench --bench loadgen --no-run --message-format=json-render-diagnostics >"$work/build.jsonl"
python3 - "$work/build.jsonl" "$work" <<'EOF'
import json, shutil, sys
wanted = {("bin", "vinoserve"), ("bench", "loadgen")}
for line in open(sys.argv[1]):
    msg = json.loads(line)
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe:
        if (msg["target"]["kind"][0], msg["target"]["name"]) in wanted:
            shutil.copy2(exe, f"{sys.argv[2]}/{msg['target']['name']}")
EOF
[[ -x $work/loadgen && -x $work/vinoserve ]] || die "the build did not produce loadgen and vinoserve"

# The models: the MLP (dynamic batch), the floor's one matmul, and ResNet-50 v1 (NHWC, batch 1 as
# generated; vinoserve's batched instance reshapes it to a dynamic batch). The issue's MLP keeps
# its folder name, mlp; others are named by their widths.
models="$ROOT/generated/models"
mlp_dir="$models/mlp"
[[ $mlp_widths == 512,2048,2048,256 ]] || mlp_dir="$models/mlp-${mlp_widths//,/-}"
floor_dir="$models/mlp-$mlp_in-$mlp_out"
mlp_xml="$mlp_dir/1/model.xml"
resnet_xml="$models/resnet_v1_50/1/model.xml"
make_mlp() { # WIDTHS DIR
    if [[ ! -f $2/1/model.xml ]]; then
        mkdir -p "$2/1"
        python3 scripts/make_mlp.py --widths "$1" "$2/1/model.xml"
    fi
}
make_mlp "$mlp_widths" "$mlp_dir"
make_mlp "$mlp_in,$mlp_out" "$floor_dir"
if [[ $resnet == 1 && ! -f $resnet_xml ]]; then
    python3 scripts/make_resnet.py --models resnet_v1_50 --out "$models"
fi

# free_port: a TCP port nobody listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_ready URL PID WHAT: poll URL until it answers 200; fail if PID exits first.
wait_ready() {
    local i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
        sleep 0.5
    done
    echo "bench-batching.sh: $3 not ready after 300 s" >&2
    return 1
}

# vinoserve: one server, each model twice under two names, batching off and on, so that switching
# sides is a model name and an idle side costs nothing.
vs_grpc=$(free_port) vs_rest=$(free_port)
python3 - "$work/vinoserve.json" "$models" "$nireq" "$timeout_us" "$resnet" "$mlp_dir" "$floor_dir" <<'EOF'
import json, sys
path, models, nireq, timeout_us, resnet, mlp, floor = sys.argv[1:8]
nireq, timeout_us, resnet = int(nireq), int(timeout_us), resnet == "1"
def batching(size):
    # max_enqueued_batches: room for every client's request, whatever the batch sizes.
    return {"max_batch_size": size, "batch_timeout_micros": timeout_us, "max_enqueued_batches": 8}
configs = [
    {"name": "mlp", "base_path": mlp, "nireq": nireq},
    {"name": "mlp_batched", "base_path": mlp, "nireq": nireq, "batching": batching(32)},
    {"name": "floor", "base_path": floor, "nireq": nireq},
]
if resnet:
    configs += [
        {"name": "resnet", "base_path": f"{models}/resnet_v1_50", "nireq": nireq},
        {"name": "resnet_batched", "base_path": f"{models}/resnet_v1_50", "nireq": nireq,
         "shape": "(-1,224,224,3)", "batching": batching(8)},
    ]
json.dump({"model_config_list": [{"config": c} for c in configs]}, open(path, "w"), indent=1)
EOF
say "starting vinoserve (gRPC $vs_grpc, REST $vs_rest), nireq $nireq, batch_timeout_micros $timeout_us"
"$work/vinoserve" --config_path "$work/vinoserve.json" --port "$vs_grpc" --rest_port "$vs_rest" \
    >"$out/vinoserve.log" 2>&1 &
vs_pid=$!
pids+=("$vs_pid")
vs_models=(mlp mlp_batched floor)
[[ $resnet == 0 ]] || vs_models+=(resnet resnet_batched)
for m in "${vs_models[@]}"; do
    wait_ready "http://127.0.0.1:$vs_rest/v2/models/$m/ready" "$vs_pid" "vinoserve model $m" ||
        die "vinoserve did not load $m (log: $out/vinoserve.log)"
done

# install_triton: nvidia-pytriton into its own venv unless it is there. Returns 1 (having said
# why) when that fails.
install_triton() {
    local marker="$TRITON_VENV/.pytriton-$PYTRITON_VERSION"
    [[ -f $marker ]] && return 0
    say "installing nvidia-pytriton==$PYTRITON_VERSION (Triton 2.51.0) into $TRITON_VENV"
    rm -rf "$TRITON_VENV"
    mkdir -p "$(dirname "$TRITON_VENV")"
    if ! python3 -m venv "$TRITON_VENV" >>"$log" 2>&1 ||
        ! env -u PYTHONPATH "$TRITON_VENV/bin/pip" install -q --disable-pip-version-check \
            "nvidia-pytriton==$PYTRITON_VERSION" >>"$log" 2>&1; then
        say "Triton: pip install nvidia-pytriton==$PYTRITON_VERSION failed (see $log)"
        return 1
    fi
    touch "$marker"
}

# start_triton: tritonserver from the wheel with a model repository of the MLP under
# dynamic_batching, and a backend folder holding the python backend with the stub built for this
# Python. Sets tr_grpc. Returns 1 (having said why) when it does not come up.
start_triton() {
    local site pyver backends repo
    site=$("$TRITON_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    pyver=$("$TRITON_VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    local server="$site/pytriton/tritonserver"
    backends="$work/triton/backends" repo="$work/triton/models"
    mkdir -p "$backends/python" "$repo/mlp/1"
    ln -s "$server/backends/python/libtriton_python.so" "$server/backends/python/triton_python_backend_utils.py" \
        "$backends/python/"
    cp "$server/python_backend_stubs/$pyver/triton_python_backend_stub" "$backends/python/" ||
        { say "Triton: no python backend stub for Python $pyver in the wheel"; return 1; }
    cp benches/triton/model.py "$repo/mlp/1/"
    cat >"$repo/mlp/config.pbtxt" <<EOF
backend: "python"
max_batch_size: 32
input [ { name: "x", data_type: TYPE_FP32, dims: [ $mlp_in ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ $mlp_out ] } ]
dynamic_batching { max_queue_delay_microseconds: $timeout_us }
instance_group [ { count: $triton_instances, kind: KIND_CPU } ]
parameters { key: "ir", value: { string_value: "$mlp_xml" } }
EOF
    tr_grpc=$(free_port)
    local tr_http tr_metrics
    tr_http=$(free_port) tr_metrics=$(free_port)
    say "starting tritonserver (gRPC $tr_grpc), dynamic_batching max_queue_delay_microseconds $timeout_us, $triton_instances instance(s)"
    # The wheel's own libraries (libcudart and friends; without a GPU Triton logs that and runs
    # on the CPU) for the stub; PYTHONPATH (scripts/env.sh) for model.py's numpy and openvino.
    LD_LIBRARY_PATH="$site/nvidia_pytriton.libs:$LD_LIBRARY_PATH" "$server/bin/tritonserver" \
        --model-repository "$repo" --backend-directory "$backends" --grpc-port "$tr_grpc" \
        --http-port "$tr_http" --metrics-port "$tr_metrics" >"$out/triton.log" 2>&1 &
    tr_pid=$!
    pids+=("$tr_pid")
    tr_metrics_url="http://127.0.0.1:$tr_metrics/metrics"
    if ! wait_ready "http://127.0.0.1:$tr_http/v2/models/mlp/ready" "$tr_pid" "tritonserver"; then
        say "Triton did not come up; the last lines of $out/triton.log:"
        grep -av '^[|+]' "$out/triton.log" | tail -n 8 | sed 's/^/    /' | tee -a "$log"
        return 1
    fi
    say "Triton $(curl -s "http://127.0.0.1:$tr_http/v2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])') ready"
}
if [[ $triton == 1 ]]; then
    if ! install_triton || ! start_triton; then
        say "going on without Triton"
        triton=0
    fi
fi

# The sides of a round, in order: name, then how loadgen reaches it.
sides=(floor_off mlp_off mlp_on)
[[ $triton == 0 ]] || sides+=(mlp_triton)
sides+=(mlp_raw_b1 mlp_raw_b32)
[[ $resnet == 0 ]] || sides+=(resnet_off resnet_on)

# batch_counters SIDE: "rows inferences" so far, from the server's metrics (vinoserve:
# vinoserve_batch_size sum and count; Triton: nv_inference_count and nv_inference_exec_count);
# empty where the side has none.
batch_counters() {
    local url model
    case "$1" in
        mlp_on) url="http://127.0.0.1:$vs_rest/metrics" model=mlp_batched ;;
        resnet_on) url="http://127.0.0.1:$vs_rest/metrics" model=resnet_batched ;;
        mlp_triton) url="$tr_metrics_url" model=mlp ;;
        *) return 0 ;;
    esac
    curl -s "$url" | python3 -c '
import re, sys
model, text = sys.argv[1], sys.stdin.read()
def total(metric):
    pat = re.compile(r"^" + metric + r"\{[^}]*model=\"" + model + r"\"[^}]*\} (\S+)$|^" + metric
                     + r"\{[^}]*name=\"" + model + r"\"[^}]*\} (\S+)$", re.M)
    return sum(float(a or b) for a, b in pat.findall(text))
if "nv_inference_exec_count" in text:
    print(total("nv_inference_count"), total("nv_inference_exec_count"))
else:
    print(total("vinoserve_batch_size_sum"), total("vinoserve_batch_size_count"))
' "$model"
}

# measure ROUND SIDE: one loadgen window; its JSON line, with the round, side, load average and
# rows per inference, goes to results.jsonl.
measure() {
    local round=$1 side=$2 flags
    case "$side" in
        floor_off) flags=(--kserve "127.0.0.1:$vs_grpc" --model floor --input x --shape "1,$mlp_in" --clients "$MLP_CLIENTS") ;;
        mlp_off) flags=(--kserve "127.0.0.1:$vs_grpc" --model mlp --input x --shape "1,$mlp_in" --clients "$MLP_CLIENTS") ;;
        mlp_on) flags=(--kserve "127.0.0.1:$vs_grpc" --model mlp_batched --input x --shape "1,$mlp_in" --clients "$MLP_CLIENTS") ;;
        mlp_triton) flags=(--kserve "127.0.0.1:$tr_grpc" --model mlp --input x --shape "1,$mlp_in" --clients "$MLP_CLIENTS") ;;
        mlp_raw_b1) flags=(--raw "$mlp_xml" --shape "1,$mlp_in" --clients 1) ;;
        mlp_raw_b32) flags=(--raw "$mlp_xml" --shape "32,$mlp_in" --clients 1) ;;
        resnet_off) flags=(--kserve "127.0.0.1:$vs_grpc" --model resnet --input input --shape "1,224,224,3" --clients "$RESNET_CLIENTS") ;;
        resnet_on) flags=(--kserve "127.0.0.1:$vs_grpc" --model resnet_batched --input input --shape "1,224,224,3" --clients "$RESNET_CLIENTS") ;;
    esac
    local before after load
    before=$(batch_counters "$side")
    load=$(cut -d' ' -f1 /proc/loadavg)
    if ! "$work/loadgen" "${flags[@]}" --warmup "$warmup" --duration "$duration" --json \
        >"$work/run.out" 2>>"$log"; then
        say "round $round $side: loadgen failed (see $log)"
        echo "{\"round\": $round, \"side\": \"$side\", \"error\": \"loadgen failed\"}" >>"$results"
        return 0
    fi
    after=$(batch_counters "$side")
    python3 - "$work/run.out" "$round" "$side" "$load" "$before" "$after" "$results" <<'EOF' | tee -a "$log"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
run = json.loads(lines[-1])
run.update(round=int(sys.argv[2]), side=sys.argv[3], loadavg=float(sys.argv[4]))
before, after = sys.argv[5].split(), sys.argv[6].split()
extra = ""
if before and after:
    rows, inferences = (float(a) - float(b) for a, b in zip(after, before))
    run["rows_per_inference"] = rows / inferences if inferences else None
    extra = f", {run['rows_per_inference']:.1f} rows/inference" if inferences else ""
with open(sys.argv[7], "a") as f:
    f.write(json.dumps(run) + "\n")
print(f"round {run['round']} {run['side']}: {run['items_per_s']:.0f} items/s, p50 {run['p50_ms']:.2f} ms, "
      f"p99 {run['p99_ms']:.2f} ms, {run['errors']} errors{extra}")
EOF
}

{
    echo "== start $(date -u '+%F %T') UTC: $(uptime)"
    top -b -n 1 | head -n 20
} >>"$log"
windows=$((rounds * ${#sides[@]}))
say "$rounds rounds × ${#sides[@]} sides (${sides[*]}), ${warmup}s + ${duration}s each: about $(((windows * (warmup + duration) + 59) / 60)) min; results in $out"
for ((round = 1; round <= rounds; round++)); do
    order=("${sides[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#sides[@]} - 1; i >= 0; i--)); do order+=("${sides[i]}"); done
    fi
    for side in "${order[@]}"; do measure "$round" "$side"; done
done
{
    echo "== end $(date -u '+%F %T') UTC: $(uptime)"
    top -b -n 1 | head -n 20
} >>"$log"

python3 benches/batching_report.py "$results" --timeout-us "$timeout_us" --mlp-widths "$mlp_widths" \
    --log "$log" >"$out/results.md"
cat "$out/results.md"
say "results in $out"
