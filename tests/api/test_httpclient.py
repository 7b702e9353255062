"""The Kubernetes client's HTTP/1.1 transport: connections, bodies, TLS, bounds.

`KubeClient` is tested for its API meaning in test_kube.py and tests/faults;
here is what its transport (`multihome.cluster.httpclient`) adds: keep-alive
reuse, seen by a counting proxy in front of the API double; servers that
close connections; chunked watch lines of any length; the body bound; TLS
with a server name; cancellation.  Byte-exact answers come from a scripted
server built on h11's server side, an HTTP implementation of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h11
import pytest

from multihome.cluster import kubeclient
from multihome.cluster.credentials import Credentials
from multihome.cluster.httpclient import HttpClient, HttpError, Origin
from multihome.cluster.kubeclient import ApiUnreachable, KubeClient
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.tcpproxy import TcpProxy
from multihome.testing.tls import self_signed

TOKEN = "t0k3n-secret-1"
PODS = "/api/v1/namespaces/default/pods"
WAIT = 10.0  # never reached when it works


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "pause"}]},
    }


@pytest.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(tokens=[TOKEN]) as double:
        yield double


@pytest.fixture
async def proxy(api: ApiServerDouble) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(api.port) as the_proxy:
        yield the_proxy


def client_via(proxy: TcpProxy, **options: Any) -> KubeClient:
    creds = Credentials(server=f"http://127.0.0.1:{proxy.port}", token=TOKEN)
    return KubeClient(creds, retry_seconds=0, **options)


# -- what the plugin and the daemon import --------------------------------------


@pytest.mark.parametrize("module", ["multihome.cluster.kube", "multihome.cluster.kubeclient"])
def test_the_client_imports_no_aiohttp(module: str):
    code = f"import sys, {module}; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- keep-alive -------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(api: ApiServerDouble, proxy: TcpProxy):
    api.create(pod("web"))
    async with client_via(proxy) as client:
        for _ in range(5):
            assert (await client.get(f"{PODS}/web"))["metadata"]["name"] == "web"
        await client.list(PODS, query={"limit": "10"})
        await client.patch(f"{PODS}/web/status", {"metadata": {"annotations": {"a": "b"}}})
        assert proxy.accepted == 1
    await proxy.until(lambda: proxy.open == 0)  # close() closed it
    assert api.count("get", "pods") == 5 and api.count("patch", "pods/status") == 1


async def test_concurrent_requests_never_share_a_connection(api: ApiServerDouble, proxy: TcpProxy):
    api.create(pod("web"))
    async with client_via(proxy) as client:
        # All four are sent before any answer comes back: four connections.
        got = await asyncio.gather(*(client.get(f"{PODS}/web") for _ in range(4)))
        assert [g["metadata"]["name"] for g in got] == ["web"] * 4
        assert proxy.accepted == 4
        for _ in range(4):  # then the idle ones serve, one at a time
            await client.get(f"{PODS}/web")
        assert proxy.accepted == 4 and proxy.open == 4


async def test_idle_connections_are_bounded_in_number_and_time(proxy: TcpProxy):
    client = HttpClient(f"http://127.0.0.1:{proxy.port}", max_idle=2, idle_seconds=0.05)

    async def get() -> int:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = await client.send("GET", "/version", headers=auth, timeout=WAIT)
        await response.read(1 << 20)
        return response.status

    assert await asyncio.gather(*(get() for _ in range(4))) == [200] * 4
    assert client.connections_opened == 4
    await proxy.until(lambda: proxy.open == 2)  # two kept
    await proxy.until(lambda: proxy.open == 0)  # and closed once idle for idle_seconds
    await client.close()


async def test_a_watch_holds_its_own_connection(api: ApiServerDouble, proxy: TcpProxy):
    api.create(pod("web"))
    async with client_via(proxy) as client:
        watch = client.watch(PODS, query={"timeoutSeconds": "60"})
        assert (await anext(watch))["type"] == "ADDED"
        await client.get(f"{PODS}/web")  # beside the watch, not on it
        assert proxy.accepted == 2
        await watch.aclose()
        await client.get(f"{PODS}/web")
        assert proxy.accepted == 2  # the GET's connection again; the watch's is gone
        await api.until(lambda: api.open_watches == 0)


async def test_connections_the_server_closed_are_not_reused(api: ApiServerDouble, proxy: TcpProxy):
    api.create(pod("web"))
    async with client_via(proxy) as client:
        await client.get(f"{PODS}/web")
        assert proxy.cut() == 1  # the server ends the idle keep-alive connection
        await proxy.until(lambda: proxy.open == 0)
        # A POST, which the transport never repeats: the closed one was not used.
        await client.create("/api/v1/namespaces/default/events", {"metadata": {"name": "e"}})
        await client.get(f"{PODS}/web")
    assert proxy.accepted == 2
    assert api.count("get", "pods") == 2 and api.count("create", "events") == 1


# -- a scripted server: answers written event by event -------------------------

Answer = Callable[[h11.Request, int], list[h11.Event] | None]


class Scripted:
    """An HTTP/1.1 server whose answers a test gives as h11 events.

    `answer(request, n)` gets each request and its number on its connection
    (1, 2, ...) and returns the events to send, or None to close the
    connection without answering.  ``requests`` counts requests served.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[h11.Request] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        number = 0
        try:
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(await reader.read(65536))
                    continue
                if isinstance(event, h11.Request):
                    number += 1
                    self.requests.append(event)
                    request = event
                elif isinstance(event, h11.EndOfMessage):
                    events = self.answer(request, number)
                    if events is None:
                        break
                    for out in events:
                        writer.write(http.send(out) or b"")
                    await writer.drain()
                    if http.our_state is h11.SEND_BODY:  # an answer left unfinished: hold it
                        await reader.read()
                        break
                    if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
                        break
                    http.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except (OSError, h11.ProtocolError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


def ok(body: bytes, *, chunks: list[bytes] | None = None) -> list[h11.Event]:
    """200 with a JSON body, by Content-Length or, when `chunks` is given, chunked."""
    if chunks is not None:
        headers = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
        data: list[h11.Event] = [h11.Data(data=c) for c in chunks]
        return [h11.Response(status_code=200, headers=headers), *data, h11.EndOfMessage()]
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return [h11.Response(status_code=200, headers=headers), h11.Data(data=body), h11.EndOfMessage()]


def scripted_client(server: Scripted, **options: Any) -> KubeClient:
    return KubeClient(Credentials(server=server.url, token=TOKEN), retry_seconds=0, **options)


async def test_a_server_that_closes_after_each_answer():
    def answer(request: h11.Request, _: int) -> list[h11.Event]:
        events = ok(b'{"kind":"Pod"}')
        head = events[0]
        assert isinstance(head, h11.Response)
        events[0] = h11.Response(status_code=200, headers=[*head.headers, ("Connection", "close")])
        return events

    async with Scripted(answer) as server, scripted_client(server) as client:
        for _ in range(3):
            assert await client.get(f"{PODS}/web") == {"kind": "Pod"}
    assert server.connections == 3


async def test_a_write_that_wants_no_answer_reads_it_undecoded_and_keeps_the_connection():
    # The status PATCH and the event POST throw the server's object away: it
    # is read to its end (the connection serves the next request) and never
    # parsed, so a body no JSON parser takes does not fail them.
    def answer(request: h11.Request, _: int) -> list[h11.Event]:
        return ok(b'{"kind":"Pod"}' if request.method == b"GET" else b"{not json")

    async with Scripted(answer) as server, scripted_client(server) as client:
        assert await client.patch(f"{PODS}/web/status", {"metadata": {}}, answer=False) == {}
        assert await client.create("/api/v1/namespaces/default/events", {}, answer=False) == {}
        assert await client.get(f"{PODS}/web") == {"kind": "Pod"}
        with pytest.raises(ApiUnreachable, match="not JSON"):
            await client.patch(f"{PODS}/web/status", {"metadata": {}})
    assert (len(server.requests), server.connections) == (4, 1)


async def test_a_keep_alive_connection_closed_as_a_request_goes_out():
    # The server takes the second request on a connection and closes it
    # unanswered, as a server timing out an idle connection at that instant.
    def answer(_: h11.Request, number: int) -> list[h11.Event] | None:
        return ok(b'{"kind":"Pod"}') if number == 1 else None

    async with Scripted(answer) as server, scripted_client(server) as client:
        await client.get(f"{PODS}/web")
        await client.get(f"{PODS}/web")  # repeated once on a new connection: a GET is safe to
        assert (len(server.requests), server.connections) == (3, 2)

        # A POST is not repeated by the transport: the caller's retry policy decides.
        with pytest.raises(ApiUnreachable) as failure:
            await client.create("/api/v1/namespaces/default/events", {"metadata": {}})
        assert "closed" in str(failure.value)
        assert (len(server.requests), server.connections) == (4, 2)
        assert client.requests == {"get": 2, "create": 1}


async def test_chunked_watch_lines_of_any_length():
    big = b"x" * 300_000  # over any line reader's 64 KiB limit
    lines = [
        b'{"type":"ADDED","object":{"n":1}}\n{"type":"ADDED","object":{"n":2}}\n',
        b'{"type":"MODIFIED","object":{"blob":"' + big + b'"}}\n',
        b'{"type":"DELETED","object":{"n":3}}',  # the last without its newline
    ]
    stream = b"".join(lines)
    # Chunks cut everywhere: in the middle of lines, of the big one, at newlines.
    cuts = [0, 5, 33, 34, 40, 70_000, 140_001, 299_999, 300_070, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(cuts)]

    def answer(_: h11.Request, __: int) -> list[h11.Event]:
        return ok(b"", chunks=chunks)

    async with Scripted(answer) as server, scripted_client(server) as client:
        events = [e async for e in client.watch(PODS, query={"timeoutSeconds": "5"})]
        target = server.requests[0].target
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "MODIFIED", "DELETED"]
    assert events[2]["object"]["blob"] == big.decode()
    assert target == b"/api/v1/namespaces/default/pods?timeoutSeconds=5&watch=true"


