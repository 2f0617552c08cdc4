"""The container image from ``scripts/build-image`` (an OCI archive) answers Postfix's queries.

podman cannot run containers in this sandbox: ``podman run`` fails with "crun: setrlimit
RLIMIT_NOFILE: Operation not permitted" (no CAP_SYS_RESOURCE here; building, importing and
saving images work). So this test runs the image's entrypoint the way a runtime would, by
hand: it unpacks the archive's layers into a directory, reads the image configuration
(user, entrypoint, command, environment), and runs them in a private network and mount
namespace chrooted into that root filesystem as the image's user. Postfix's ``postmap -q``
on the host reaches it through a forwarder, and the image's health check passes.

The bundled Unbound needs the Internet's root servers, which a test here must not reach; the
entrypoint runs with ``TLSPOLICY_UNBOUND=no`` (as the compose example's tlspolicy service
does) and the namespace's 127.0.0.1:5353, where the image's configuration expects Unbound, is a
forwarder to the lab's validating Unbound. The lab's resolver self-check names replace the
defaults (isc.org cannot be resolved here); everything else is the image's configuration.
The image is cached keyed by the .deb and the image recipe (about 45 s to build).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.debroot import REPO, build_deb
from tests.lab.netns import Forwarder, LabNamespace
from tests.lab.netutil import LOOPBACK, Daemon, wait_until
from tests.lab.scenario import Lab
from tests.lab.trixie import CACHE_DIR, ensure_root

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

IMAGE_RECIPE = ("scripts/build-image", "contrib/container")
IMAGE_BUILD_TIMEOUT_S = 900.0
START_TIMEOUT_S = 30.0
CONFIG = "/etc/tlspolicy/tlspolicy.yml"


@dataclass(frozen=True)
class Image:
    rootfs: Path
    config: dict[str, Any]  # the OCI image configuration's "config" object


def _recipe_hash(deb: Path) -> str:
    digest = hashlib.sha256(deb.read_bytes())
    for name in IMAGE_RECIPE:
        path = REPO / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _archive(deb: Path) -> Path:
    """``scripts/build-image DEB``, cached under CACHE_DIR/images keyed by _recipe_hash."""
    cached = CACHE_DIR / "images" / f"tlspolicy-{_recipe_hash(deb)}.oci.tar"
    if cached.exists():
        return cached
    done = subprocess.run(
        [str(REPO / "scripts" / "build-image"), str(deb)],
        capture_output=True,
        text=True,
        timeout=IMAGE_BUILD_TIMEOUT_S,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    built = REPO / done.stdout.strip().splitlines()[-1]
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, cached.with_suffix(".tmp"))
    cached.with_suffix(".tmp").rename(cached)
    return cached


def _unpack(archive: Path, target: Path) -> dict[str, Any]:
    """Apply the image's layers in order into ``target``; return its configuration."""
    with tarfile.open(archive) as oci:

        def blob(digest: str) -> bytes:
            member = oci.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert member is not None
            return member.read()

        index = json.loads(blob_of(oci, "index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            member = oci.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}")
            assert member is not None
            with tarfile.open(fileobj=member, mode="r|*") as tar:
                tar.extractall(target, filter="fully_trusted")  # our own image, as root
    result: dict[str, Any] = config["config"]
    return result


def blob_of(oci: tarfile.TarFile, name: str) -> bytes:
    member = oci.extractfile(name)
    assert member is not None
    return member.read()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    deb, _ = build_deb()
    rootfs = tmp_path_factory.mktemp("image") / "rootfs"
    rootfs.mkdir()
    return Image(rootfs, _unpack(_archive(deb), rootfs))


def test_image_runs_as_a_non_root_user_with_uvloop_and_unbound(image: Image) -> None:
    assert image.config["User"] == "_tlspolicy:_tlspolicy"
    assert image.config["Entrypoint"] == ["/usr/local/bin/tlspolicy-entrypoint"]
    assert set(image.config["ExposedPorts"]) == {"8642/tcp", "8643/tcp"}
    for path in ("usr/bin/tlspolicy", "usr/sbin/unbound", "usr/share/dns/root.key"):
        assert (image.rootfs / path).exists(), path
    assert list((image.rootfs / "usr/lib/python3/dist-packages").glob("uvloop"))


@dataclass
class Running:
    ns: LabNamespace
    server: Daemon
    host_port: int  # the host side of the namespace's 127.0.0.1:8642


def _userspec(rootfs: Path, user: str) -> str:
    name = user.split(":", maxsplit=1)[0]
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return f"{fields[2]}:{fields[3]}"
    raise AssertionError(f"no user {name} in the image")


@pytest.fixture(scope="module")
def running(image: Image, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("image-run")
    root = image.rootfs
    config_file = root / CONFIG.lstrip("/")
    config = yaml.safe_load(config_file.read_text())
    config["dns"] |= {"selfcheck_secure_name": "dane-only.lab", "selfcheck_bogus_name": "bogus.lab"}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    q = shlex.quote
    setup = f"mount -t proc proc {q(str(root))}/proc\nmount --rbind /dev {q(str(root))}/dev"
    ns = LabNamespace(workdir, setup, ip=("chroot", str(ensure_root()), "ip"))
    env = [*image.config.get("Env", []), "TLSPOLICY_UNBOUND=no"]
    argv = [
        "chroot", f"--userspec={_userspec(root, image.config['User'])}", "--groups=", str(root),
        "/usr/bin/env", "-i", *env,
        *image.config["Entrypoint"], *image.config.get("Cmd", []),
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        stack.callback(ns.stop)
        ns.start()
        stack.callback(Forwarder(ns, ("127.0.0.1", 5353), lab.resolver, udp=True).start().stop)
        server = Daemon("tlspolicy-image", ns.command(argv), workdir / "server.log")
        stack.callback(server.stop)
        server.start()
        inward = Forwarder(ns, (LOOPBACK, 0), ("127.0.0.1", 8642), inward=True)
        stack.callback(inward.start().stop)
        yield Running(ns, server, inward.address[1])


def test_image_answers_postmap_from_the_host(running: Running, tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("")
    query = [
        "postmap", "-c", str(tmp_path), "-q", "dane-only.lab",
        f"socketmap:inet:127.0.0.1:{running.host_port}:QUERY",
    ]  # fmt: skip

    def answered() -> bool:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode == 0 and done.stdout.strip() == "dane-only":
            return True
        time.sleep(0.2)  # not yet listening, or the resolver self-check still running
        return False

    wait_until(answered, timeout=START_TIMEOUT_S, what="postmap -q", alive=running.server)


def test_image_healthcheck_passes(running: Running, image: Image) -> None:
    user = _userspec(image.rootfs, image.config["User"])
    check = ["chroot", f"--userspec={user}", "--groups=", str(image.rootfs),
             "/usr/local/bin/tlspolicy-healthcheck"]  # fmt: skip

    def healthy() -> bool:
        if running.ns.run(check, check=False).returncode == 0:
            return True
        time.sleep(0.2)
        return False

    wait_until(
        healthy, timeout=START_TIMEOUT_S, what="the image's health check", alive=running.server
    )
