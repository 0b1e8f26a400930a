#!/usr/bin/env bash
# Install what pycompose needs on a fresh Debian 12 machine: Debian packages, a venv, the Python deps.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# registry tests: docker-registry + apache2-utils (htpasswd); archive interop tests: podman + runc
# (crun refuses this host's hybrid cgroups); getcap for the capability test; busybox-static for the test
# container root filesystem; tini for `init: true`; hyperfine and zstd for bench/; iptables (published
# ports, NAT), iproute2 (tests inspect links) dnsutils (dig) and iputils-ping
# for the network tests; mmdebstrap for `image bootstrap` (Debian base images made offline); curl for scripts/main.sh.
for pkg in python3-venv hyperfine docker-registry apache2-utils podman runc libcap2-bin zstd busybox-static tini iptables iproute2 dnsutils iputils-ping mmdebstrap curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    # compat mode: a plain .pth path entry instead of an import hook, which costs CLI start-up ~10 ms
    if ! { .venv/bin/python -m pip install -q --upgrade pip &&
           .venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat; } \
           >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    touch "$stamp"
fi
# Byte-compile our modules so start-up never pays for compiling them (some shells set
# PYTHONDONTWRITEBYTECODE); cheap when nothing changed.
.venv/bin/python -m compileall -q compose engine >/dev/null
