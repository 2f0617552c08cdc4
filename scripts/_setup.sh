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

# make_venv EXTRAS: a virtualenv with the package installed (editable) with EXTRAS.
make_venv() {
    local extras="$1"
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "tlspolicy needs Python >= 3.11" >&2
        exit 2
    fi
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        install_debian_packages python3-venv python3-pip
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]"
}
