#!/usr/bin/env bash
# Installs vinoserve as a systemd service (run as root, from a clone of the repository):
#
#   /usr/local/bin/vinoserve                      the release binary (built if cargo is here)
#   /usr/local/lib/vinoserve/openvino/            the OpenVINO runtime (pip wheel, --target)
#   /etc/systemd/system/vinoserve.service         the unit (replaced on every install)
#   /etc/vinoserve/config.json, topology.toml     examples, only where none exist yet
#   /var/lib/vinoserve/models/                    the model repository
#   user and group `vinoserve`                    the service runs as it
#
# Usage:
#   sudo scripts/install.sh               install, or upgrade in place
#   sudo scripts/install.sh --uninstall   remove the above except config, models and drop-ins
#
# Environment:
#   DESTDIR=/some/root   install under that root instead of / (packaging, tests); no user is
#                        created and systemd is not touched
#   VINOSERVE_BIN=path   install this binary instead of building target/release/vinoserve
set -euo pipefail
# Installed files must be readable by the service user whatever the caller's umask is.
umask 022

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
DESTDIR="${DESTDIR:-}"
DESTDIR="${DESTDIR%/}"

BIN="/usr/local/bin/vinoserve"
LIBROOT="/usr/local/lib/vinoserve"
RUNTIME="$LIBROOT/openvino"
UNIT="/etc/systemd/system/vinoserve.service"
ETC="/etc/vinoserve"
STATE="/var/lib/vinoserve"
USER_NAME="vinoserve"
# Present when this script created the user, so --uninstall removes only a user it made.
USER_MARKER="$LIBROOT/created-user"

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

