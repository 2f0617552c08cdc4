"""Dropping root after the listeners are bound (``server.user``, ``server.group``).

Started as root, the server binds its sockets and prepares its state directory, then calls
``drop_privileges`` before handling any query. The drop is complete and checked: the
supplementary groups are replaced, then the real, effective and saved group and user ids are
set (``setresgid``/``setresuid``), and regaining root must fail afterwards. A seteuid-only
drop, as in postfix-mta-sts-resolver (peers.md §3.3.5), can be undone by any code execution
bug, so it is not an option here.

Names are resolved before anything changes, so an unknown name fails with a ``ConfigError``
and the process is left as it was.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from tlspolicy.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """A resolved account: names for messages, ids for the system calls."""

    user: str
    uid: int
    group: str
    gid: int


def resolve_identity(user: str, group: str | None) -> Identity:
    """Look up ``user`` (name or numeric id) and ``group`` (default: the user's primary group).

    Raises:
        ConfigError: ``server.user: no such user ...`` or ``server.group: no such group ...``.
    """
    try:
        account = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"server.user: no such user {user!r}") from None
    gid = account.pw_gid if group is None else resolve_group(group)
    try:
        group_name = grp.getgrgid(gid).gr_name
    except KeyError:
        group_name = str(gid)  # a primary gid without a group entry is legal
    return Identity(user=account.pw_name, uid=account.pw_uid, group=group_name, gid=gid)


def resolve_group(group: str) -> int:
    """The gid of ``group`` (name or numeric id).

    Raises:
        ConfigError: ``server.group: no such group ...``.
    """
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"server.group: no such group {group!r}") from None


def drop_privileges(user: str | None, group: str | None) -> str | None:
    """Become ``user``:``group`` for good, when running as root.

    Args:
        user: ``server.user``; None means "do not change identity".
        group: ``server.group``; None means the user's primary group.

    Returns:
        None when nothing was asked; otherwise a one-line note of what happened (also
        logged at info), e.g. ``"dropped privileges to nobody:nogroup (uid 65534, gid 65534)"``
        or, when not root, ``"not running as root: server.user ignored ..."``.

    Raises:
        ConfigError: an unknown user or group, a group without a user, or a drop that did
            not stick (the process must not go on serving in that state).
    """
    if user is None:
        if group is not None:
            raise ConfigError(
                "server.group: needs server.user (dropping only the group keeps root)"
            )
        return None
    target = resolve_identity(user, group)
    if os.geteuid() != 0:
        note = (
            f"not running as root: server.user ignored, running as uid {os.geteuid()}"
            f" gid {os.getegid()}"
        )
    elif target.uid == 0:
        note = "server.user is root: privileges not dropped"
    else:
        _switch(target)
        note = (
            f"dropped privileges to {target.user}:{target.group}"
            f" (uid {target.uid}, gid {target.gid})"
        )
    log.info("%s", note)
    return note


def _switch(target: Identity) -> None:
    os.setgroups([target.gid])
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)
    if os.getresuid() != (target.uid,) * 3 or os.getresgid() != (target.gid,) * 3:
        raise ConfigError(f"server.user: could not switch to {target.user}:{target.group}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise ConfigError(f"server.user: dropped to {target.user} but could regain root; refusing")


def chown_path(path: str | os.PathLike[str], user: str | None, group: str | None) -> None:
    """Give ``path`` (and, for a directory, everything below it) to ``user``:``group``.

    For the state directory and the sqlite cache file before ``drop_privileges``. Symbolic
    links are changed themselves, never followed, so a link planted in the directory cannot
    redirect the chown to another file. A no-op when both names are None.

    Raises:
        ConfigError: an unknown user or group, or a chown that failed.
    """
    if user is None and group is None:
        return
    if user is not None:
        identity = resolve_identity(user, group)
        uid, gid = identity.uid, identity.gid
    else:
        uid, gid = -1, resolve_group(group or "")
    root = Path(path)
    targets = [root]
    if root.is_dir() and not root.is_symlink():
        for parent, dirs, files in os.walk(root, followlinks=False):
            targets.extend(Path(parent) / name for name in (*dirs, *files))
    for target in targets:
        try:
            os.chown(target, uid, gid, follow_symlinks=False)
        except OSError as exc:
            raise ConfigError(f"cannot give {target} to {user}:{group}: {exc.strerror}") from None


def prepare_state(directory: Path, user: str | None, group: str | None) -> None:
    """As root with ``server.user`` set: create ``directory`` (0750) and give it to that
    user, so the stores in it open after the drop."""
    if user is None or os.geteuid() != 0:
        return
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    chown_path(directory, user, group)
