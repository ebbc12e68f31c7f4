#!/usr/bin/env bash
# Reproduces the 2018 OVMS vs TF Serving benchmark on this machine, as vinoserve (served, over
# gRPC) vs the same model run in-process by OpenVINO (raw), plus a concurrency sweep, the
# criterion micro-benchmarks and the project's three performance targets. See docs/benchmarks.md,
# "Benchmarks".
#
#   scripts/bench.sh --quick            # every point, 1 s warm-up + 3 s each (~14 min on 2 CPUs)
#   scripts/bench.sh                    # full: 5 s warm-up + 20 s each (~75 min on 2 CPUs)
#   scripts/bench.sh --tensorflow       # plus TensorFlow in-process (TF Serving stand-in) in Tables 1-3
#
# Results go to bench-results/<timestamp>/ (git-ignored): results.md, results.json,
# charts/*.svg, points.jsonl, bench.log, criterion/.
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
ALL_MODELS="resnet_v1_50,resnet_v2_50,resnet_v1_152,resnet_v2_152"
TABLE3_MODEL="resnet_v1_50"
# The targets part: resnet_v1_50 served ÷ raw at batch 1 and 16 under PERFORMANCE_HINT=THROUGHPUT,
# and the server's own overhead on a model that computes next to nothing (an add of [1,10], run
# at its own shape), where the gRPC + decode + queue + encode path is all there is to measure.
# The tiny model runs under LATENCY: one stream that infers on the calling thread, so neither run
# pays THROUGHPUT's hand-off to a stream thread and the difference is the serving layer alone.
# The thresholds live in benches/report.py (TARGETS).
TARGET_HINT="THROUGHPUT"
TINY_HINT="LATENCY"
TINY_MODEL="add"
TINY_MODEL_DIR="$ROOT/tests/fixtures/models/$TINY_MODEL"
TINY_BUSY_CLIENTS=16
# --tensorflow: TensorFlow in-process as the stand-in for TF Serving in Tables 1-3 (no TF Serving
# binary is obtainable here), installed on demand into its own folder so that its numpy and
# friends never mix with the OpenVINO install in .deps/python.
TF_VERSION="2.21.0"
TF_DIR="$ROOT/.deps/tensorflow"
TF_MARKER="$ROOT/.deps/tensorflow.version"

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [options]

  --quick                 short points: 1 s warm-up + 3 s measured
  --full                  the default: 5 s warm-up + 20 s measured
  --precision P           default | f32 | both (default: both). "default" leaves OpenVINO's
                          choice (bf16 on CPUs with bf16 support); f32 sets
                          INFERENCE_PRECISION_HINT=f32
  --duration S            seconds measured per point (overrides the mode)
  --warmup S              seconds of load before measuring, per point (overrides the mode)
  --only LIST             any of tables,sweep,micro,targets (default: all four)
  --models LIST           models of Tables 1 and 2 (default: all four ResNets);
                          Table 3 and the sweep always use resnet_v1_50
  --clients LIST          concurrency sweep (default: 1,2,4,8,16)
  --hint H                PERFORMANCE_HINT of Tables 1-3 (default: LATENCY)
  --sweep-hint H          PERFORMANCE_HINT of the sweep (default: THROUGHPUT)
  --target-clients N      closed-loop clients of the resnet_v1_50 targets (default: 4, enough
                          to keep OpenVINO's THROUGHPUT streams busy)
  --rounds R              served/raw pairs per target, alternating (default: 3 with --quick,
                          5 otherwise)
  --protocol P            grpc | rest (default: grpc, like the 2018 client); the targets
                          always use grpc
  --model-dir DIR         where the ResNets are (generated there if missing;
                          default: generated/models)
  --out DIR               results folder (default: bench-results/<timestamp>)
  --tensorflow            also run TensorFlow in-process (benches/tf_baseline.py, the stand-in
                          for TF Serving) at every point of Tables 1-3: TF columns and served ÷ TF
                          (TF in f32, or with its oneDNN bf16 mixed precision where OpenVINO
                          chose bf16).
                          Installs tensorflow-cpu into .deps/tensorflow the first time (~320 MB
                          download, ~1.5 GB on disk); if that fails, the run goes on without
  -h, --help              this text

Tables 1-3 use one synchronous client (as the 2018 comparison did); the sweep is the concurrent
case. Each point starts the server, measures it, stops it, then runs the raw baseline with the
same model, shape and properties, so the two never share the CPUs.

The targets part checks: resnet_v1_50 served ÷ raw img/s >= 0.97 at batch 1 and >= 0.99 at
batch 16 (THROUGHPUT hint, --target-clients clients), and served p50 - raw p50 < 100 us on the
tiny model tests/fixtures/models/add at 1 client (its served req/s at 16 clients is reported
too). Each is measured as --rounds served-then-raw pairs, the targets taking turns, and judged
on the median pair, because one pair on a shared VM can be off by a third.
EOF
}

