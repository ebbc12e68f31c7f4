#!/usr/bin/env bash
# The hostile-clients soak (scripts/abuse.py says what it runs): builds what it needs, then runs.
# Usage: scripts/abuse.sh [--seconds N] [--only TEXT]
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release --bins --benches
exec python3 scripts/abuse.py "$@"
