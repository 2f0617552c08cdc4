"""The Debian package, built by ``scripts/build-deb`` and installed into a Debian 13 root, cached.

* ``build_deb`` runs ``scripts/build-deb`` (which caches its build keyed by a hash of the
  packaged sources: a second run without changes takes a fraction of a second) and returns
  the .deb and lintian's report.
* ``ensure_installed_root`` copies the cached Postfix 3.10 root (``tests.lab.trixie``) and runs
  ``apt-get install ./postfix-tlspolicy_*.deb`` in it (dependencies and recommends from
  Debian's archive, on the mirror the host's apt uses): the network is the host's, the mounts
  (``proc``, ``/dev``, the host's ``resolv.conf`` for the mirror's name) live in a private
  mount namespace. ``policy-rc.d`` keeps maintainer scripts from starting daemons. The result
  is cached next to the Postfix root keyed by both the root and the .deb's hash, built under
  an flock and renamed into place when complete; it holds ``root/`` and ``before.txt``, the
  file list of the root before the installation (for the purge test).
* ``run_in_overlay`` runs a shell script in a private mount namespace with an overlay over an
  installed root at ``$merged`` (``proc`` and ``/dev`` mounted): the cached root never changes,
  and every mount disappears with the namespace, also when the script fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.lab.trixie import CACHE_DIR, _locked, ensure_root, root_key

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "postfix-tlspolicy"
BUILD_TIMEOUT_S = 2400.0  # first run: mmdebstrap of the build root, then the build
INSTALL_TIMEOUT_S = 900.0
SCRIPT_TIMEOUT_S = 300.0
INFO_FILE = "installed.json"
KEEP_ROOTS = 3  # installed roots kept in the cache: another session may use an older one
FILE_LIST = "find . -xdev | LC_ALL=C sort"  # run in a root's top directory


def build_deb() -> tuple[Path, str]:
    """``scripts/build-deb``: the .deb in dist/ and lintian's report."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-deb")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-deb failed ({done.returncode}):\n{done.stderr}")
    deb = Path(done.stdout.strip().splitlines()[-1])
    lintian = deb.with_suffix(".lintian").read_text()
    return deb, lintian


INSTALL_SCRIPT = """\
set -eu
r={root}
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --bind -o ro /etc/resolv.conf "$r/etc/resolv.conf"
cp {deb} "$r/tmp/{name}"
printf '#!/bin/sh\\nexit 101\\n' >"$r/usr/sbin/policy-rc.d"
chmod 0755 "$r/usr/sbin/policy-rc.d"
in_root() {{
    chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \\
        DEBIAN_FRONTEND=noninteractive "$@"
}}
in_root apt-get -q -o Acquire::Retries=3 update
in_root apt-get -q -y -o Acquire::Retries=3 install "./tmp/{name}"
in_root apt-get clean
rm -f "$r/usr/sbin/policy-rc.d" "$r/tmp/{name}"
rm -rf "$r/var/lib/apt/lists/"*
"""


def ensure_installed_root(deb: Path) -> Path:
    """A copy of the Postfix 3.10 root with ``deb`` installed by apt; its directory (cached).

    The directory holds ``root/`` (the filesystem), ``before.txt`` and ``install.log``.
    """
    base = ensure_root()
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:12]
    final = CACHE_DIR / f"trixie-pkg-{root_key()}-{digest}"
    if (final / INFO_FILE).exists():
        return final
    with _locked(CACHE_DIR / f"{final.name}.lock"):
        if (final / INFO_FILE).exists():
            return final
        for stale in CACHE_DIR.glob(f".{final.name}.build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = CACHE_DIR / f".{final.name}.build-{os.getpid()}"
        staging.mkdir()
        try:
            root = staging / "root"
            subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
            before = subprocess.run(
                ["sh", "-c", FILE_LIST], cwd=root, capture_output=True, text=True, check=True
            ).stdout
            (staging / "before.txt").write_text(before)
            q = shlex.quote
            script = INSTALL_SCRIPT.format(root=q(str(root)), deb=q(str(deb)), name=deb.name)
            done = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
            (staging / "install.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install ./{deb.name} failed:\n{done.stderr[-4000:]}")
            info = {"deb": deb.name, "sha256": digest, "base": base.name}
            (staging / INFO_FILE).write_text(json.dumps(info) + "\n")
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _prune(final)
    return final


def _prune(keep: Path) -> None:
    """Remove all but the KEEP_ROOTS newest installed roots (each is about 250 MB)."""
    roots = sorted(
        (p for p in CACHE_DIR.glob("trixie-pkg-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in roots[KEEP_ROOTS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
        Path(f"{old}.lock").unlink(missing_ok=True)


OVERLAY_SCRIPT = """\
set -eu
merged={merged}
mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} "$merged"
mount -t proc proc "$merged/proc"
mount --rbind /dev "$merged/dev"
in_root() {{
    chroot "$merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \\
        DEBIAN_FRONTEND=noninteractive "$@"
}}
"""


def run_in_overlay(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` (sh, ``set -e``; ``$merged`` and ``in_root CMD...``) over a throwaway overlay."""
    with tempfile.TemporaryDirectory(prefix="debroot-", dir=CACHE_DIR) as tmp:
        dirs = {name: Path(tmp) / name for name in ("upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir()
        prologue = OVERLAY_SCRIPT.format(
            lower=shlex.quote(str(root)), **{k: shlex.quote(str(v)) for k, v in dirs.items()}
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             prologue + script],
            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False,
        )  # fmt: skip