async def test_a_body_over_the_bound_is_refused_without_retries(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(kubeclient, "MAX_BODY", 1 << 20)
    over = b'"' + b"y" * (1 << 20) + b'"'

    def answer(request: h11.Request, _: int) -> list[h11.Event]:
        if request.target.endswith(b"chunked"):
            return ok(b"", chunks=[over[i : i + 65536] for i in range(0, len(over), 65536)])
        return ok(over)

    async with Scripted(answer) as server:
        async with scripted_client(server, timeout=WAIT) as client:
            for path in (f"{PODS}/sized", f"{PODS}/chunked"):
                with pytest.raises(ApiUnreachable) as failure:
                    await client.get(path, retry_seconds=5.0)  # a budget it does not use
                message = str(failure.value)
                assert path in message and "more than 1 MiB" in message
                assert TOKEN not in message
        assert len(server.requests) == 2


async def test_a_watch_event_over_the_bound_ends_the_watch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kubeclient, "MAX_BODY", 1 << 20)
    endless = [b'{"type":"ADDED","object":{"blob":"'] + [b"z" * 65536] * 20

    async with (
        Scripted(lambda _, __: ok(b"", chunks=endless)) as server,
        scripted_client(server) as client,
    ):
        with pytest.raises(ApiUnreachable) as failure:
            async for _ in client.watch(PODS, query={}):
                pass
    assert "one event is more than 1 MiB" in str(failure.value)


