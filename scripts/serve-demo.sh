#!/usr/bin/env bash
# Starts vinoserve on a demo model repository (generated on first use):
# resnet_v1_50 (random weights, NHWC [1,224,224,3] fp32 -> [1,1000]) and the tiny `add` model.
# Usage: scripts/serve-demo.sh [extra vinoserve flags, e.g. --port 0 --rest_port 0]
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
DEMO="$ROOT/demo"
if [[ ! -f "$DEMO/models/resnet_v1_50/1/model.xml" ]]; then
    echo "serve-demo.sh: generating the demo ResNet-50 (random weights, about 100 MB) in $DEMO/models"
    python3 scripts/make_resnet.py --models resnet_v1_50 --out "$DEMO/models" --no-verify
fi
if [[ ! -f "$DEMO/models/add/1/model.xml" ]]; then
    mkdir -p "$DEMO/models"
    cp -r tests/fixtures/models/add "$DEMO/models/add"
fi
cat > "$DEMO/config.json" <<'JSON'
{"model_config_list": [
  {"config": {"name": "resnet_v1_50", "base_path": "models/resnet_v1_50",
              "plugin_config": {"PERFORMANCE_HINT": "LATENCY"}}},
  {"config": {"name": "add", "base_path": "models/add",
              "model_version_policy": {"all": {}}}}
]}
JSON
echo "serve-demo.sh: building the release binary (the first build compiles ~350 crates; cargo shows its progress)"
cargo build --release
exec "$ROOT/target/release/vinoserve" --config_path "$DEMO/config.json" "$@"
