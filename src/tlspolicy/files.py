"""Files and sockets the server creates, made with their final mode and owner, safely.

The server starts as root and creates files in directories other users may write (the
Postfix spool for sockets, a shared state directory for the cache). So:

* A unix socket gets its mode from the umask while it is bound (``bind_unix``), never from
  a ``chmod`` afterwards, which would follow a symbolic link planted in its place; its
  owner is changed with ``lchown``, which changes a link itself, never its target.
* A database file is created by us, exclusively and without following links, with mode
  ``PRIVATE_FILE_MODE`` (``GROUP_FILE_MODE`` when the operator names a group), before
  SQLite opens it (``create_private``); SQLite gives its ``-wal`` and ``-shm`` files the
  database's mode.
* Ownership is changed through a descriptor opened with ``O_NOFOLLOW`` (``give``), one file
  at a time: nothing is ever walked, so no file the server does not own changes hands.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE_FILE_MODE = 0o600  # a database only the server user reads
GROUP_FILE_MODE = 0o640  # ... and the server group (an admin CLI in that group)
STATE_DIR_MODE = 0o750
DB_SUFFIXES = ("", "-wal", "-shm")  # an SQLite database and the files beside it


@contextlib.contextmanager
def umask_for(mode: int) -> Iterator[None]:
    """A umask under which a new socket (created 0777) gets exactly ``mode``. The umask is
    the process's: this runs at start-up, before any other thread creates files."""
    old = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(old)


def bind_unix(sock: socket.socket, path: str, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Bind ``sock`` at ``path`` with ``mode``, then give it to ``uid``:``gid`` (-1: keep)."""
    with umask_for(mode):
        sock.bind(path)
    if uid != -1 or gid != -1:
        os.lchown(path, uid, gid)


def remove_stale_socket(path: str) -> None:
    """Remove a socket left by an earlier run; anything else at ``path`` is left alone (and
    makes the bind fail with a clear error)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def create_private(path: Path, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Create ``path`` empty with ``mode`` if it does not exist (never through a link).

    Returns:
        True when it was created now.

    Raises:
        OSError: as ``os.open`` (``ELOOP`` for a symbolic link at ``path``).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)  # the umask filtered the mode given to open
    finally:
        os.close(fd)
    return True


def give(path: Path, uid: int, gid: int) -> bool:
    """Make ``uid``:``gid`` own ``path`` through an ``O_NOFOLLOW`` descriptor.

    Returns:
        False when there is no such file.

    Raises:
        OSError: ``ELOOP`` when ``path`` is a symbolic link, or the chown failed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid if gid != -1 else st.st_gid):
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    return True


def writable_by(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether a user with ``uid`` and the one group ``gid`` (what ``drop_privileges``
    leaves) may create files in a directory with stat ``st``."""
    if uid == 0:
        return True
    need = stat.S_IWUSR | stat.S_IXUSR
    if st.st_uid == uid:
        return st.st_mode & need == need
    need = stat.S_IWGRP | stat.S_IXGRP
    if st.st_gid == gid:
        return st.st_mode & need == need
    need = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & need == need