async def test_a_silent_server_times_out_a_request_and_a_watch():
    # Headers, then nothing: the total bound covers the body, the watch's read bound each wait.
    head = ok(b"", chunks=[b'{"type":"ADDED"'])[:2]
    async with (
        Scripted(lambda _, __: head) as server,
        scripted_client(server, timeout=0.1) as client,
    ):
        with pytest.raises(ApiUnreachable, match=f"get {PODS}/web: timed out"):
            await client.get(f"{PODS}/web")
        with pytest.raises(ApiUnreachable, match=f"watch {PODS}: timed out"):
            async for _ in client.watch(PODS, query={"timeoutSeconds": "0.1"}):
                pass
    assert len(server.requests) == 2


async def test_a_header_with_a_line_break_fails_without_naming_it():
    async with Scripted(lambda _, __: ok(b"{}")) as server:
        creds = Credentials(server=server.url, token=TOKEN + "\nX-Injected: 1")
        async with KubeClient(creds, retry_seconds=0) as client:
            with pytest.raises(ApiUnreachable) as failure:
                await client.get(f"{PODS}/web")
    assert "line break" in str(failure.value) and TOKEN not in str(failure.value)
    assert server.requests == []


async def test_requests_carry_the_prefix_the_query_and_the_client_headers():
    async with Scripted(lambda _, __: ok(b"{}")) as server:
        creds = Credentials(server=f"{server.url}/k8s/clusters/c-1/", token=TOKEN)
        async with KubeClient(creds) as client:
            query = {"fieldSelector": "spec.nodeName=node 1", "labelSelector": "a in (b,c)"}
            await client.list(PODS, query=query)
            await client.create(f"{PODS}", {"metadata": {"name": "é"}})
    listed, created = server.requests
    assert listed.target == (
        b"/k8s/clusters/c-1/api/v1/namespaces/default/pods"
        b"?fieldSelector=spec.nodeName%3Dnode+1&labelSelector=a+in+%28b%2Cc%29"
    )
    headers = dict(listed.headers)
    assert headers[b"host"] == f"127.0.0.1:{server.port}".encode()
    assert headers[b"accept"] == b"application/json"
    assert headers[b"user-agent"].startswith(b"multihome/")
    assert headers[b"authorization"] == f"Bearer {TOKEN}".encode()
    assert b"accept-encoding" not in headers  # bodies come uncompressed: nothing to inflate
    assert dict(created.headers)[b"content-type"] == b"application/json"


