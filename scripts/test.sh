#!/usr/bin/env bash
# Runs the whole test suite: installs the OpenVINO runtime if needed, then every unit and
# integration test (integration tests start the real server on 127.0.0.1:0).
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --quiet --bins
cargo test --all-targets "$@"
