"""HTTP/1.1 requests to one server over asyncio streams: keep-alive, chunked, bounded.

The transport under the Kubernetes client (`kubeclient` keeps the API's
meaning: verbs, tokens, retries, pacing).  h11 frames and parses the
messages (Content-Length and chunked bodies, ``Connection: close``,
HTTP/1.0 peers); the sockets are asyncio's, with TLS from an
`ssl.SSLContext`.  aiohttp did this before and cost the daemon 12.5 MiB and
the one-shot thin plugin some 200 ms of imports; h11 costs 0.4 MiB and 9 ms.

Connections are kept alive and reused, one request at a time each: a
request takes an idle connection or opens one, and gives it back when its
response has been read to the end.  A connection that errored, was
abandoned mid-response (a timeout, a cancelled watch) or that the server
closed is dropped instead.  At most `max_idle` idle connections are kept,
each for `idle_seconds`, below the API server's own idle timeout (90 s), so
the server seldom closes one just as a request goes out; when it does, a
request that is safe to repeat is sent once more on a new connection.

A response body is read whole up to a bound, or streamed (watches);
either way no single piece the caller asks for grows without limit.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import h11

#: Methods a request may be repeated with when a reused connection turns out closed.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Bytes asked of the socket at once; also the stream's buffer limit.
READ_SIZE = 256 * 1024
# Characters a path keeps as they are: what quote() leaves, the sub-delimiters,
# and "%" so that a path its caller already quoted is not quoted twice.
_PATH_SAFE = "/%:@!$&'()*+,;=~"


class HttpError(Exception):
    """No complete answer: connect, TLS, reset, early close, a protocol error, a bound."""


class BodyTooLarge(HttpError):
    """The response body, or one piece of it, is larger than the caller accepts."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port and a path prefix, from a server URL."""

    scheme: str
    host: str  # without brackets for an IPv6 literal
    port: int
    prefix: str  # "" or "/some/prefix", no trailing "/"

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server {url!r} is not an http(s) URL with a host")
        try:
            port = parts.port
        except ValueError as err:
            raise ValueError(f"server {url!r} has an invalid port: {err}") from None
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        """The Host header: the host (bracketed if IPv6) and the port unless it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def target(self, path: str, query: Mapping[str, str] | None) -> str:
        target = quote(self.prefix + path, safe=_PATH_SAFE)
        return f"{target}?{urlencode(query)}" if query else target


class _Connection:
    """One socket and its HTTP state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)
        self.received = 0  # bytes of the current response so far
        self.expiry: asyncio.TimerHandle | None = None
        # The current request's bounds: a deadline for all of it, a timeout for each read.
        self.deadline: float | None = None
        self.read_timeout: float | None = None

    @property
    def usable(self) -> bool:
        """Idle, and the server has not closed it (as far as the loop has seen)."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size():  # else the socket took it all
            async with asyncio.timeout_at(self.deadline):
                await self.writer.drain()

    def _read_deadline(self) -> float | None:
        if self.read_timeout is None:
            return self.deadline
        when = asyncio.get_running_loop().time() + self.read_timeout
        return when if self.deadline is None else min(when, self.deadline)

    async def next_event(self) -> h11.Event:
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                if self.reader.at_eof():  # h11 says so in its own terms
                    raise ConnectionError("the server closed the connection") from None
                raise
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # more after the end of a response: we never pipeline
                raise h11.RemoteProtocolError("the server sent more than it was asked for", 502)
            deadline = self._read_deadline()
            if deadline is None:
                data = await self.reader.read(READ_SIZE)
            else:
                async with asyncio.timeout_at(deadline):
                    data = await self.reader.read(READ_SIZE)
            self.received += len(data)
            self.http.receive_data(data)

    def close(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        # abort(), not close(): nothing worth flushing is left in a dropped
        # connection, and a TLS close would wait for the peer.
        self.writer.transport.abort()


class Response:
    """A response's status and headers; its body read whole (`read`) or as it comes (`async for`).

    `release` (also at the end of `read` and of the iteration) gives the
    connection back when the body was read to its end, and drops it otherwise.
    """

    def __init__(
        self,
        client: HttpClient,
        connection: _Connection,
        head: h11.Response,
    ) -> None:
        self.status = head.status_code
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers
        }
        self._client = client
        self._connection: _Connection | None = connection

    def header(self, name: str) -> str:
        """A header's value ("" when absent); names are matched lower-case, as h11 gives them."""
        return self.headers.get(name.lower(), "")

    async def read(self, limit: int) -> bytes:
        """The whole body; `BodyTooLarge` past `limit` bytes."""
        length = self.header("content-length")
        if length.isdigit() and int(length) > limit:
            self.release()
            raise BodyTooLarge(
                f"the response body is {_size(int(length))}, more than {_size(limit)}"
            )
        body = bytearray()
        async for chunk in self:
            body += chunk
            if len(body) > limit:
                self.release()
                raise BodyTooLarge(f"the response body is more than {_size(limit)}")
        return bytes(body)

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        try:
            event = await connection.next_event()
        except BaseException as err:  # cancelled too: the connection is mid-message
            self.release()
            if isinstance(err, (OSError, h11.ProtocolError)):
                raise HttpError(_describe(err)) from err
            raise
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self.release()
        if isinstance(event, h11.EndOfMessage):
            raise StopAsyncIteration
        raise HttpError("the server closed the connection in the middle of the response")

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._client._release(connection)