def test_origins_from_server_urls():
    assert Origin.parse("https://[fd00::1]:6443/") == Origin("https", "fd00::1", 6443, "")
    assert Origin.parse("https://[fd00::1]:6443").authority == "[fd00::1]:6443"
    assert Origin.parse("https://api.example:443/p/").authority == "api.example"
    assert Origin.parse("http://api.example").port == 80
    assert Origin.parse("https://h/p/").target("/api/v1/x y", None) == "/p/api/v1/x%20y"
    assert Origin.parse("https://h").target("/a%2Fb", {"k": "v/w"}) == "/a%2Fb?k=v%2Fw"
    for bad in ("ftp://h", "https://", "http://h:port"):
        with pytest.raises(ValueError, match="server"):
            Origin.parse(bad)


async def test_an_ipv6_literal_server(api: ApiServerDouble):
    async with TcpProxy(api.port, host="::1") as proxy:
        creds = Credentials(server=f"http://[::1]:{proxy.port}", token=TOKEN)
        async with KubeClient(creds) as client:
            assert (await client.list(PODS, query={}))["kind"] == "PodList"
        assert proxy.accepted == 1


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name api.cluster.test only (no IP), by openssl."""
    where = tmp_path_factory.mktemp("tls")
    return self_signed(where, common_name="api.cluster.test", alt_names="DNS:api.cluster.test")


@pytest.fixture
async def tls_proxy(
    api: ApiServerDouble, certificate: tuple[Path, Path]
) -> AsyncIterator[TcpProxy]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    async with TcpProxy(api.port, tls=context) as the_proxy:
        yield the_proxy


async def test_tls_verifies_the_server_name_it_was_given(
    api: ApiServerDouble, tls_proxy: TcpProxy, certificate: tuple[Path, Path]
):
    api.create(pod("web"))
    server = f"https://127.0.0.1:{tls_proxy.port}"
    creds = Credentials(
        server=server, ca_file=str(certificate[0]), tls_server_name="api.cluster.test", token=TOKEN
    )
    async with KubeClient(creds) as client:
        for _ in range(3):
            assert (await client.get(f"{PODS}/web"))["metadata"]["name"] == "web"
        # The watch takes the connection the GETs left idle.
        events = client.watch(PODS, query={"timeoutSeconds": "60"})
        assert (await anext(events))["object"]["metadata"]["name"] == "web"
        await events.aclose()
    assert tls_proxy.accepted == 1 and tls_proxy.server_names == ["api.cluster.test"]

    # Without the name, the certificate (no IP in it) does not match 127.0.0.1.
    plain = Credentials(server=server, ca_file=str(certificate[0]), token=TOKEN)
    async with KubeClient(plain, retry_seconds=0) as client:
        with pytest.raises(ApiUnreachable) as failure:
            await client.get(f"{PODS}/web")
    message = str(failure.value)
    assert "TLS" in message and "127.0.0.1" in message and TOKEN not in message
    assert api.count("get", "pods") == 3


async def test_an_https_server_without_a_context_is_verified_by_default(tls_proxy: TcpProxy):
    # The default verifying context: this self-signed certificate is refused.
    client = HttpClient(f"https://127.0.0.1:{tls_proxy.port}", server_hostname="api.cluster.test")
    with pytest.raises(HttpError, match="certificate verify failed"):
        await client.send("GET", "/version", timeout=WAIT)
    await client.close()


# -- cancellation and close ----------------------------------------------------------------


async def test_a_cancelled_watch_closes_its_connection(api: ApiServerDouble, proxy: TcpProxy):
    started = asyncio.Event()

    async def watch(client: KubeClient) -> None:
        async for _ in client.watch(PODS, query={"timeoutSeconds": "60"}):
            started.set()

    api.create(pod("web"))
    async with client_via(proxy) as client:
        task = asyncio.create_task(watch(client))
        await asyncio.wait_for(started.wait(), WAIT)
        assert api.open_watches == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.until(lambda: proxy.open == 0)  # dropped, not pooled
        await api.until(lambda: api.open_watches == 0)
        await client.get(f"{PODS}/web")
    assert proxy.accepted == 2


async def test_close_ends_a_watch_in_flight(api: ApiServerDouble, proxy: TcpProxy):
    client = client_via(proxy)
    events = client.watch(PODS, query={"timeoutSeconds": "60"})
    pending = asyncio.ensure_future(anext(events))
    await api.until(lambda: api.open_watches == 1)
    await client.close()
    with pytest.raises(ApiUnreachable, match=f"watch {PODS}"):
        await pending
    await proxy.until(lambda: proxy.open == 0)


def test_the_documented_bounds_are_the_code_s():
    doc = (Path(__file__).parents[2] / "docs" / "limits.md").read_text()
    assert kubeclient.MAX_BODY == 64 << 20
    assert "64 MiB (`MAX_BODY`): a page of 500 objects at 128 KiB each" in doc
    client = HttpClient("http://127.0.0.1:1")
    assert f"{client.max_idle} (`max_idle`), each for {client.idle_seconds:g} s" in doc
