"""HTTP/1.1 servers on asyncio streams and h11: the daemon's socket and metrics port, the webhook.

Small on purpose: the daemon answers a handful of routes, and aiohttp.web
cost 14.6 MiB of its resident memory where asyncio's streams and h11 (a
sans-I/O HTTP/1.1 state machine) cost 0.4 MiB.  What every connection gets:

* its request's head within ``timeout`` seconds (`ReadDeadlines`) of the
  connection or of the previous answer, which is also how long an idle
  keep-alive connection stays open; the body within ``timeout`` of the
  handler asking for it.  A client that sends slowly, or nothing, cannot
  hold a connection; a handler that takes minutes (an ADD) may;
* a body over ``max_body`` bytes refused with 413, unread;
* a malformed request answered with the 4xx h11 names (400, 431, 505...)
  and the connection closed;
* an exception in a handler answered by ``on_error`` (the daemon's is a CNI
  error), never with a traceback;
* requests served one after the other on a connection (keep-alive and
  pipelining, as HTTP/1.1 has them).

h11 parses what clients send; the answers, a status line and the few
headers this module sets itself, are written here directly: h11's
checks of our own headers took half of a request's time in h11 (160 of
290 µs on the loaded 2-core VM).  A connection gets a fresh h11 state per
request, fed what the client already sent after the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11

log = logging.getLogger(__name__)

#: A request's line and headers together (aiohttp's limit was 8190 bytes a line).
MAX_HEAD = 64 * 1024
#: Connections waiting to be accepted (as aiohttp's sites had it).
BACKLOG = 128
_CHUNK = 65536


class ReadDeadlines:
    """How long a client has to send a request; counts the connections cut for it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: Connections closed because no complete request head came in time.
        self.expired = 0


class BodyError(Exception):
    """The request's body cannot be read; ``status`` is the 4xx that says why."""

    status = 400


class BodyTooLarge(BodyError):
    status = 413

    def __init__(self, limit: int, size: int | None) -> None:
        self.limit = limit
        #: The declared Content-Length; None when the body ran over while being read.
        self.size = size
        super().__init__(
            f"the request body is {f'{size} bytes' if size is not None else 'longer'}; "
            f"at most {limit} bytes are accepted"
        )


class BodyTimeout(BodyError):
    status = 408

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"the request body did not arrive within {timeout:g} s")


class Headers:
    """A request's headers by name, in any case; repeated ones joined with ", "."""

    def __init__(self, items: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in items:  # h11 gives names in lower case
            key, text = name.decode("latin-1"), value.decode("latin-1")
            self._values[key] = f"{self._values[key]}, {text}" if key in self._values else text

    def get(self, name: str, default: str = "") -> str:
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)


class Request:
    """One request: its line and headers at once, its body on `read`."""

    def __init__(self, event: h11.Request, connection: _Connection) -> None:
        self.method = event.method.decode("ascii")
        target = event.target.decode("latin-1")
        self.path, _, self.query = target.partition("?")
        self.headers = Headers(list(event.headers))
        length = self.headers.get("content-length")
        self.content_length = int(length) if length.isdigit() else None
        # As h11 decides it: HTTP/1.1 without "Connection: close".
        tokens = {t.strip().lower() for t in self.headers.get("connection").split(",")}
        self.keep_alive = event.http_version == b"1.1" and "close" not in tokens
        #: The route that matched (its path), "NotFound" when none did.
        self.route = ""
        self._connection = connection
        self._body: bytes | None = None
        self._error: BodyError | None = None

    async def read(self) -> bytes:
        """The whole body; `BodyError` when it is too large, too slow or malformed."""
        if self._body is None:
            if self._error is not None:
                raise self._error
            try:
                self._body = await self._connection.read_body(self)
            except BodyError as err:
                self._error = err
                raise
        return self._body

    @property
    def body_failed(self) -> bool:
        return self._error is not None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    #: Called once the answer is sent, or could not be (the client went away).
    after: Callable[[], None] | None = field(default=None, repr=False)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), f"{content_type}; charset=utf-8")

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls.text(json.dumps(data), status, "application/json")


Handler = Callable[[Request], Awaitable[Response]]