die() { echo "bench.sh: error: $*" >&2; exit 1; }

mode=full precision=both duration="" warmup="" only="tables,sweep,micro,targets"
models="$ALL_MODELS" clients="1,2,4,8,16" hint=LATENCY sweep_hint=THROUGHPUT protocol=grpc
target_clients=4 rounds=""
model_dir="$ROOT/generated/models" out="" tensorflow=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --precision) precision="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --warmup) warmup="${2:?}"; shift ;;
        --only) only="${2:?}"; shift ;;
        --models) models="${2:?}"; shift ;;
        --clients) clients="${2:?}"; shift ;;
        --hint) hint="${2:?}"; shift ;;
        --sweep-hint) sweep_hint="${2:?}"; shift ;;
        --target-clients) target_clients="${2:?}"; shift ;;
        --rounds) rounds="${2:?}"; shift ;;
        --protocol) protocol="${2:?}"; shift ;;
        --model-dir) model_dir="${2:?}"; shift ;;
        --out) out="${2:?}"; shift ;;
        --tensorflow) tensorflow=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

case "$precision" in
    both) precisions=(default f32) ;;
    default | f32) precisions=("$precision") ;;
    *) die "--precision must be default, f32 or both" ;;
esac
if [[ $mode == quick ]]; then
    : "${duration:=3}" "${warmup:=1}" "${rounds:=3}"
    criterion_args=(--warm-up-time 1 --measurement-time 2)
else
    : "${duration:=20}" "${warmup:=5}" "${rounds:=5}"
    criterion_args=()
