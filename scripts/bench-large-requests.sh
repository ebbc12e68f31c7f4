#!/usr/bin/env bash
# Large requests (#15 item 3): resnet_v1_50 at batch 16 (9.6 MB per request) over TFS gRPC,
# 4 closed-loop clients, served ÷ raw OpenVINO, with the server's minor page faults per request.
# Each round runs every given server binary in turn, each as one `loadgen --compare-raw` pair
# (served, then raw), so two builds (before/after a change) are compared within one run.
#
#   scripts/bench-large-requests.sh [--rounds N] [--duration S] [--warmup S] [--model-dir DIR]
#                                   [--out FILE] [LABEL=SERVER_BINARY[:MODEL_DIR] ...]
#
# Default binary: target/release/vinoserve (label "current"); a MODEL_DIR after the binary
# replaces --model-dir for that entry (its folder name is the model name the clients send). Needs `cargo build --release
# --bins --benches` and the model (`python3 scripts/make_resnet.py --models resnet_v1_50`).
set -euo pipefail
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"

rounds=3 duration=20 warmup=5 model_dir="$root/generated/models/resnet_v1_50" out=""
builds=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --model-dir) model_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *=*) builds+=("$1"); shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ ${#builds[@]} -gt 0 ]] || builds=("current=$root/target/release/vinoserve")
[[ -f $model_dir/1/model.xml ]] || { echo "no model at $model_dir (scripts/make_resnet.py)" >&2; exit 2; }
loadgen=$(find "$root/target/release/deps" -maxdepth 1 -type f -executable -name 'loadgen-*' \
    -printf '%T@ %p\n' | sort -rn | head -1 | cut -d' ' -f2)
[[ -n $loadgen ]] || { echo "no loadgen: cargo build --release --benches" >&2; exit 2; }
out=${out:-$(mktemp /tmp/bench-large-requests.XXXXXX.jsonl)}
: >"$out"

for ((r = 1; r <= rounds; r++)); do
    for build in "${builds[@]}"; do
        label=${build%%=*} bin=${build#*=} dir=$model_dir
        if [[ $bin == *:* ]]; then dir=${bin#*:} bin=${bin%%:*}; fi
        echo "round $r: $label" >&2
        "$loadgen" --spawn-server --server-bin "$bin" --model-dir "$dir" \
            --shape 16,224,224,3 --plugin PERFORMANCE_HINT=THROUGHPUT --clients 4 \
            --warmup "$warmup" --duration "$duration" --compare-raw --json 2>/dev/null |
            grep '^{' | paste -sd' ' | sed "s/^/{\"round\":$r,\"build\":\"$label\",\"pair\":[/; s/} {/},{/; s/\$/]}/" >>"$out"
    done
done

python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| build | round | served img/s | raw img/s | served ÷ raw | per CPU s: served ÷ raw | minor faults / request: served, raw |")
print("|---|---|---|---|---|---|---|")
summary = {}
for row in rows:
    served, raw = row["pair"]
    ratio = served["items_per_s"] / raw["items_per_s"]
    cpu = served["req_per_server_cpu_s"] / raw["req_per_server_cpu_s"]
    faults = served["server_minor_faults_per_request"]
    summary.setdefault(row["build"], []).append((ratio, cpu, faults))
    print(f'| {row["build"]} | {row["round"]} | {served["items_per_s"]:.1f} | {raw["items_per_s"]:.1f} '
          f'| {ratio:.3f} | {cpu:.3f} | {faults:.0f}, {raw["server_minor_faults_per_request"]:.0f} |')
print()
for build, values in summary.items():
    ratios, cpus, faults = zip(*values)
    print(f"{build}: served ÷ raw median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"per CPU s median {statistics.median(cpus):.3f}; minor faults per request median {statistics.median(faults):.0f}")
print(f"records: {sys.argv[1]}")
EOF