class Routes:
    """Handlers by method and exact path; GET routes answer HEAD too."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._handlers[(method, path)] = handler
        if method == "GET":
            self._handlers.setdefault(("HEAD", path), handler)

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def find(self, request: Request) -> Handler | Response:
        """The handler for ``request``, or the 404 or 405 that answers it."""
        handler = self._handlers.get((request.method, request.path))
        if handler is not None:
            request.route = request.path
            return handler
        allowed = sorted(m for m, p in self._handlers if p == request.path)
        if not allowed:
            request.route = "NotFound"
            return Response(404)  # empty, as upstream's daemon answers
        request.route = request.path
        response = Response.text("405: Method Not Allowed", 405)
        response.headers["Allow"] = ", ".join(allowed)
        return response


def _internal_error(request: Request, err: Exception) -> Response:
    log.error("internal error serving %s %s: %s", request.method, request.path, err, exc_info=err)
    return Response.text("internal error\n", 500)


class _Connection:
    """One client connection: its h11 state and its streams."""

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.reader = reader
        self.writer = writer
        #: A handler is running: shutdown gives it time before cancelling it.
        self.busy = False

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.reader.read(_CHUNK))  # b"": the client is done

    async def read_body(self, request: Request) -> bytes:
        limit, timeout = self.server.max_body, self.server.deadlines.timeout
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(limit, request.content_length)
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.next_event()
                    if isinstance(event, h11.EndOfMessage):
                        return b"".join(chunks)
                    if not isinstance(event, h11.Data):
                        raise BodyError("the connection ended inside the request body")
                    size += len(event.data)
                    if size > limit:
                        raise BodyTooLarge(limit, None)
                    chunks.append(event.data)
        except TimeoutError:
            raise BodyTimeout(timeout) from None
        except h11.RemoteProtocolError as err:
            raise BodyError(f"malformed request body: {err}") from None

    def next_request(self) -> None:
        """A fresh h11 state for the next request, with what the client sent after this one."""
        data, closed = self.h11.trailing_data
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if data:
            self.h11.receive_data(bytes(data))
        if closed:
            self.h11.receive_data(b"")

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        # A client that does not read its answer does not hold the connection either.
        async with asyncio.timeout(self.server.deadlines.timeout):
            await self.writer.drain()


class Server:
    """Serves ``routes`` on the sockets it is given to listen on, until `close`.

    ``on_error`` answers a handler's exception (default: a plain 500 without
    the traceback, which is logged); ``on_answer`` sees every request with its
    answer (the daemon counts them).
    """

    def __init__(
        self,
        routes: Routes,
        *,
        deadlines: ReadDeadlines,
        max_body: int,
        on_error: Callable[[Request, Exception], Response] = _internal_error,
        on_answer: Callable[[Request, Response], None] | None = None,
    ) -> None:
        self.routes = routes
        self.deadlines = deadlines
        self.max_body = max_body
        self.on_error = on_error
        self.on_answer = on_answer
        self._listeners: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task[Any], _Connection] = {}
        self._closing = False

    async def listen_unix(self, sock: socket.socket) -> None:
        """Serve on a bound unix socket (`multihome.daemon.listening.listen`)."""
        self._listeners.append(
            await asyncio.start_unix_server(self._serve, sock=sock, backlog=BACKLOG)
        )

    async def listen_tcp(
        self, host: str | None, port: int, *, tls: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Serve on ``host:port`` (all addresses for None); the address bound first."""
        listener = await asyncio.start_server(
            self._serve,
            host,
            port,
            backlog=BACKLOG,
            ssl=tls,
            # A TLS handshake is part of the request's head: the same deadline.
            ssl_handshake_timeout=self.deadlines.timeout if tls is not None else None,
        )
        self._listeners.append(listener)
        address = listener.sockets[0].getsockname()
        return address[0], address[1]

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, give handlers ``grace`` s, cancel the rest."""
        self._closing = True
        for listener in self._listeners:
            listener.close()
        for task, connection in list(self._connections.items()):
            if not connection.busy:
                task.cancel()
        tasks = list(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()

    # -- one connection ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(self, reader, writer)
        self._connections[task] = connection
        try:
            await self._requests(connection)
        except (OSError, TimeoutError, h11.ProtocolError):
            # Gone, too slow to take its answer, or out of step: nothing to answer.
            writer.transport.abort()
        finally:
            del self._connections[task]
            writer.close()

    async def _requests(self, connection: _Connection) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self.deadlines.timeout):
                    event = await connection.next_event()
            except TimeoutError:
                self._expire(connection)
                return
            except h11.RemoteProtocolError as err:
                await self._refuse(connection, err)
                return
            if not isinstance(event, h11.Request):
                return  # the client closed the connection between requests
            request = Request(event, connection)
            connection.busy = True
            try:
                response = await self._dispatch(request)
                if not await self._answer(connection, request, response):
                    return
            finally:
                connection.busy = False
            connection.next_request()

    def _expire(self, connection: _Connection) -> None:
        self.deadlines.expired += 1
        timeout = self.deadlines.timeout
        if connection.h11.trailing_data[0]:
            log.info("closed a connection that sent no complete request in %g s", timeout)
        else:
            log.debug("closed a connection idle for %g s", timeout)
        connection.writer.transport.abort()

    async def _dispatch(self, request: Request) -> Response:
        found = self.routes.find(request)
        if isinstance(found, Response):
            return found
        try:
            return await found(request)
        except BodyError as err:
            return Response.text(f"{err}\n", err.status)
        except Exception as err:
            return self.on_error(request, err)

    async def _answer(self, connection: _Connection, request: Request, response: Response) -> bool:
        """Send ``response``; True when the connection can take the next request."""
        keep = request.keep_alive and not request.body_failed and not self._closing
        after = response.after
        try:
            try:
                head = _head(response, close=not keep)
            except ValueError as err:  # a header that cannot go on the wire: our bug
                response = self.on_error(request, err)
                head = _head(response, close=not keep)
            await connection.send(head if request.method == "HEAD" else head + response.body)
        finally:
            if after is not None:
                after()
        if self.on_answer is not None:
            self.on_answer(request, response)
        if not keep:
            return False
        if connection.h11.their_state is h11.SEND_BODY:
            # A body the handler did not read is read, within the limits, and dropped.
            with contextlib.suppress(BodyError):
                await request.read()
        return connection.h11.their_state is h11.DONE

    async def _refuse(self, connection: _Connection, err: h11.RemoteProtocolError) -> None:
        # The message says what was wrong to the client that sent it; the log
        # only that it happened (a broken header line may carry a token).
        status = err.error_status_hint
        log.info("refused a malformed request (%d)", status)
        response = Response.text(f"{status} {_reason(status)}: {err}\n", status)
        await connection.send(_head(response, close=True) + response.body)


def _head(response: Response, *, close: bool) -> bytes:
    """The status line and headers; ValueError for a header that would break the framing."""
    lines = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
    for name, value in response.headers.items():
        if (
            not name.isascii()
            or not name.replace("-", "").isalnum()
            or "\r" in value
            or "\n" in value
        ):
            raise ValueError(f"the header {name!r}: {value!r} cannot be sent")
        lines.append(f"{name}: {value}")
    if response.content_type:
        lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
