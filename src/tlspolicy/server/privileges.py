"""Dropping root after the listeners are bound (``server.user``, ``server.group``).

Started as root, the server binds its sockets and prepares its state directory, then calls
``drop_privileges`` before handling any query. The drop is complete and checked: the
supplementary groups are replaced, then the real, effective and saved group and user ids are
set (``setresgid``/``setresuid``), and regaining root must fail afterwards. A seteuid-only
drop, as in postfix-mta-sts-resolver (docs/protocol-notes.md §7.5), can be undone by any
code execution bug, so it is not an option here.

Names are resolved before anything changes, so an unknown name fails with a ``ConfigError``
and the process is left as it was.

Before the drop, ``prepare_state`` makes the server's databases ready for that user and
changes nothing else: an operator may keep the cache in a directory shared with other
software (``/var/spool/postfix``, ``/srv/shared``), whose other files must not change
owner. A directory the user cannot write is refused with the command that fixes it.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from tlspolicy.config import Config
from tlspolicy.errors import ConfigError
from tlspolicy.files import (
    DB_SUFFIXES,
    GROUP_FILE_MODE,
    PRIVATE_FILE_MODE,
    STATE_DIR_MODE,
    create_private,
    give,
    writable_by,
)

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


@dataclass(frozen=True, slots=True)
class Database:
    """An SQLite file the server owns, and the configuration key that names it."""

    key: str
    path: Path


def databases(config: Config, *, cache: bool = True, tlsrpt: bool = True) -> list[Database]:
    """The SQLite files the server owns: the cache and (``tlsrpt``) the TLSRPT store."""
    found = []
    if cache and config.cache.backend == "sqlite":
        found.append(Database("cache.path", Path(config.cache.path)))
    if tlsrpt and config.tlsrpt.store_backend == "sqlite":
        found.append(Database("tlsrpt.store.path", Path(config.tlsrpt.store_path)))
    return found


def state_identity(config: Config) -> Identity | None:
    """Who will own the state: ``server.user`` when running as root, else None (the
    current user, who creates the files itself)."""
    if config.server.user is None or os.geteuid() != 0:
        return None
    return resolve_identity(config.server.user, config.server.group)


def state_problems(items: list[Database], identity: Identity | None) -> list[str]:
    """Why the server (as ``identity``, or the current user) could not create or open its
    databases; each problem names the key, the path, its owner and mode, and the fix.
    Only looks (``check-config`` calls it); ``prepare_state`` acts."""
    problems = []
    for item in items:
        directory = item.path.parent
        existing = directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        creator = identity if existing == directory else None  # root makes missing ones
        if not _may_write(existing, creator):
            problems.append(_denied(item, existing, creator))
            continue
        if identity is not None or not item.path.exists():
            continue
        if not os.access(item.path, os.R_OK | os.W_OK):
            st = item.path.stat()
            problems.append(
                f"{item.key}: permission denied: {item.path} is not readable and writable"
                f" by {_whoami()} (owner {_owner(st)}, mode {stat.S_IMODE(st.st_mode):04o});"
                f" fix: chown {_whoami()} {item.path}"
            )
    return problems


def prepare_state(items: list[Database], identity: Identity | None, group_mode: bool) -> None:
    """Make the databases' directories and files ready for the server user, touching
    nothing else (see ``tlspolicy.files``): a missing directory is created
    (``STATE_DIR_MODE``) and, as root, given to the user; an existing one is never changed
    and must be writable by the user; each database file is created (0600, or 0640 with
    ``group_mode``) and, as root, it and its ``-wal``/``-shm`` are given to the user.

    Raises:
        ConfigError: naming the key, the path, its owner and mode, and the fix.
    """
    problems = state_problems(items, identity)
    if problems:
        raise ConfigError("; ".join(problems))
    mode = GROUP_FILE_MODE if group_mode else PRIVATE_FILE_MODE
    for item in items:
        try:
            for directory in _make_directories(item.path.parent):
                if identity is not None:
                    give(directory, identity.uid, identity.gid)
                    log.info("created %s for %s", directory, identity.user)
            create_private(item.path, mode)
            if identity is not None:
                for suffix in DB_SUFFIXES:
                    give(Path(f"{item.path}{suffix}"), identity.uid, identity.gid)
        except OSError as exc:
            why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise ConfigError(
                f"{item.key}: cannot prepare {exc.filename or item.path}: {why}"
            ) from None


def _make_directories(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    created = []
    for path in reversed(missing):
        path.mkdir(mode=STATE_DIR_MODE)
        os.chmod(path, STATE_DIR_MODE, follow_symlinks=False)  # the umask filtered mkdir's
        created.append(path)
    return created


def _may_write(directory: Path, identity: Identity | None) -> bool:
    if identity is None:
        return os.access(directory, os.W_OK | os.X_OK)
    return writable_by(directory.stat(), identity.uid, identity.gid)


def _denied(item: Database, directory: Path, identity: Identity | None) -> str:
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        return (
            f"{item.key}: cannot create files in {directory}: Read-only file system; fix:"
            f" set {item.key} to a path on a writable file system (the server writes its"
            " database and WAL files)"
        )
    st = directory.stat()
    user = identity.user if identity is not None else _whoami()
    group = identity.group if identity is not None else user
    return (
        f"{item.key}: permission denied: {user} cannot create files in {directory}"
        f" (owner {_owner(st)}, mode {stat.S_IMODE(st.st_mode):04o}); fix:"
        f" install -d -o {user} -g {group} -m 0750 {item.path.parent}, or set {item.key}"
        f" to a path in a directory {user} may write"
    )


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
