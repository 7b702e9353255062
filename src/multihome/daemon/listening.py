"""The daemon's unix socket: created root-only from the start, a stale one replaced,
only our own removed, and no connection held open by a client that sends slowly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat

from aiohttp import web

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


class ReadDeadlines:
    """Connections must deliver a request in time: a client that sends its head or
    body slowly, or connects and sends nothing, is cut off after ``timeout`` seconds.

    aiohttp bounds the time *between* requests (keep-alive) but not the time
    a request takes to arrive, so 500 slow clients could hold 500 connections
    open.  The timer runs from the connection (or the end of the previous
    answer) until the handler starts; the handler bounds the body read itself
    (`multihome.daemon.wire`).  While a request is being served it is off: an
    ADD may take minutes.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = 0
        self._timers: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    def arm(self, transport: asyncio.BaseTransport) -> None:
        self.disarm(transport)
        if transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        self._timers[transport] = loop.call_later(self.timeout, self._expire, transport)

    def disarm(self, transport: asyncio.BaseTransport | None) -> None:
        timer = self._timers.pop(transport, None) if transport is not None else None
        if timer is not None:
            timer.cancel()

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._timers.pop(transport, None)
        self.expired += 1
        log.info("closed a connection that sent no complete request in %g s", self.timeout)
        if isinstance(transport, asyncio.Transport | asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol, with the connection's read deadline armed and dropped."""

    def __init__(self, inner: asyncio.Protocol, deadlines: ReadDeadlines) -> None:
        self.inner = inner
        self.deadlines = deadlines
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)
        self.deadlines.arm(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadlines.disarm(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSockSite(web.SockSite):
    """`web.SockSite` whose connections get `ReadDeadlines`."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, deadlines: ReadDeadlines):
        super().__init__(runner, sock)
        self.deadlines = deadlines

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        deadlines = self.deadlines
        self._server = await loop.create_unix_server(
            lambda: _Guarded(server(), deadlines), sock=self._sock, backlog=self._backlog
        )
