"""A TCP proxy for tests: it counts connections, cuts them on demand and can terminate TLS.

Put in front of a server (the API double), it shows what a client does with
its connections, which the server's request log cannot: how many it opens
(keep-alive reuse), whether it closes them, and what happens when the
server side closes idle ones (`cut`).  With a server-side `ssl.SSLContext`
it terminates TLS and records the name each client asked for (SNI), so a
plain-HTTP double can stand behind an https URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable


class TcpProxy:
    """``async with TcpProxy(port) as proxy``: connect to ``proxy.port`` instead.

    ``accepted`` counts connections so far, ``open`` those alive now, and
    ``server_names`` the SNI of each TLS handshake (None when none was sent).
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.tls = tls
        self.accepted = 0
        self.server_names: list[str | None] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        if tls is not None:
            tls.sni_callback = self._sni

    @property
    def open(self) -> int:
        return len(self._clients)

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()  # each connection's task ends with its sockets: none is cancelled
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> int:
        """Close every client connection now, as a server closing idle keep-alive ones."""
        clients = list(self._clients)
        for writer in clients:
            writer.transport.abort()
        return len(clients)

    async def until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds; it is checked at every connection's start and end."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def _sni(self, _: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self._clients.add(writer)
        await self._notify()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
        else:
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.transport.abort()
                writer.transport.abort()
        finally:
            self._clients.discard(writer)
            self._tasks.discard(task)
            await self._notify()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    # Either side's end ends both: a proxy does not keep half a connection.
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