fi
[[ $protocol == grpc || $protocol == rest ]] || die "--protocol must be grpc or rest"
has() { [[ ",$only," == *",$1,"* ]]; }
for part in ${only//,/ }; do
    [[ $part =~ ^(tables|sweep|micro|targets)$ ]] || die "--only: unknown part $part"
done
IFS=, read -r -a table_models <<<"$models"
IFS=, read -r -a sweep_clients <<<"$clients"
for m in "${table_models[@]}"; do
    [[ ",$ALL_MODELS," == *",$m,"* ]] || die "--models: unknown model $m (choose from $ALL_MODELS)"
done
for c in "${sweep_clients[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "--clients: $c is not a positive integer"
done
[[ $target_clients =~ ^[1-9][0-9]*$ ]] || die "--target-clients: $target_clients is not a positive integer"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: $rounds is not a positive integer"

cd "$ROOT"
scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

# install_tensorflow: tensorflow-cpu $TF_VERSION into $TF_DIR unless it is there already. On
# failure it says why and returns 1; the run then goes on without the TF columns.
install_tensorflow() {
    if [[ -d $TF_DIR/tensorflow && -f $TF_MARKER && "$(cat "$TF_MARKER")" == "$TF_VERSION" ]]; then
        return 0
    fi
    local free_kb
    free_kb=$(df -Pk "$ROOT/.deps" | awk 'NR == 2 { print $4 }')
    if [[ $free_kb =~ ^[0-9]+$ ]] && ((free_kb < 2500000)); then
        echo "bench.sh: --tensorflow: only $((free_kb / 1024)) MB free under $ROOT/.deps; tensorflow-cpu needs ~2.5 GB to install"
        return 1
    fi
    echo "bench.sh: --tensorflow: installing tensorflow-cpu==$TF_VERSION into $TF_DIR (~320 MB download, ~1.5 GB on disk)"
    rm -f "$TF_MARKER"
    rm -rf "$TF_DIR"
    local pip_log="$ROOT/.deps/tensorflow-pip.log"
    # Without PYTHONPATH: pip must neither see nor reuse what .deps/python holds.
    if ! env -u PYTHONPATH PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
        --no-warn-script-location --target "$TF_DIR" "tensorflow-cpu==$TF_VERSION" >"$pip_log" 2>&1; then
        echo "bench.sh: --tensorflow: pip install tensorflow-cpu==$TF_VERSION failed (log: $pip_log):"
        tail -n 5 "$pip_log" | sed 's/^/    /'
        rm -rf "$TF_DIR"
        return 1
    fi
    if ! env PYTHONPATH="$TF_DIR" TF_CPP_MIN_LOG_LEVEL=3 python3 -c 'import tensorflow' >>"$pip_log" 2>&1; then
        echo "bench.sh: --tensorflow: tensorflow-cpu installed but does not import (log: $pip_log):"
        tail -n 5 "$pip_log" | sed 's/^/    /'
        return 1
    fi
    echo "$TF_VERSION" >"$TF_MARKER"
    rm -f "$pip_log"
}
if [[ $tensorflow == 1 ]]; then
    if ! has tables; then
        echo "bench.sh: --tensorflow adds to Tables 1-3 only, and --only has no tables: ignored"
        tensorflow=0
    elif ! install_tensorflow; then
        echo "bench.sh: --tensorflow: going on without the TensorFlow columns"
        tensorflow=0
    fi
fi

# The points of Tables 1-3 (model:batch, each measured once) and the models they need.
points=()
add_point() { [[ " ${points[*]} " == *" $1 "* ]] || points+=("$1"); }
if has tables; then
    for m in "${table_models[@]}"; do add_point "$m:1"; done
    for m in "${table_models[@]}"; do add_point "$m:16"; done
    for b in 1 8 16 32; do add_point "$TABLE3_MODEL:$b"; done
fi
# The targets' points, model:batch:clients, one round's worth, in the order they take turns.
target_points=()
if has targets; then
    target_points=("$TABLE3_MODEL:1:$target_clients:$TARGET_HINT" "$TABLE3_MODEL:16:$target_clients:$TARGET_HINT"
        "$TINY_MODEL:1:1:$TINY_HINT")
    [[ -f "$TINY_MODEL_DIR/1/model.xml" ]] || die "the targets' tiny model is missing: $TINY_MODEL_DIR"
fi
needed=()
for p in "${points[@]}"; do needed+=("${p%%:*}"); done
has sweep && needed+=("$TABLE3_MODEL")
has targets && needed+=("$TABLE3_MODEL")

# Build once, then run private copies: other builds in this checkout cannot swap the binaries
# under a running benchmark.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "bench.sh: building the server and the benchmarks (release)"
bench_targets=(--bench loadgen)
has micro && bench_targets+=(--bench hot_path)
cargo bench "${bench_targets[@]}" --no-run --message-format=json-render-diagnostics >"$work/build.jsonl"
python3 - "$work/build.jsonl" "$work" <<'EOF'
import json, shutil, sys
wanted = {("bin", "vinoserve"), ("bench", "loadgen"), ("bench", "hot_path")}
for line in open(sys.argv[1]):
    msg = json.loads(line)
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe:
        kind, name = msg["target"]["kind"][0], msg["target"]["name"]
        if (kind, name) in wanted:
            shutil.copy2(exe, f"{sys.argv[2]}/{name}")
EOF
[[ -x "$work/loadgen" && -x "$work/vinoserve" ]] || die "the build did not produce loadgen and vinoserve"

for m in $(printf '%s\n' "${needed[@]}" | sort -u); do
    if [[ -n $m && ! -f "$model_dir/$m/1/model.xml" ]]; then
        echo "bench.sh: generating $m in $model_dir"
        python3 scripts/make_resnet.py --models "$m" --out "$model_dir"
    fi
done

if [[ -z $out ]]; then
    out="$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    ln -sfn "$(basename "$out")" "$ROOT/bench-results/latest"
else
    mkdir -p "$out"
fi
out="$(cd "$out" && pwd)"
log="$out/bench.log"
: >"$out/points.jsonl"
tf_start_args=()
[[ $tensorflow == 0 ]] || tf_start_args=(--tensorflow "$TF_VERSION")
python3 benches/report.py start "$out" --mode "$mode" --precisions "$(IFS=,; echo "${precisions[*]}")" \
    --hint "$hint" --sweep-hint "$sweep_hint" --clients "$clients" --models "$models" \
    --protocol "$protocol" --model-dir "$model_dir" --suites "$only" \
    --duration "$duration" --warmup "$warmup" --target-clients "$target_clients" --rounds "$rounds" \
    "${tf_start_args[@]}"

sweep_points=0
has sweep && sweep_points=${#sweep_clients[@]}
# Targets: each point once per round, plus the tiny model at 16 clients once.
targets_total=0
has targets && targets_total=$(( ${#target_points[@]} * rounds + 1 ))
total=$(( ${#precisions[@]} * (${#points[@]} + sweep_points + targets_total) ))
# Per point: warm-up + window, twice (served, raw), plus ~5 s of server start, compiles and stop
# (measured: ~4 s per point on a 2-CPU VM). The batch of every point but the sweep's (all batch 1)
# sets its window's length (see point_duration); the targets' points count once per round.
batches=$(
    for p in "${points[@]}"; do echo "${p##*:}"; done
    if has targets; then
        for ((r = 0; r < rounds; r++)); do
            for p in "${target_points[@]}"; do b=${p#*:}; echo "${b%%:*}"; done
        done
        echo 1
    fi
)
batches=$(paste -sd, - <<<"$batches")
# --tensorflow: one more window per point of Tables 1-3, plus ~8 s of TF import, model build and
# first call (measured: 4.5-7.5 s on a 2-CPU VM, resnet_v1_50 to resnet_v2_152).
tf_batches="" order="served then raw"
if [[ $tensorflow == 1 ]]; then
    tf_batches=$(for p in "${points[@]}"; do echo "${p##*:}"; done | paste -sd, -)
    order="served then raw, then TensorFlow in Tables 1-3"
fi
estimate=$(python3 -c "
batches = [$batches]
tf_batches = [$tf_batches]
windows = $sweep_points + sum(max(1, b / 8) for b in batches)
per_precision = windows * 2 * $duration + ($sweep_points + len(batches)) * (2 * $warmup + 5)
per_precision += sum(max(1, b / 8) for b in tf_batches) * $duration + len(tf_batches) * ($warmup + 8)
print(round(${#precisions[@]} * per_precision / 60))")
echo "bench.sh: $total points ($mode: ${warmup}s warm-up + ${duration}s each, $order), about $estimate min; results in $out"

# Batch B > 8 is measured B/8 times longer, so that a window holds about as many requests as
# at batch 8 (a batch-32 request takes over a second here).
point_duration() { python3 -c "print($duration * max(1, $1 / 8))"; }

# model_flags MODEL BATCH: loadgen's model flags, one a line. The ResNets are reshaped to the
# batch (NHWC images); the tiny model runs at the shape it declares, [1,10].
model_flags() {
    if [[ $1 == "$TINY_MODEL" ]]; then
        printf '%s\n' --model-dir "$TINY_MODEL_DIR"
    else
        printf '%s\n' --model-dir "$model_dir/$1" --shape "$2,224,224,3"
    fi
}

# run_tensorflow PRECISION MODEL BATCH SERVED_JSON RAW_JSON (--tensorflow, Tables 1-3): the TF
# Serving stand-in, benches/tf_baseline.py, at the point's model, batch, precision and window, after
# served and raw so that it shares the CPUs with neither. TF sees only $TF_DIR on PYTHONPATH.
# Where OpenVINO's default precision is bf16 (the raw run's INFERENCE_PRECISION_HINT), TF runs with
# grappler's oneDNN bf16 auto-mixed-precision (opt-in in TF) so that both use the CPU's bf16; in
# the f32 tables, and where OpenVINO chose f32, TF runs f32.
# Sets tf_field to ',"tensorflow":<record>' or, when it failed, ',"tensorflow_error":"..."'.
run_tensorflow() {
    local prec=$1 model=$2 batch=$3 served=$4 raw=$5 stdout rc=0 record tf_args=()
    if [[ $prec == default ]] && python3 -c '
import json, sys
sys.exit(json.loads(sys.argv[1]).get("properties", {}).get("INFERENCE_PRECISION_HINT") != "bf16")' "$raw"; then
        tf_args=(--onednn-bf16)
    fi
    echo "=== tensorflow $prec $model batch $batch ${tf_args[*]}" >>"$log"
    stdout=$(env PYTHONPATH="$TF_DIR" python3 "$ROOT/benches/tf_baseline.py" --model "$model" --batch "$batch" \
        --precision "$prec" "${tf_args[@]}" --warmup "$warmup" --duration "$(point_duration "$batch")" \
        2>>"$log") || rc=$?
    printf '%s\n' "$stdout" >>"$log"
    record=$(grep '^{' <<<"$stdout" | tail -n 1 || true)
    if [[ $rc -eq 0 && -n $record ]]; then
        tf_field=",\"tensorflow\":$record"
        python3 - "$ROOT/benches" "$served" "$raw" "$record" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
from report import img_per_s  # the tables' img/s, so the console line agrees with them
served, raw, tf = (json.loads(a) for a in sys.argv[2:])
s, r, t = img_per_s(served), img_per_s(raw), img_per_s(tf)
ratios = f"served ÷ TF {s / t:.2f}×, raw ÷ TF {r / t:.2f}×" if s and r and t else "no ratio (no requests)"
print(f"    tensorflow {tf.get('tensorflow_version', '?')}: {t or 0:.1f} img/s; {ratios}")
EOF
    else
        tf_field=$(printf ',"tensorflow_error":"tf_baseline.py failed (exit %d); see bench.log"' "$rc")
        echo "    tensorflow: FAILED (exit $rc), see $log"
    fi
}

done_points=0
# run_point SUITE PRECISION HINT MODEL BATCH CLIENTS [ROUND]: one served + raw measurement,
# appended to points.jsonl (a failed point is recorded with its error and the run goes on). ROUND
# numbers the repeated pairs of the targets part.
run_point() {
    local suite=$1 prec=$2 perf_hint=$3 model=$4 batch=$5 n=$6 round=${7:-}
    local plugin=(--plugin "PERFORMANCE_HINT=$perf_hint") model_args=()
    [[ $prec == default ]] || plugin+=(--plugin "INFERENCE_PRECISION_HINT=$prec")
    mapfile -t model_args < <(model_flags "$model" "$batch")
    local context
    context=$(printf '"suite":"%s","precision":"%s","hint":"%s","model":"%s","batch":%d,"clients":%d' \
        "$suite" "$prec" "$perf_hint" "$model" "$batch" "$n")
    [[ -z $round ]] || context+=$(printf ',"round":%d' "$round")
    done_points=$((done_points + 1))
    printf 'bench.sh: [%d/%d] %s%s, %s precision, %s batch %d, %d client(s): ' \
        "$done_points" "$total" "$suite" "${round:+ round $round}" "$prec" "$model" "$batch" "$n"
    echo "=== $suite${round:+ round $round} $prec $perf_hint $model batch $batch clients $n" >>"$log"
    # The targets are defined on gRPC TFS Predict, whatever --protocol the tables use.
    local proto=$protocol
    [[ $suite != targets ]] || proto=grpc
    local stdout rc=0
    stdout=$("$work/loadgen" --spawn-server --server-bin "$work/vinoserve" \
        "${model_args[@]}" "${plugin[@]}" \
        --clients "$n" --warmup "$warmup" --duration "$(point_duration "$batch")" \
        --protocol "$proto" --compare-raw --json 2>>"$log") || rc=$?
    printf '%s\n' "$stdout" >>"$log"
    local records=()
    mapfile -t records < <(grep '^{' <<<"$stdout" || true)
    if [[ $rc -eq 0 && ${#records[@]} -eq 2 ]]; then
        grep '^served ÷ raw' <<<"$stdout" || echo "done"
        tf_field=""
        [[ $tensorflow == 0 || $suite != tables ]] || run_tensorflow "$prec" "$model" "$batch" "${records[@]}"
        printf '{%s,"served":%s,"raw":%s%s}\n' "$context" "${records[0]}" "${records[1]}" "$tf_field" \
            >>"$out/points.jsonl"
    else
        printf '{%s,"error":"loadgen failed (exit %d); see bench.log"}\n' "$context" "$rc" >>"$out/points.jsonl"
        echo "FAILED (exit $rc), see $log"
    fi
}

# run_targets PRECISION: the targets' points, round after round. One served/raw pair on a shared
# 2-CPU VM can be off by a third when a neighbour wakes up, so each target is measured as several
# pairs and judged on their median; the targets take turns within a round so that a slow spell of
# the machine falls on one round of each target rather than on every round of one.
run_targets() {
    local prec=$1 r p model batch n perf_hint
    for ((r = 1; r <= rounds; r++)); do
        for p in "${target_points[@]}"; do
            IFS=: read -r model batch n perf_hint <<<"$p"
            run_point targets "$prec" "$perf_hint" "$model" "$batch" "$n" "$r"
        done
    done
    # No threshold on it, so one pair: what the server sustains on the tiny model when busy.
    run_point targets "$prec" "$TINY_HINT" "$TINY_MODEL" 1 "$TINY_BUSY_CLIENTS" 1
}

for prec in "${precisions[@]}"; do
    for p in "${points[@]}"; do
        run_point tables "$prec" "$hint" "${p%%:*}" "${p##*:}" 1
    done
    if has sweep; then
        for n in "${sweep_clients[@]}"; do
            run_point sweep "$prec" "$sweep_hint" "$TABLE3_MODEL" 1 "$n"
        done
    fi
    if has targets; then
        run_targets "$prec"
    fi
done

if has micro; then
    echo "bench.sh: criterion micro-benchmarks (benches/hot_path.rs)"
    CRITERION_HOME="$out/criterion" "$work/hot_path" --bench "${criterion_args[@]}" 2>&1 \
        | tee -a "$log" | grep -E '^[a-z_]+/|time:' || die "hot_path failed; see $log"
fi

python3 benches/report.py render "$out" --elapsed "$SECONDS" >/dev/null
echo
cat "$out/results.md"
echo "bench.sh: done in $((SECONDS / 60)) min $((SECONDS % 60)) s; results in $out"
