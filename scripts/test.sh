#!/usr/bin/env bash
# Runs the whole test suite: installs what the server needs (scripts/setup.sh) and what only the
# tests need (scripts/test-deps.sh), then every unit and integration test (integration tests
# start the real server on 127.0.0.1:0). Extra arguments go to `cargo test`.
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
scripts/test-deps.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --bins
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --all-targets --no-fail-fast "$@"
