#!/usr/bin/env bash
# What building and running the server needs: the native build libraries (libhwloc-dev,
# libudev-dev, pkg-config: Debian packages, installed with apt-get when missing, which needs
# root) and the OpenVINO runtime (the `openvino` wheel from PyPI, which also ships the C API
# library the Rust `openvino` crate loads) in $ROOT/.deps/python.
# What only the tests need is installed by scripts/test-deps.sh.
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

command -v python3 >/dev/null 2>&1 || die "python3 not found in PATH"

# Native libraries the Rust build links against: hwloc for NUMA topology (the hwlocality
# crate), libudev (hwloc's link asks for -ludev) and pkg-config to find them. Installing them
# needs root; without it, say exactly what to ask for.
BUILD_PACKAGES=(libhwloc-dev libudev-dev pkg-config)
if ! dpkg -s "${BUILD_PACKAGES[@]}" >/dev/null 2>&1; then
    if [[ "$(id -u)" != 0 ]]; then
        die "missing build libraries; as root run: apt-get install ${BUILD_PACKAGES[*]} (or build hwloc 2.x yourself and put its .pc file on PKG_CONFIG_PATH)"
    fi
    echo "setup.sh: installing ${BUILD_PACKAGES[*]} with apt-get (needed to build hwlocality)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${BUILD_PACKAGES[@]}" >/dev/null; } \
        || die "could not install ${BUILD_PACKAGES[*]} (apt-get install ${BUILD_PACKAGES[*]})"
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
