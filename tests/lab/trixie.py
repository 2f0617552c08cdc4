"""A Debian 13 ("trixie") root filesystem with Postfix 3.10 + libtlsrpt, built once and cached.

Debian 12 only has Postfix 3.7; the TLSRPT tests need 3.10 (built against ``libtlsrpt0``).
``mmdebstrap`` makes the root from Debian's packages with the ordinary client, from the mirror
this host's apt already uses (``TLSPOLICY_LAB_MIRROR`` overrides it). Rules kept here:

* The root is cached outside the repository under ``CACHE_DIR``, keyed by ``STAMP`` and the
  package list; it is never modified after the build (instances use an overlay over it).
* Concurrent runs are safe: the build holds an ``flock`` and goes into a temporary directory
  that is renamed into place only when complete; a build left behind by a killed run is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

CACHE_DIR = Path(os.environ.get("TLSPOLICY_LAB_CACHE", "/var/cache/tlspolicy-lab"))
SUITE = "trixie"
PACKAGES = ("postfix", "libtlsrpt0", "ca-certificates", "openssl", "iproute2", "procps")
STAMP = "1"  # bump to force a rebuild when the recipe below changes
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT_S = 900.0  # a slow mirror; normally about 45 s
LOCK_WAIT_S = 1200.0  # another run may be building the same root
INFO_FILE = "tlspolicy-lab.json"  # inside the root: what was built, and Postfix's version
APT_SOURCE_DIRS = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def root_key() -> str:
    """The cache key: changes whenever the recipe does."""
    recipe = json.dumps([STAMP, SUITE, "apt", sorted(PACKAGES)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def root_path() -> Path:
    return CACHE_DIR / f"{SUITE}-root-{root_key()}"


def _source_files() -> list[Path]:
    files: list[Path] = []
    for entry in APT_SOURCE_DIRS:
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir():
            files.extend(sorted(p for p in entry.iterdir() if p.suffix in (".list", ".sources")))
    return files


def _debian_uris(text: str, *, deb822: bool) -> list[str]:
    """URIs of main-archive entries (a plain suite name, no ``-security``/``-updates``)."""
    found: list[str] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (m.group(1).lower(), m.group(2).strip())
                for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.MULTILINE)
            )
            if (
                fields.get("enabled", "yes").lower() == "no"
                or "deb" not in fields.get("types", "").split()
            ):
                continue
            if any("-" not in suite for suite in fields.get("suites", "").split()):
                found += fields.get("uris", "").split()
        return found
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and "-" not in words[2]:
            found.append(words[1])
    return found


def host_mirror() -> str:
    """The Debian mirror of this host's apt sources (first main-archive URI)."""
    override = os.environ.get("TLSPOLICY_LAB_MIRROR")
    if override:
        return override
    for path in _source_files():
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in _debian_uris(text, deb822=path.suffix == ".sources"):
            if uri.startswith(("http://", "https://")) and "security" not in uri:
                return uri
    return DEFAULT_MIRROR


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} held for over {LOCK_WAIT_S} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_stale_builds(final: Path) -> None:
    """Builds left by killed runs (we hold the lock, so none is in progress)."""
    for stale in final.parent.glob(f".{final.name}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(final: Path, mirror: str) -> None:
    staging = final.parent / f".{final.name}.build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        "mmdebstrap",
        "--variant=apt",
        "--mode=root",
        "--quiet",
        '--aptopt=Acquire::Retries "3"',
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(staging),
        mirror,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"mmdebstrap failed ({done.returncode}):\n{done.stderr[-4000:]}")
    version = subprocess.run(
        ["chroot", str(staging), "postconf", "-h", "mail_version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for name in ("resolv.conf", "hosts"):  # bind-mount targets must exist as files
        target = staging / "etc" / name
        if target.is_symlink() or not target.exists():
            target.unlink(missing_ok=True)
            target.write_text("")
    info = {"stamp": STAMP, "suite": SUITE, "mirror": mirror, "postfix": version}
    (staging / INFO_FILE).write_text(json.dumps(info) + "\n")
    staging.rename(final)


def ensure_root() -> Path:
    """The cached root, built first if it is missing (takes the build lock)."""
    final = root_path()
    if (final / INFO_FILE).exists():
        return final
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (Debian package mmdebstrap; scripts/test)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE_DIR / f"{final.name}.lock"):
        if not (final / INFO_FILE).exists():
            _remove_stale_builds(final)
            _build(final, host_mirror())
    return final


def root_info(root: Path) -> dict[str, str]:
    """What ``_build`` recorded: suite, mirror, Postfix's ``mail_version``."""
    data = json.loads((root / INFO_FILE).read_text())
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}
