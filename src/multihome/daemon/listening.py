"""The daemon's unix socket: created root-only from the start, a stale one replaced,
only our own removed.  What is served on it, and how long a client may take to
send, is `multihome.daemon.httpserver`'s."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat

log = logging.getLogger(__name__)


class ListenError(Exception):
    """The socket cannot be made; the message names the path and the cause."""


def listen(directory: str, path: str) -> tuple[socket.socket, tuple[int, int]]:
    """A bound unix socket at ``path`` (directory 0700, socket 0600) and its inode."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Created 0600 from the start: no moment in which others could connect.
        umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
    except OSError as err:
        raise ListenError(f"cannot listen on {path}: {err.strerror or err}") from err
    st = os.stat(path)
    return sock, (st.st_dev, st.st_ino)


def remove_socket(path: str, inode: tuple[int, int] | None) -> None:
    # Only our own socket: a new daemon may already listen at the same path.
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == inode:
            os.unlink(path)


def remove_stale_socket(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse when one still listens."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(
            f"{path} exists and is not a socket; remove it or choose another socketDir/socketName"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise ListenError(f"another multihome daemon is listening on {path}")
