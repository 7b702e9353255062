"""The daemon's socket under hostile clients: slow senders and deep nesting.

In process, with fake plugins: the daemon listens on a real unix socket in
a temporary directory.  Slow clients must be cut off (their connections
closed by the daemon, not by the test), and no request gets an HTTP 500.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from multihome.cni.fakeexec import FakeExec
from multihome.daemon.config import DaemonConfig
from multihome.daemon.server import Daemon

WAIT = 30.0


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="mhb-", dir="/tmp"))
    config = {"socketDir": str(root / "s"), "cniDir": str(root / "cni")}
    made = Daemon(
        DaemonConfig.parse(json.dumps(config), environ={}),
        executor=FakeExec({}),
        allow_non_root=True,
        read_timeout=0.2,
    )
    await made.start()
    try:
        yield made
    finally:
        await made.stop()
        shutil.rmtree(root, ignore_errors=True)


async def closed_by_daemon(path: str, sent: bytes) -> bool:
    """Send ``sent`` and then nothing; True once the daemon closes the connection."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            while await reader.read(65536):
                pass  # an answer (a 4xx, say) may come before the close
        return True
    finally:
        writer.close()


async def test_slow_clients_are_cut_off(daemon: Daemon) -> None:
    path = daemon.config.socket_path
    half_head = b"POST /shim/v1/cni HTTP/1.1\r\nHost: x\r\nContent-Le"
    half_body = b"POST /shim/v1/cni HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    clients = [closed_by_daemon(path, b"") for _ in range(20)]
    clients += [closed_by_daemon(path, half_head) for _ in range(20)]
    clients += [closed_by_daemon(path, half_body) for _ in range(20)]

    assert all(await asyncio.gather(*clients))
    assert daemon.deadlines.expired >= 40  # the body's 20 are answered 5, then closed idle
    # And the daemon still serves.
    status, _, _ = await call(path, "/healthz", b"")
    assert status == 200


async def call(path: str, route: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    connector = aiohttp.UnixConnector(path=path)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"http://multihome{route}", data=body) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.read()


@pytest.mark.parametrize("route", ["/shim/v1/cni", "/cni"])
async def test_deep_nesting_is_a_decode_error_not_a_500(daemon: Daemon, route: str) -> None:
    stdin = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/x",
    }
    body = json.dumps({"env": env, "config": base64.b64encode(stdin).decode()}).encode()

    status, headers, answer = await call(daemon.config.socket_path, route, body)

    assert status == 400
    error = json.loads(answer)
    assert error["code"] == 6  # decoding failed: permanent, not 11 "try again"
    assert "nests more than" in error["msg"]
    if route == "/shim/v1/cni":
        assert headers["X-CNI-Exit-Code"] == "1"
