# Shared by scripts/serve and scripts/test: Debian packages and the virtualenv.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TLSPOLICY_VENV:-$ROOT/.venv}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# install_debian_packages PKG...: install what is missing, without starting the
# packages' system services (a policy-rc.d that says 101 while apt runs) and without
# upgrading anything already installed.
install_debian_packages() {
    local missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}" >&2
    local added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        --no-upgrade "${missing[@]}" >/dev/null
    if [ -n "$added_policy" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
}

# ensure_uv: uv (the installer that reads uv.lock) in its own small virtualenv, installed by
# pip from scripts/uv-requirements.txt with --require-hashes, so uv is pinned like the rest.
UV_TOOLS="${TLSPOLICY_UV_TOOLS:-$ROOT/.venv-uv}"
UV="$UV_TOOLS/bin/uv"
ensure_uv() {
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "tlspolicy needs Python >= 3.11" >&2
        exit 2
    fi
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        install_debian_packages python3-venv python3-pip
    fi
    local wanted
    wanted="$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' "$ROOT/scripts/uv-requirements.txt")"
    if [ -x "$UV" ] && [ "$("$UV" --version | cut -d' ' -f2)" = "$wanted" ]; then
        return 0
    fi
    rm -rf "$UV_TOOLS"
    python3 -m venv "$UV_TOOLS"
    "$UV_TOOLS/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
        --require-hashes -r "$ROOT/scripts/uv-requirements.txt"
}

# make_venv [--dev] [EXTRA...]: the project virtualenv ($VENV) holding exactly what uv.lock
# names for the package (editable) with EXTRAS and, with --dev, the test and tool chain
# (the dev dependency group). --locked: a uv.lock that no longer matches pyproject.toml is
# an error, never a silent re-resolution (scripts/lock refreshes it on purpose).
make_venv() {
    ensure_uv
    local args=() dev=--no-dev
    for arg in "$@"; do
        case "$arg" in
            --dev) dev="" ;;
            *) args+=(--extra "$arg") ;;
        esac
    done
    if [ -n "$dev" ]; then args+=("$dev"); fi
    (cd "$ROOT" && UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON_DOWNLOADS=never \
        "$UV" sync --locked --quiet --python "$(command -v python3)" ${args[@]+"${args[@]}"})
}
