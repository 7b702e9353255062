"""The HTTP/1.1 server of the daemon and the webhook, over a real unix socket.

Clients here write raw bytes and parse the answers by hand, so that what
is on the wire (keep-alive, pipelining, half-sent requests) is what the
test says.  Deadlines are short (0.2 s) and the tests wait for their
effect (the server closing the connection), never for a time.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from multihome.daemon.httpserver import ReadDeadlines, Request, Response, Routes, Server

WAIT = 30.0


class Site:
    """A `Server` with test routes on a unix socket, and raw connections to it."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.path = path
        self.bodies: list[bytes] = []
        self.cancelled = asyncio.Event()
        self.entered = asyncio.Event()

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path)


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def site() -> AsyncIterator[SiteFactory]:
    root = Path(tempfile.mkdtemp(prefix="mhh-", dir="/tmp"))
    made: list[Site] = []

    async def make(**options: object) -> Site:
        routes = Routes()
        server = Server(routes, deadlines=ReadDeadlines(0.2), max_body=100, **options)  # type: ignore[arg-type]
        path = str(root / f"{len(made)}.sock")
        out = Site(server, path)

        async def hello(_: Request) -> Response:
            return Response.text("hello")

        async def echo(request: Request) -> Response:
            body = await request.read()
            out.bodies.append(body)
            return Response(200, body, "application/octet-stream")

        async def boom(_: Request) -> Response:
            raise RuntimeError("the handler's bug, with a detail the client must not see")

        async def hang(_: Request) -> Response:
            out.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                out.cancelled.set()
                raise
            raise AssertionError("unreachable")

        routes.get("/hello", hello)
        routes.post("/echo", echo)
        routes.get("/boom", boom)
        routes.get("/hang", hang)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        await server.listen_unix(sock)
        made.append(out)
        return out

    yield make
    for each in made:
        await each.server.close(grace=0)
    shutil.rmtree(root, ignore_errors=True)


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names), body (by Content-Length)."""
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
    return int(status), headers, body


async def closed(reader: asyncio.StreamReader) -> bytes:
    """What the server still sends before it closes the connection (it must close it)."""
    async with asyncio.timeout(WAIT):
        return await reader.read()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


GET_HELLO = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_keep_alive_serves_one_request_after_another(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(GET_HELLO)
    status, headers, body = await answer(reader)
    assert (status, body, headers["content-type"]) == (200, b"hello", "text/plain; charset=utf-8")
    assert "connection" not in headers

    writer.write(post("/echo", b"second"))
    assert await answer(reader) == (
        200,
        {"content-type": "application/octet-stream", "content-length": "6"},
        b"second",
    )
    writer.close()


async def test_pipelined_requests_are_answered_in_order(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(post("/echo", b"one") + GET_HELLO + post("/echo", b"three"))
    bodies = [(await answer(reader))[2] for _ in range(3)]
    assert bodies == [b"one", b"hello", b"three"]
    assert s.bodies == [b"one", b"three"]
    writer.close()


async def test_connection_close_is_honoured(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, _ = await answer(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader) == b""
    writer.close()


async def test_http_1_0_is_answered_and_closed(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(b"GET /hello HTTP/1.0\r\n\r\n")
    status, headers, body = await answer(reader)
    assert (status, headers["connection"], body) == (200, "close", b"hello")
    assert await closed(reader) == b""
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    async with asyncio.timeout(WAIT):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    assert (await answer(reader))[2] == b"body"
    writer.close()


async def test_a_slow_head_is_cut_at_the_deadline(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le")
    assert await closed(reader) == b""  # no answer: the connection is cut
    assert s.server.deadlines.expired == 1
    writer.close()


async def test_a_slow_body_is_cut_at_the_deadline_with_a_408(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    status, headers, body = await answer(reader)
    assert (status, headers["connection"]) == (408, "close")
    assert b"did not arrive within 0.2 s" in body
    assert await closed(reader) == b""
    assert s.bodies == []
    writer.close()


async def test_an_oversized_body_is_refused_with_413_unread(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(post("/echo", b"x" * 101))
    status, headers, body = await answer(reader)
    assert (status, headers["connection"]) == (413, "close")
    assert b"101 bytes; at most 100 bytes are accepted" in body
    assert await closed(reader) == b""
    writer.close()

    # Without a Content-Length (chunked), the count stops the read.
    reader, writer = await s.connect()
    chunk = b"40\r\n" + b"y" * 64 + b"\r\n"
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2
    )
    status, _, body = await answer(reader)
    assert status == 413
    assert s.bodies == []
    writer.close()


@pytest.mark.parametrize(
    ("sent", "status", "says"),
    [
        (b"GARBAGE\r\n\r\n", 400, b"illegal request line"),
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, b"illegal header line"),
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000, 431, b"too long"),
    ],
)
async def test_a_malformed_request_is_a_4xx_and_closed(
    site: SiteFactory, sent: bytes, status: int, says: bytes
) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(sent)
    got, headers, body = await answer(reader)
    assert (got, headers["connection"]) == (status, "close")
    assert says in body
    assert await closed(reader) == b""
    writer.close()


async def test_an_idle_connection_is_closed(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(GET_HELLO)
    assert (await answer(reader))[0] == 200
    assert await closed(reader) == b""  # nothing sent after the answer: closed, not held
    assert s.server.deadlines.expired == 1
    writer.close()


async def test_a_handler_exception_is_an_answer_without_the_traceback(site: SiteFactory) -> None:
    s = await site()
    reader, writer = await s.connect()
    writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n" + GET_HELLO)
    status, _, body = await answer(reader)
    assert (status, body) == (500, b"internal error\n")
    assert (await answer(reader))[2] == b"hello"  # and the connection still serves
    writer.close()

    def on_error(request: Request, err: Exception) -> Response:
        return Response.json({"code": 999, "msg": f"{request.path}: {type(err).__name__}"}, 400)

    s = await site(on_error=on_error)
    reader, writer = await s.connect()
    writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await answer(reader)
    assert (status, body) == (400, b'{"code": 999, "msg": "/boom: RuntimeError"}')
    assert headers["content-type"] == "application/json; charset=utf-8"
    writer.close()


async def test_a_header_that_would_break_the_framing_is_not_sent(site: SiteFactory) -> None:
    s = await site()

    async def injected(_: Request) -> Response:
        return Response(200, b"x", headers={"X-Id": "1\r\nSet-Cookie: a=b"})

    s.server.routes.get("/injected", injected)
    reader, writer = await s.connect()
    writer.write(b"GET /injected HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await answer(reader)
    assert (status, body) == (500, b"internal error\n")
    assert "set-cookie" not in headers
    writer.close()


async def test_unknown_paths_wrong_methods_and_head(site: SiteFactory) -> None:
    seen: list[tuple[str, str, int]] = []
    s = await site(on_answer=lambda r, a: seen.append((r.method, r.route, a.status)))
    reader, writer = await s.connect()
    writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await answer(reader))[::2] == (404, b"")
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = await answer(reader)
    assert (status, headers["allow"]) == (405, "POST")
    # A body nobody reads is read and dropped: the next request is still understood.
    writer.write(post("/nothing", b"unread") + b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await answer(reader))[0] == 404
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 5\r\n" in head  # HEAD: the length, not the body
    writer.write(GET_HELLO)
    assert (await answer(reader))[2] == b"hello"
    assert seen == [
        ("GET", "NotFound", 404),
        ("GET", "/echo", 405),
        ("POST", "NotFound", 404),
        ("HEAD", "/hello", 200),
        ("GET", "/hello", 200),
    ]
    writer.close()


async def test_close_ends_idle_connections_and_cancels_handlers_after_the_grace(
    site: SiteFactory,
) -> None:
    s = await site()
    idle_reader, idle_writer = await s.connect()
    idle_writer.write(GET_HELLO)
    assert (await answer(idle_reader))[0] == 200
    reader, writer = await s.connect()
    writer.write(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    await s.entered.wait()

    await s.server.close(grace=0)

    assert s.cancelled.is_set()
    assert await closed(idle_reader) == b""
    assert await closed(reader) == b""
    with pytest.raises(OSError):
        await s.connect()
    idle_writer.close()
    writer.close()


@pytest.mark.parametrize("send_fails", [False, True])
async def test_a_responses_after_runs_once_the_answer_is_sent_or_cannot_be(
    site: SiteFactory, monkeypatch: pytest.MonkeyPatch, send_fails: bool
) -> None:
    from multihome.daemon import httpserver

    order: list[str] = []
    real_send = httpserver._Connection.send

    async def send(connection: httpserver._Connection, data: bytes) -> None:
        if send_fails:
            raise ConnectionResetError("the client went away")
        await real_send(connection, data)
        order.append("sent")

    monkeypatch.setattr(httpserver._Connection, "send", send)
    s = await site()

    async def later(_: Request) -> Response:
        response = Response.text("now")
        response.after = lambda: order.append("after")
        return response

    s.server.routes.get("/later", later)
    reader, writer = await s.connect()
    writer.write(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
    if send_fails:
        assert await closed(reader) == b""
        assert order == ["after"]
    else:
        assert (await answer(reader))[2] == b"now"
        assert order == ["sent", "after"]
    writer.close()
