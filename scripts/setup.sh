#!/usr/bin/env bash
# Installs the native build libraries (hwloc, libudev) with apt-get if missing, and the
# OpenVINO runtime (Python wheel, which also ships the C API library used by the Rust
# `openvino` crate) into $ROOT/.deps/python.
# Idempotent: a no-op when the packages and the pinned version are already installed.
set -euo pipefail

OV_VERSION="2026.4.1"

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
DEPS="$ROOT/.deps"
PYDIR="$DEPS/python"
MARKER="$DEPS/openvino.version"
LIBDIR="$PYDIR/openvino/libs"

die() { echo "setup.sh: error: $*" >&2; exit 1; }

# Whether apt knows an installable version of package $1. grep reads all of apt-cache's output:
# with `grep -q` apt-cache could die of SIGPIPE, and pipefail would turn that into "no".
apt_has() { apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; }

command -v python3 >/dev/null 2>&1 || die "python3 not found in PATH"

# Native libraries the Rust build links against: hwloc for NUMA topology (the hwlocality
# crate), libudev (hwloc's link asks for -ludev) and pkg-config to find them.
if ! dpkg -s libhwloc-dev libudev-dev pkg-config >/dev/null 2>&1; then
    echo "setup.sh: installing libhwloc-dev libudev-dev pkg-config (needed to build hwlocality)"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libhwloc-dev libudev-dev pkg-config; } \
        || die "could not install libhwloc-dev libudev-dev pkg-config (run as root, or install them yourself)"
fi

# systemd-analyze (Debian package systemd) lets the tests verify config/vinoserve.service.
# Optional: without it that one check is skipped, with a message.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if apt_has systemd || { apt-get update -qq >/dev/null 2>&1 && apt_has systemd; }; then
        echo "setup.sh: installing systemd (for systemd-analyze verify in the tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null \
            || echo "setup.sh: could not install systemd; the unit file check will be skipped"
    else
        echo "setup.sh: no systemd package available; the unit file check will be skipped"
    fi
fi

# nginx lets tests/nginx_failover.rs check failover behind deploy/nginx/vinoserve.conf.template.
# Optional: without it that test is skipped, with a message. The tests start their own nginx on
# free ports; where the package starts a system nginx, it is left as apt set it up.
if ! command -v nginx >/dev/null 2>&1; then
    if apt_has nginx || { apt-get update -qq >/dev/null 2>&1 && apt_has nginx; }; then
        echo "setup.sh: installing nginx (for the load-balancer failover test)"
        # Quiet (debconf chatters on stderr), except when it fails.
        if ! out="$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx 2>&1)"; then
            echo "$out" >&2
            echo "setup.sh: could not install nginx; the failover test will be skipped"
        fi
    else
        echo "setup.sh: no nginx package available; the failover test will be skipped"
    fi
fi

if [[ -d "$PYDIR/openvino" && -f "$MARKER" && "$(cat "$MARKER")" == "$OV_VERSION" ]]; then
    action="openvino $OV_VERSION already installed in $PYDIR"
else
    python3 -m pip --version >/dev/null 2>&1 \
        || die "pip is not available for python3 (try: apt-get install python3-pip)"
    mkdir -p "$DEPS"
    rm -f "$MARKER"
    # Start from a clean target so stale files of another version cannot linger.
    rm -rf "$PYDIR"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
        --target "$PYDIR" "openvino==$OV_VERSION" \
        || die "pip install openvino==$OV_VERSION into $PYDIR failed"
    [[ -d "$LIBDIR" ]] || die "pip install succeeded but $LIBDIR is missing"
    echo "$OV_VERSION" > "$MARKER"
    action="installed openvino $OV_VERSION into $PYDIR"
fi

# The Rust crate's runtime linking looks for the unversioned libopenvino_c.so.
shopt -s nullglob
candidates=("$LIBDIR"/libopenvino_c.so.[0-9]*)
shopt -u nullglob
[[ ${#candidates[@]} -ge 1 ]] || die "no libopenvino_c.so.<version> found in $LIBDIR"
# Prefer the shortest name (e.g. libopenvino_c.so.2641 over .2641.1), deterministically.
real="$(printf '%s\n' "${candidates[@]##*/}" | awk '{ print length, $0 }' | sort -n | head -n1 | cut -d' ' -f2-)"
link="$LIBDIR/libopenvino_c.so"
if [[ ! -L "$link" || "$(readlink "$link")" != "$real" ]]; then
    ln -sfn "$real" "$link" || die "cannot create symlink $link -> $real"
    action="$action; linked libopenvino_c.so -> $real"
fi

echo "setup.sh: $action"
