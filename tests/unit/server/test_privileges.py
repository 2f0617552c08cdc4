"""Privilege drop as root (in a child process: a drop cannot be undone) and chown_path."""

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
from tlspolicy.server.privileges import chown_path, drop_privileges, resolve_identity

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
def test_chown_path_gives_tree_but_not_symlink_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("not yours")
    state = tmp_path / "state"
    (state / "sub").mkdir(parents=True)
    (state / "cache.sqlite3").write_text("")
    (state / "sub" / "x").write_text("")
    (state / "link").symlink_to(outside)
    chown_path(state, "nobody", None)
    for path in (state, state / "sub", state / "cache.sqlite3", state / "sub" / "x"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), path
    assert (state / "link").lstat().st_uid == NOBODY.pw_uid
    assert outside.stat().st_uid == 0


@needs_root
def test_chown_path_group_only(tmp_path: Path) -> None:
    target = tmp_path / "cache.sqlite3"
    target.write_text("")
    chown_path(target, None, "nogroup")
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (0, NOBODY.pw_gid)


def test_chown_path_unknown_user_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such user"):
        chown_path(tmp_path, "no-such-user-xyz", None)
    with pytest.raises(ConfigError, match=r"cannot give .*missing"):
        chown_path(tmp_path / "missing", "nobody", None)
    chown_path(tmp_path / "missing", None, None)  # nothing asked: nothing checked
