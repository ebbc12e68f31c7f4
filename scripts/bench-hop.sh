#!/usr/bin/env bash
# What `--topology` costs per request: the tiny `add` model (f32 [1,10]) served by two servers
# started side by side, one unplaced and one with the model placed (in a placement worker on
# every CPU, so the only difference is the hop to the worker), loaded in turn by one closed-loop
# gRPC client, round after round (the order alternates). Prints each round's p50/mean latency and
# the placed − unplaced difference; the median over rounds is the hop's cost, the spread says
# how noisy the machine was. --baseline-bin adds a third server, another vinoserve binary placed
# the same way (e.g. one built from an older commit), for a before/after in the same run.
# See docs/placement.md.
#
#   scripts/bench-hop.sh [--rounds K] [--duration S] [--clients N] [--baseline-bin PATH]
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=6 duration=5 clients=1 baseline=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="${2:?}"; shift ;;
        --duration) duration="${2:?}"; shift ;;
        --clients) clients="${2:?}"; shift ;;
        --baseline-bin) baseline="$(realpath "${2:?}")"; shift ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench-hop.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$ROOT"
scripts/setup.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release --bin vinoserve --quiet
cargo bench --bench loadgen --no-run --quiet 2>/dev/null
loadgen=$(find target/release/deps -maxdepth 1 -name 'loadgen-*' ! -name '*.d' -printf '%T@ %p\n' \
    | sort -rn | head -1 | cut -d' ' -f2)

work=$(mktemp -d)
servers=()
trap 'for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cat >"$work/config.json" <<JSON
{"model_config_list": [{"config": {"name": "add", "base_path": "$ROOT/tests/fixtures/models/add"}}]}
JSON
# The model's worker may use every CPU, as the unplaced server does.
cat >"$work/topology.toml" <<TOML
[models.add]
node = 0
cores = $(lscpu -p=CORE | grep -v '^#' | sort -u | wc -l)
TOML

# CPU time (clock ticks) of a server and its placement workers (its children).
cpu_ticks() {
    local pid total=0
    for pid in "$1" $(pgrep -P "$1"); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# start NAME BINARY [FLAG...]: a server on ephemeral ports; its gRPC address in $work/NAME.addr.
start() {
    local name=$1 bin=$2
    shift 2
    "$bin" --config_path "$work/config.json" --port 0 --rest_port 0 \
        --grpc_bind_address 127.0.0.1 --rest_bind_address 127.0.0.1 --log_level WARNING "$@" \
        >"$work/$name.log" 2>&1 &
    servers+=("$!")
    echo "$!" >"$work/$name.pid"
    until grep -qs "models loaded" "$work/$name.log"; do
        kill -0 "$!" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
        sleep 0.2
    done
    grep -o "gRPC listening on .*" "$work/$name.log" | awk '{print $4}' >"$work/$name.addr"
}

names=(unplaced placed)
start unplaced target/release/vinoserve
start placed target/release/vinoserve --topology "$work/topology.toml"
if [[ -n "$baseline" ]]; then
    names+=(baseline)
    start baseline "$baseline" --topology "$work/topology.toml"
fi
echo "bench-hop.sh: add f32[1,10], $clients client(s), $rounds rounds of ${duration} s per server (${names[*]}); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# One unmeasured second each first (lazy allocations, the pool's inline estimate).
for name in "${names[@]}"; do
    "$loadgen" --grpc "$(cat "$work/$name.addr")" --model add --input x --shape 1,10 \
        --warmup 0 --duration 1 >/dev/null
done
for ((round = 1; round <= rounds; round++)); do
    # Alternate the order, so a drift in the machine's load does not favour one side.
    order=("${names[@]}")
    ((round % 2)) || mapfile -t order < <(printf '%s\n' "${names[@]}" | tac)
    for name in "${order[@]}"; do
        pid=$(cat "$work/$name.pid")
        before=$(cpu_ticks "$pid")
        "$loadgen" --grpc "$(cat "$work/$name.addr")" --model add --input x --shape 1,10 \
            --clients "$clients" --warmup 0 --duration "$duration" --json \
            | grep '^{' >"$work/run.json"
        # Server CPU over the whole run (the loadgen's requests counted over the same window).
        echo "$round $name $(($(cpu_ticks "$pid") - before)) $(cat "$work/run.json")" >>"$work/results"
    done
done

python3 - "$work/results" "$(getconf CLK_TCK)" "${names[@]}" <<'EOF'
import json, statistics, sys
rows = {}
tick = 1 / int(sys.argv[2])
for line in open(sys.argv[1]):
    round_, name, ticks, body = line.split(" ", 3)
    run = json.loads(body)
    run["cpu_us"] = int(ticks) * tick * 1e6 / max(run["requests"], 1)
    rows.setdefault(int(round_), {})[name] = run
names = sys.argv[3:]
print("round | " + " | ".join(f"{n} p50 / mean µs, server CPU µs/req" for n in names) + " | " +
      " | ".join(f"{n} − unplaced p50 µs" for n in names[1:]))
diffs = {n: [] for n in names[1:]}
for round_, got in sorted(rows.items()):
    cells = [f"{got[n]['p50_ms'] * 1e3:.1f} / {got[n]['mean_ms'] * 1e3:.1f}, {got[n]['cpu_us']:.0f}"
             for n in names]
    for n in names[1:]:
        if got[n]["errors"] or got["unplaced"]["errors"]:
            sys.exit(f"round {round_}: errors: {got[n]['first_error'] or got['unplaced']['first_error']}")
        diffs[n].append((got[n]["p50_ms"] - got["unplaced"]["p50_ms"]) * 1e3)
    print(f"{round_} | " + " | ".join(cells) + " | " + " | ".join(f"{diffs[n][-1]:+.1f}" for n in names[1:]))
for n in names:
    print(f"{n}: server CPU {statistics.median(r[n]['cpu_us'] for r in rows.values()):.0f} µs per request (median)")
for n in names[1:]:
    d = diffs[n]
    print(f"{n}: hop costs {statistics.median(d):+.1f} µs per request (median of {len(d)} rounds; "
          f"range {min(d):+.1f} … {max(d):+.1f})")
EOF