class HttpClient:
    """Requests to one origin (`Origin.parse(url)`), over a small pool of kept-alive connections.

    `ssl_context` is used for https (the default verifying one when None);
    `server_hostname` is the name the TLS certificate must carry (and SNI)
    when it is not the URL's host.  `headers` go with every request.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_idle: int = 8,
        idle_seconds: float = 15.0,
    ) -> None:
        self.origin = Origin.parse(url)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._headers = [("Host", self.origin.authority), *(headers or {}).items()]
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        #: Connections opened so far: how tests and metrics see reuse.
        self.connections_opened = 0

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> Response:
        """Send one request and read its status and headers; the caller reads or releases the body.

        The bounds are aiohttp's ``ClientTimeout``'s: `timeout` for all of
        it, the body included; `connect_timeout` for opening a connection
        (TCP and TLS); `read_timeout` for each wait for bytes from the server.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        fields = [*self._headers, *(headers or {}).items()]
        if body is not None:
            fields.append(("Content-Length", str(len(body))))
        try:
            request = h11.Request(
                method=method, target=self.origin.target(path, query), headers=fields
            )
        except h11.LocalProtocolError:
            # h11's message quotes the offending header, which may be the token.
            raise HttpError(
                "the request cannot be sent: a header holds a line break or a control character"
            ) from None
        while True:
            connect = deadline
            if connect_timeout is not None:
                connect = loop.time() + connect_timeout
                if deadline is not None:
                    connect = min(connect, deadline)
            connection, reused = await self._acquire(connect)
            connection.deadline, connection.read_timeout = deadline, read_timeout
            try:
                head = await self._exchange(connection, request, body)
            except _ClosedUnanswered as err:
                self._drop(connection)
                if reused and method in IDEMPOTENT:
                    continue  # the server had closed it idle; a new connection is no repeat
                raise HttpError(_describe(err.cause)) from err.cause
            except BaseException as err:
                self._drop(connection)
                if isinstance(err, (OSError, h11.ProtocolError)):
                    raise HttpError(_describe(err)) from err
                raise
            return Response(self, connection, head)

    async def close(self) -> None:
        """Close every connection, idle and busy (a busy one's request fails)."""
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.sleep(0)  # the loop closes the sockets: none is left to the GC

    # -- the pool ---------------------------------------------------------

    async def _acquire(self, deadline: float | None) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()  # the most recent: the least likely closed
            if connection.expiry is not None:
                connection.expiry.cancel()
                connection.expiry = None
            if connection.usable:
                self._busy.add(connection)
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout_at(deadline):
                if self.origin.scheme == "https":
                    if self._ssl is None:
                        self._ssl = ssl.create_default_context()
                    reader, writer = await asyncio.open_connection(
                        self.origin.host,
                        self.origin.port,
                        ssl=self._ssl,
                        server_hostname=self._server_hostname or self.origin.host,
                        limit=READ_SIZE,
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        self.origin.host, self.origin.port, limit=READ_SIZE
                    )
        except OSError as err:  # ssl.SSLError and TimeoutError are OSErrors
            raise HttpError(_describe(err)) from err
        self.connections_opened += 1
        connection = _Connection(reader, writer)
        self._busy.add(connection)
        return connection, False

    def _release(self, connection: _Connection) -> None:
        http = connection.http
        if connection not in self._busy:
            connection.close()  # closed by close() meanwhile
            return
        self._busy.discard(connection)
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            connection.close()
            return
        if len(self._idle) >= self.max_idle or not connection.usable:
            connection.close()
            return
        http.start_next_cycle()
        connection.received = 0
        loop = asyncio.get_running_loop()
        connection.expiry = loop.call_later(self.idle_seconds, self._expire, connection)
        self._idle.append(connection)

    def _expire(self, connection: _Connection) -> None:
        connection.expiry = None
        if connection in self._idle:
            self._idle.remove(connection)
            connection.close()

    def _drop(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        connection.close()

    async def _exchange(
        self,
        connection: _Connection,
        request: h11.Request,
        body: bytes | None,
    ) -> h11.Response:
        http = connection.http
        data = http.send(request) or b""
        if body:
            data += http.send(h11.Data(data=body)) or b""
        data += http.send(h11.EndOfMessage()) or b""
        try:
            await connection.send(data)
            while True:
                event = await connection.next_event()
                if isinstance(event, h11.Response):
                    return event
                if not isinstance(event, h11.InformationalResponse):  # 1xx: wait on
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        except TimeoutError:
            raise
        except (OSError, h11.RemoteProtocolError) as err:
            if connection.received == 0:
                raise _ClosedUnanswered(err) from err
            raise


class _ClosedUnanswered(Exception):
    """Closed or reset before the first byte of the answer: maybe a connection closed while idle."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {err.verify_message or err}"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, h11.ProtocolError):
        return f"HTTP: {err}"
    return str(err) or type(err).__name__


def _size(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.4g} MiB"
    return f"{count} bytes"
