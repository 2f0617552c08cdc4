"""Privilege drop as root (in a child process: a drop cannot be undone), and preparing the
state for the server user without touching anything else."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tlspolicy.errors import ConfigError
from tlspolicy.server.privileges import (
    Database,
    drop_privileges,
    prepare_state,
    resolve_identity,
    state_problems,
)

CHILD_TIMEOUT_S = 20.0
NOBODY = pwd.getpwnam("nobody")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run_child(script: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone may traverse (pytest's tmp_path parents are 0700)."""
    with tempfile.TemporaryDirectory(prefix="tlspolicy-priv-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def readable(path: str) -> bool:
    try:
        with open(path) as f:
            f.read()
    except PermissionError:
        return False
    return True


@needs_root
def test_drop_privileges_to_nobody_is_permanent(open_dir: Path) -> None:
    secret, public = open_dir / "root-only", open_dir / "public"
    secret.write_text("secret")
    secret.chmod(0o600)
    public.write_text("public")
    public.chmod(0o644)
    assert readable(str(secret))
    out = run_child(f"""
        import json, os
        from tlspolicy.server.privileges import drop_privileges
        note = drop_privileges("nobody", None)
        def readable(path):
            try:
                open(path).read()
            except PermissionError:
                return False
            return True
        secret, public = readable({str(secret)!r}), readable({str(public)!r})
        try:
            os.setuid(0)
            regained = True
        except PermissionError:
            regained = False
        again = drop_privileges("nobody", None)
        print(json.dumps({{
            "note": note, "again": again, "secret": secret, "public": public,
            "regained": regained,
            "uids": os.getresuid(), "gids": os.getresgid(), "groups": os.getgroups(),
        }}))
    """)
    assert out["uids"] == [NOBODY.pw_uid] * 3
    assert out["gids"] == [NOBODY.pw_gid] * 3
    assert out["groups"] == [NOBODY.pw_gid]
    assert out["secret"] is False
    assert out["public"] is True  # the directory is reachable: the file mode is what stops it
    assert out["regained"] is False
    assert str(out["note"]).startswith("dropped privileges to nobody:")
    assert str(out["again"]).startswith("not running as root: server.user ignored")


@needs_root
def test_drop_privileges_with_explicit_group() -> None:
    out = run_child("""
        import json, os
        from tlspolicy.server.privileges import drop_privileges
        drop_privileges("nobody", "daemon")
        print(json.dumps({"gids": os.getresgid(), "groups": os.getgroups()}))
    """)
    daemon = grp.getgrnam("daemon").gr_gid
    assert out == {"gids": [daemon] * 3, "groups": [daemon]}


@pytest.mark.parametrize(
    ("user", "group", "message"),
    [
        pytest.param(
            "no-such-user-xyz",
            None,
            "server.user: no such user 'no-such-user-xyz'",
            id="unknown-user",
        ),
        pytest.param(
            "nobody",
            "no-such-group-xyz",
            "server.group: no such group 'no-such-group-xyz'",
            id="unknown-group",
        ),
        pytest.param(
            "4000000000", None, "server.user: no such user '4000000000'", id="unknown-uid"
        ),
        pytest.param(None, "nogroup", "server.group: needs server.user", id="group-only"),
    ],
)
def test_drop_privileges_rejects_bad_names_before_changing_anything(
    user: str | None, group: str | None, message: str
) -> None:
    before = (os.getresuid(), os.getresgid(), os.getgroups())
    with pytest.raises(ConfigError) as info:
        drop_privileges(user, group)
    assert str(info.value).startswith(message)
    assert (os.getresuid(), os.getresgid(), os.getgroups()) == before


def test_drop_privileges_without_user_is_a_no_op() -> None:
    before = os.getresuid()
    assert drop_privileges(None, None) is None
    assert os.getresuid() == before


@needs_root
def test_drop_privileges_to_root_keeps_root() -> None:
    assert drop_privileges("root", None) == "server.user is root: privileges not dropped"
    assert os.geteuid() == 0


@pytest.mark.parametrize(
    ("user", "group", "expected"),
    [
        pytest.param("nobody", None, (NOBODY.pw_uid, NOBODY.pw_gid), id="primary-group"),
        pytest.param(str(NOBODY.pw_uid), None, (NOBODY.pw_uid, NOBODY.pw_gid), id="numeric-uid"),
        pytest.param("nobody", "0", (NOBODY.pw_uid, 0), id="numeric-gid"),
    ],
)
def test_resolve_identity_names_and_ids(
    user: str, group: str | None, expected: tuple[int, int]
) -> None:
    identity = resolve_identity(user, group)
    assert (identity.uid, identity.gid) == expected
    assert identity.user == "nobody"


@needs_root
def test_prepare_state_gives_only_the_server_files_in_a_shared_directory(tmp_path: Path) -> None:
    """The operator's shared directory and its other files keep their owner: nothing is
    walked, only the database and its -wal/-shm change hands, and a link is refused."""
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    os.chmod(shared, 0o777)
    other = shared / "other-app.conf"
    other.write_text("not ours")
    (shared / "sub" / "data").write_text("not ours either")
    cache = shared / "cache.sqlite3"
    Path(f"{cache}-wal").write_text("")
    nobody = resolve_identity("nobody", None)
    prepare_state([Database("cache.path", cache)], nobody, group_mode=False)
    for path in (cache, Path(f"{cache}-wal")):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), path
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    for path in (shared, other, shared / "sub", shared / "sub" / "data"):
        assert path.stat().st_uid == 0, path
    target = tmp_path / "outside"
    target.write_text("")
    linked = shared / "linked.sqlite3"
    linked.symlink_to(target)
    with pytest.raises(ConfigError, match=r"tlsrpt.store.path: .*symbolic link"):
        prepare_state([Database("tlsrpt.store.path", linked)], nobody, group_mode=False)
    assert target.stat().st_uid == 0


@needs_root
def test_prepare_state_creates_a_missing_directory_for_the_user(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "deep" / "cache.sqlite3"
    nobody = resolve_identity("nobody", "nogroup")
    prepare_state([Database("cache.path", cache)], nobody, group_mode=True)
    for path in (cache.parent, cache.parent.parent):
        st = path.stat()
        assert (st.st_uid, oct(st.st_mode & 0o777)) == (NOBODY.pw_uid, "0o750"), path
    assert oct(cache.stat().st_mode & 0o777) == "0o640"
    assert tmp_path.stat().st_uid == 0


@needs_root
def test_prepare_state_refuses_a_directory_the_user_cannot_write(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    nobody = resolve_identity("nobody", None)
    items = [Database("cache.path", spool / "cache.sqlite3")]
    (problem,) = state_problems(items, nobody)
    assert problem.startswith(
        f"cache.path: permission denied: nobody cannot create files in {spool}"
    )
    assert "owner root:root, mode 0755" in problem
    assert f"install -d -o nobody -g nogroup -m 0750 {spool}" in problem
    with pytest.raises(ConfigError, match="permission denied"):
        prepare_state(items, nobody, group_mode=False)
    assert list(spool.iterdir()) == []


def test_state_problems_as_the_current_user(tmp_path: Path) -> None:
    items = [Database("cache.path", tmp_path / "new" / "cache.sqlite3")]
    assert state_problems(items, None) == []
    prepare_state(items, None, group_mode=False)
    assert oct(items[0].path.stat().st_mode & 0o777) == "0o600"