# systemctl only on the real root, and only where systemd is running (not in a container).
systemd_here() { [[ -z "$DESTDIR" && -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# The OpenVINO version scripts/setup.sh pins, so the service runs what the tests ran.
ov_version() {
    local v
    v="$(sed -n 's/^OV_VERSION="\(.*\)"$/\1/p' "$SCRIPT_DIR/setup.sh")"
    [[ -n "$v" ]] || die "cannot read OV_VERSION from scripts/setup.sh"
    echo "$v"
}

install_binary() {
    local bin="${VINOSERVE_BIN:-}"
    if [[ -z "$bin" ]]; then
        bin="$ROOT/target/release/vinoserve"
        if command -v cargo >/dev/null 2>&1; then
            say "building the release binary (cargo build --release)"
            (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
        elif [[ -x "$bin" ]]; then
            say "cargo not found; installing the existing $bin"
        else
            die "no $bin and no cargo: build it first (cargo build --release), then run this again"
        fi
    fi
    [[ -x "$bin" ]] || die "$bin is not an executable file"
    install -D -m 0755 "$bin" "$DESTDIR$BIN"
    say "installed $DESTDIR$BIN"
}

# Same approach as scripts/setup.sh: the openvino wheel from PyPI, unpacked with pip --target
# (no Python needed at run time: the wheel carries the C library the binary loads). --no-deps:
# numpy and the telemetry package are only for Python users.
install_runtime() {
    local version target marker libdir
    version="$(ov_version)"
    target="$DESTDIR$RUNTIME"
    marker="$target/.version"
    libdir="$target/openvino/libs"
    if [[ -f "$marker" && "$(cat "$marker")" == "$version" && -d "$libdir" ]]; then
        say "OpenVINO $version already installed in $target"
    else
        command -v python3 >/dev/null 2>&1 || die "python3 not found (needed once, to install the OpenVINO wheel)"
        python3 -m pip --version >/dev/null 2>&1 || die "pip is not available for python3 (apt-get install python3-pip)"
        rm -rf "$target"
        mkdir -p "$target"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
            --no-warn-script-location --no-deps --target "$target" "openvino==$version" \
            || die "pip install openvino==$version into $target failed"
        [[ -d "$libdir" ]] || die "pip install succeeded but $libdir is missing"
        echo "$version" > "$marker"
        say "installed OpenVINO $version into $target"
    fi
    # The unit points VINOSERVE_OPENVINO_LIB at this folder; the loader looks for the
    # unversioned libopenvino_c.so there, which the wheel does not ship.
    local real
    shopt -s nullglob
    local candidates=("$libdir"/libopenvino_c.so.[0-9]*)
    shopt -u nullglob
    [[ ${#candidates[@]} -ge 1 ]] || die "no libopenvino_c.so.<version> in $libdir"
    real="$(printf '%s\n' "${candidates[@]##*/}" | awk '{ print length, $0 }' | sort -n | head -n1 | cut -d' ' -f2-)"
    ln -sfn "$real" "$libdir/libopenvino_c.so"
}

# Copies an example unless the operator already has that file.
install_example() {
    local from="$1" to="$DESTDIR$2"
    if [[ -e "$to" ]]; then
        say "kept existing $to"
        return 1
    fi
    install -D -m 0644 "$from" "$to"
    say "installed example $to"
}

create_user() {
    if [[ -n "$DESTDIR" ]]; then
        say "DESTDIR set: not creating user $USER_NAME"
        return
    fi
    if getent passwd "$USER_NAME" >/dev/null; then
        say "user $USER_NAME exists"
        return
    fi
    useradd --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --comment "vinoserve model server" "$USER_NAME" \
        || die "useradd $USER_NAME failed"
    touch "$USER_MARKER"
    say "created system user $USER_NAME"
}

do_install() {
    [[ -n "$DESTDIR" || "$(id -u)" == 0 ]] || die "run as root (sudo scripts/install.sh), or set DESTDIR"
    install_binary
    install_runtime
    install -D -m 0644 "$ROOT/config/vinoserve.service" "$DESTDIR$UNIT"
    say "installed $DESTDIR$UNIT"
    install -d -m 0755 "$DESTDIR$ETC" "$DESTDIR$STATE" "$DESTDIR$STATE/models"
    # The example config serves /var/lib/vinoserve/models/resnet: create that folder with it,
    # so the service starts (and `vinoserve check` says a version folder is still missing).
    if install_example "$ROOT/config/config.example.json" "$ETC/config.json"; then
        install -d -m 0755 "$DESTDIR$STATE/models/resnet"
    fi
    install_example "$ROOT/config/topology.example.toml" "$ETC/topology.toml" || true
    create_user
    if systemd_here; then
        systemctl daemon-reload
    elif [[ -z "$DESTDIR" ]]; then
        say "systemd is not running here: skipped systemctl daemon-reload"
    fi
    cat <<EOF
install.sh: done. Next:
  put models in $STATE/models/<name>/<version>/ and list them in $ETC/config.json
  sudo -u $USER_NAME $BIN check --config $ETC/config.json --topology $ETC/topology.toml
  systemctl enable --now vinoserve
EOF
}

do_uninstall() {
    [[ -n "$DESTDIR" || "$(id -u)" == 0 ]] || die "run as root (sudo scripts/install.sh --uninstall), or set DESTDIR"
    if systemd_here; then
        systemctl disable --now vinoserve.service 2>/dev/null || true
    fi
    local created_user=no
    [[ -f "$DESTDIR$USER_MARKER" ]] && created_user=yes
    rm -f "$DESTDIR$BIN" "$DESTDIR$UNIT"
    rm -rf "$DESTDIR$LIBROOT"
    say "removed $DESTDIR$BIN, $DESTDIR$LIBROOT and $DESTDIR$UNIT"
    if systemd_here; then
        systemctl daemon-reload
    fi
    if [[ -z "$DESTDIR" && "$created_user" == yes ]] && getent passwd "$USER_NAME" >/dev/null; then
        userdel "$USER_NAME" && say "removed user $USER_NAME"
    fi
    say "kept $DESTDIR$ETC (config), $DESTDIR$STATE (models) and any $DESTDIR$UNIT.d drop-ins"
}

case "${1:-}" in
    "") do_install ;;
    --uninstall) do_uninstall ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown argument $1 (expected nothing or --uninstall)" ;;
esac
