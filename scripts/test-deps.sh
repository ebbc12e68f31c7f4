#!/usr/bin/env bash
# Installs what only the test suite needs (scripts/test.sh runs this; the server does not need
# any of it), with apt-get, which needs root:
#   nginx    tests/nginx_failover.rs checks failover behind deploy/nginx/vinoserve.conf.template
#   systemd  for systemd-analyze, with which tests/service.rs verifies config/vinoserve.service
# Both are optional: a test whose tool is missing says SKIPPED and passes. Not root, or no
# package: say so and go on.
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
