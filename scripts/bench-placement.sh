#!/usr/bin/env bash
# Served ÷ raw when the serving layer has cores of its own, as the topology file's
# reserved_cores give it on the production hosts: resnet_v1_50 placed (`--topology`) on the last
# CPU, the server's own threads and the load generator on the others, vs raw OpenVINO confined to
# that same last CPU. See docs/benchmarks.md.
#
#   scripts/bench-placement.sh [--batch B] [--clients N] [--nireq R] [--duration S] [--rounds K]
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
batch=1 clients=3 nireq=2 duration=20 rounds=2
while [[ $# -gt 0 ]]; do
    case "$1" in
        --batch) batch="${2:?}"; shift ;;
        --clients) clients="${2:?}"; shift ;;
        --nireq) nireq="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --rounds) rounds="${2:?}"; shift ;;
        -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "bench-placement.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$ROOT"
scripts/setup.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
cores=$(lscpu -p=CORE | grep -v '^#' | sort -u | wc -l)
if ((cores < 2)); then
    echo "bench-placement.sh: needs at least 2 cores (one for the model, the rest for serving)" >&2
    exit 1
fi
[[ -f generated/models/resnet_v1_50/1/model.xml ]] || python3 scripts/make_resnet.py --models resnet_v1_50 --out generated/models
cargo build --release --bin vinoserve --quiet
cargo bench --bench loadgen --no-run --quiet 2>/dev/null
loadgen=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)

work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/models"
ln -s "$ROOT/generated/models/resnet_v1_50" "$work/models/resnet"
cat >"$work/config.json" <<JSON
{"model_config_list": [{"config": {"name": "resnet", "base_path": "models/resnet",
  "shape": "($batch,224,224,3)", "nireq": $nireq}}]}
JSON
# The planner reserves the lowest cores for the server; the model takes the last one.
cat >"$work/topology.toml" <<TOML
reserved_cores = { 0 = $((cores - 1)) }
[models.resnet]
node = 0
cores = 1
performance_hint = "THROUGHPUT"
TOML

for ((round = 1; round <= rounds; round++)); do
    target/release/vinoserve --config_path "$work/config.json" --topology "$work/topology.toml" \
        --port 0 --rest_port 0 --grpc_bind_address 127.0.0.1 --rest_bind_address 127.0.0.1 \
        --log_level WARNING >"$work/server.log" 2>&1 &
    server=$!
    until grep -q "models loaded" "$work/server.log" 2>/dev/null; do
        kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 0.5
    done
    addr=$(grep -o "gRPC listening on .*" "$work/server.log" | awk '{print $4}')
    rest=$(grep -o "REST listening on .*" "$work/server.log" | awk '{print $4}')
    # Where the plan put the model and the server, as the running server reports it.
    read -r model_cpus serving_cpus < <(curl -s "http://$rest/v1/placement" | python3 -c '
import json, sys
plan = json.load(sys.stdin)
print(plan["models"][0]["cpus"], ",".join(r["cpus"] for r in plan["reserved"]))')
    ((round > 1)) || echo "bench-placement.sh: resnet_v1_50 batch $batch, $clients clients, model on CPUs $model_cpus, serving and load generator on CPUs $serving_cpus, $rounds rounds of ${duration} s"
    taskset -c "$serving_cpus" "$loadgen" --grpc "$addr" --model resnet --input input \
        --shape "$batch,224,224,3" --clients "$clients" --warmup 5 --duration "$duration" --json \
        | grep '^{' >"$work/served.json"
    kill "$server"; wait "$server" 2>/dev/null || true
    taskset -c "$model_cpus" "$loadgen" --raw generated/models/resnet_v1_50/1/model.xml \
        --shape "$batch,224,224,3" --plugin PERFORMANCE_HINT=THROUGHPUT --clients "$clients" \
        --warmup 5 --duration "$duration" --json 2>/dev/null | grep '^{' >"$work/raw.json"
    python3 - "$round" "$work/served.json" "$work/raw.json" <<'EOF'
import json, sys
served, raw = (json.load(open(p)) for p in sys.argv[2:4])
print(f"round {sys.argv[1]}: served {served['items_per_s']:.1f} img/s (p50 {served['p50_ms']:.1f} ms), "
      f"raw {raw['items_per_s']:.1f} img/s (p50 {raw['p50_ms']:.1f} ms), "
      f"served ÷ raw {served['items_per_s'] / raw['items_per_s']:.3f}×")
EOF
done
