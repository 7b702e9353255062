"""The daemon's HTTP APIs in process, with fake plugins: no root, no namespaces.

The daemon listens on a real unix socket in a temporary directory and is
asked over it with aiohttp's client.  Plugins are `FakeExec` callables; a
plugin that must stay "running" waits on an event the test sets, so every
ordering is forced, never timed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cni.fakeexec import Call, FakeExec
from multihome.daemon import logs
from multihome.daemon.config import DaemonConfig
from multihome.daemon.exposition import Family
from multihome.daemon.server import Daemon, DaemonError
from multihome.engine.cache import AttachmentCache
from multihome.testing.apiserver import ApiServerDouble

RESULT_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/x"}],
    "ips": [{"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}],
}


@pytest.fixture
def tmp() -> Iterator[Path]:
    # Not tmp_path: a unix socket path holds at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="mht-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Node:
    """A daemon in this process, its fake plugins and a client for its socket."""

    def __init__(
        self,
        tmp: Path,
        fake: FakeExec,
        daemon_config: dict[str, Any],
        source: KubeSource | None = None,
    ) -> None:
        self.tmp = tmp
        self.fake = fake
        config = {"socketDir": str(tmp / "s"), "cniDir": str(tmp / "cni"), **daemon_config}
        self.daemon = Daemon(
            DaemonConfig.parse(json.dumps(config), environ={}),
            executor=fake,
            source=source,
            allow_non_root=True,
        )

    @property
    def socket(self) -> str:
        return self.daemon.config.socket_path

    def netconf(self, version: str = "0.4.0", cluster: str = "cluster") -> dict[str, Any]:
        return {
            "cniVersion": version,
            "name": "multus-cni-network",
            "type": "multihome-shim",
            "binDir": "/fake",
            "delegates": [{"cniVersion": "0.4.0", "name": "cluster", "type": cluster}],
        }

    def body(self, command: str, config: dict[str, Any] | None = None, **env: str) -> bytes:
        stdin = json.dumps(config or self.netconf()).encode()
        full = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": "/run/netns/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/fake",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            **env,
        }
        return json.dumps({"env": full, "config": base64.b64encode(stdin).decode()}).encode()

    async def call(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connector = aiohttp.UnixConnector(path=self.socket)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(method, f"http://multihome{path}", data=body, headers=headers) as r,
        ):
            return r.status, dict(r.headers), await r.read()


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def node(tmp: Path) -> AsyncIterator[NodeFactory]:
    started: list[Node] = []

    async def make(fake: FakeExec | None = None, **daemon_config: Any) -> Node:
        fake = fake or FakeExec(
            {"cluster": lambda call: RESULT_040 if call.command == "ADD" else None}
        )
        made = Node(tmp, fake, daemon_config)
        await made.daemon.start()
        started.append(made)
        return made

    yield make
    for made in started:
        await made.daemon.stop()


class Gate:
    """A plugin whose ADD runs until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def __call__(self, call: Call) -> Any:
        if call.command != "ADD":
            return None
        self.entered.set()
        await self.open.wait()
        return RESULT_040


# -- multihome's shim API ------------------------------------------------------------------


async def test_shim_add_answers_what_the_shim_prints(node: NodeFactory) -> None:
    n = await node()
    status, headers, body = await n.call(
        "POST", "/shim/v1/cni", n.body("ADD"), **{"X-Multihome-Request-Id": "r1"}
    )
    assert (status, headers["X-CNI-Exit-Code"]) == (200, "0")
    assert body.endswith(b"}\n")
    # In the runtime's version, 0.4.0, written as Go writes it (with "dns": {}).
    assert json.loads(body) == {**RESULT_040, "dns": {}}

    status, headers, body = await n.call("POST", "/shim/v1/cni", n.body("DEL"))
    assert (status, headers["X-CNI-Exit-Code"], body) == (200, "0", b"")
    assert n.fake.commands() == [("cluster", "ADD"), ("cluster", "DEL")]


async def test_the_answer_goes_out_before_the_adds_event_and_status_write(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are background work the ADD leaves: woken at once, they would build and
    send their requests before the request's task wrote the answer."""
    from multihome.cluster.events import EventRecorder
    from multihome.daemon import httpserver
    from multihome.daemon.statuswriter import StatusWriter

    order: list[str] = []
    real_send, real_record, real_one = (
        httpserver._Connection.send,
        EventRecorder.record,
        StatusWriter._one,
    )

    async def send(connection: httpserver._Connection, data: bytes) -> None:
        await real_send(connection, data)
        if b"X-CNI-Exit-Code: 0" in data:
            order.append("answer")

    def record(recorder: EventRecorder, *args: Any, **kw: Any) -> None:
        order.append("event")
        real_record(recorder, *args, **kw)

    async def one(writer: StatusWriter, key: Any) -> None:
        order.append("status")
        await real_one(writer, key)

    monkeypatch.setattr(httpserver._Connection, "send", send)
    monkeypatch.setattr(EventRecorder, "record", record)
    monkeypatch.setattr(StatusWriter, "_one", one)
    async with ApiServerDouble() as api:
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"namespace": "default", "name": "web"},
                "spec": {"nodeName": "n1"},
            }
        )
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        async with KubeSource(KubeConfig(kubeconfig=str(kubeconfig), node_name="n1")) as source:
            assert await source.wait_ready(30)
            fake = FakeExec({"cluster": lambda call: RESULT_040 if call.command == "ADD" else None})
            node = Node(tmp, fake, {}, source=source)
            await node.daemon.start()
            try:
                status, _, _ = await node.call("POST", "/shim/v1/cni", node.body("ADD"))
                assert status == 200
                await api.until(
                    lambda: api.count("patch") >= 1 and api.count("create", "events") >= 1
                )
            finally:
                await node.daemon.stop()
    assert order[0] == "answer", order
    assert sorted(order[1:]) == ["event", "status"]


async def test_errors_come_in_the_runtime_version_with_exit_code_1(node: NodeFactory) -> None:
    n = await node()
    config = n.netconf(version="0.3.1")
    del config["delegates"]
    status, headers, body = await n.call("POST", "/shim/v1/cni", n.body("ADD", config))
    assert (status, headers["X-CNI-Exit-Code"]) == (400, "1")
    error = json.loads(body)
    assert (error["cniVersion"], error["code"]) == ("0.3.1", 7)
    assert "clusterNetwork" in error["details"]


async def test_a_malformed_request_is_a_cni_error(node: NodeFactory) -> None:
    n = await node()
    status, headers, body = await n.call("POST", "/shim/v1/cni", b'{"env": [], "config": 1}')
    assert (status, headers["X-CNI-Exit-Code"]) == (400, "1")
    assert json.loads(body)["code"] == 6
    _, _, body = await n.call("POST", "/shim/v1/cni", b'{"env": {}, "config": "!!"}')
    assert "not base64" in json.loads(body)["msg"]


async def test_a_request_over_the_size_limit_is_refused_with_a_cni_error(
    node: NodeFactory,
) -> None:
    n = await node(maxRequestBytes=2048)
    status, headers, body = await n.call("POST", "/shim/v1/cni", b" " * 4096)
    assert (status, headers["X-CNI-Exit-Code"]) == (413, "1")
    error = json.loads(body)
    assert "too large" in error["msg"]
    assert "maxRequestBytes" in error["details"]


async def test_the_daemon_file_overrides_each_request(node: NodeFactory) -> None:
    n = await node(binDir="/host/bin")
    status, _, _ = await n.call("POST", "/shim/v1/cni", n.body("ADD"))
    assert status == 200
    assert n.fake.calls[0].path == "/host/bin/cluster"


async def test_a_late_add_is_cancelled_rolled_back_and_answered_with_code_11(
    node: NodeFactory,
) -> None:
    gate = Gate()  # never opened: the ADD can only end by its deadline
    # 1 s, not less: the deadline must fall after the ADD reached the gate, and
    # on a loaded 2-core machine the way there took more than 0.2 s.
    n = await node(FakeExec({"cluster": gate}), requestTimeoutSeconds=1.0)
    status, headers, body = await n.call("POST", "/shim/v1/cni", n.body("ADD"))
    assert (status, headers["X-CNI-Exit-Code"]) == (503, "1")
    error = json.loads(body)
    assert error["code"] == 11
    assert "ADD of pod default/web did not finish within 1 s" in error["msg"]
    assert "removed" in error["details"]
    assert n.fake.commands() == [("cluster", "ADD"), ("cluster", "DEL")]
    assert AttachmentCache(n.tmp / "cni" / "multihome").container_ids() == []


async def test_shutdown_finishes_what_runs_and_refuses_what_comes(node: NodeFactory) -> None:
    gate = Gate()
    n = await node(FakeExec({"cluster": gate}))
    in_flight = asyncio.create_task(n.call("POST", "/shim/v1/cni", n.body("ADD")))
    await gate.entered.wait()

    n.daemon.shut_down()

    status, _, _ = await n.call("GET", "/readyz")
    assert status == 500
    status, headers, body = await n.call(
        "POST", "/shim/v1/cni", n.body("ADD", CNI_CONTAINERID="c2")
    )
    assert (status, headers["X-CNI-Exit-Code"]) == (503, "1")
    assert json.loads(body)["msg"] == "the multihome daemon is shutting down"
    stopping = asyncio.create_task(n.daemon.stop())
    gate.open.set()
    status, headers, body = await in_flight
    assert (status, headers["X-CNI-Exit-Code"]) == (200, "0")
    assert json.loads(body)["ips"][0]["address"] == "10.1.0.2/24"
    await stopping
    assert not os.path.exists(n.socket)


# -- upstream Multus' thick API ------------------------------------------------------------


async def test_multus_cni_api_answers_result_1_0_0(node: NodeFactory) -> None:
    n = await node()
    status, _, body = await n.call("POST", "/cni", n.body("ADD"))
    assert status == 200
    assert body.startswith(b'{"Result":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"')
    assert json.loads(body)["Result"]["ips"] == [
        {"interface": 0, "address": "10.1.0.2/24", "gateway": "10.1.0.1"}
    ]
    status, _, body = await n.call("POST", "/cni", n.body("DEL"))
    assert (status, body) == (200, b"")


async def test_multus_cni_api_errors_are_400_with_a_cni_error(node: NodeFactory) -> None:
    n = await node()
    status, _, body = await n.call("POST", "/cni", n.body("ADD", CNI_CONTAINERID="../x"))
    assert status == 400
    error = json.loads(body)
    assert error["code"] == 4
    assert "CNI_CONTAINERID" in error["msg"]


async def test_delegate_hot_plug_is_recorded_so_the_pod_del_removes_it(
    node: NodeFactory,
) -> None:
    fake = FakeExec({"cluster": lambda c: RESULT_040 if c.command == "ADD" else None})
    fake.register("extra")
    n = await node(fake)
    assert (await n.call("POST", "/cni", n.body("ADD")))[0] == 200
    extra = {"cniVersion": "1.0.0", "name": "extra-net", "type": "extra"}
    body = json.loads(n.body("ADD", extra, CNI_IFNAME="net9"))
    body["interfaceAttributes"] = {"mac": "02:00:00:00:00:09", "cni-args": {"role": "probe"}}

    status, _, answer = await n.call("POST", "/delegate", json.dumps(body).encode())

    assert status == 200
    assert json.loads(answer)["Result"]["cniVersion"] == "1.0.0"
    [plugged] = [c for c in fake.calls if c.plugin == "extra"]
    assert plugged.env["CNI_IFNAME"] == "net9"
    assert plugged.conf["args"] == {"cni": {"role": "probe"}}
    record = AttachmentCache(n.tmp / "cni" / "multihome").load("c1")
    assert record is not None
    assert [a.ifname for a in record.attachments] == ["eth0", "net9"]

    assert (await n.call("POST", "/cni", n.body("DEL")))[0] == 200
    assert ("extra", "DEL") in fake.commands()


async def test_health_ready_and_unknown_paths(node: NodeFactory) -> None:
    n = await node()
    for method in ("GET", "POST"):
        assert (await n.call(method, "/healthz"))[0] == 200
        assert (await n.call(method, "/readyz"))[0] == 200
    assert (await n.call("GET", "/nothing-here"))[::2] == (404, b"")
    assert (await n.call("GET", "/cni"))[0] == 405


# -- status, metrics, logs, the socket ------------------------------------------------------


async def test_attachments_and_info(node: NodeFactory) -> None:
    n = await node()
    await n.call("POST", "/shim/v1/cni", n.body("ADD"))
    _, _, body = await n.call("GET", "/shim/v1/attachments")
    [entry] = json.loads(body)["attachments"]
    assert (entry["containerId"], entry["pod"]) == ("c1", "default/web")
    assert entry["networks"] == [
        {
            "network": "cluster",
            "interface": "eth0",
            "ips": ["10.1.0.2/24"],
            "mac": "02:00:00:00:00:01",
            "default": True,
            "state": "added",
        }
    ]
    _, _, body = await n.call("GET", "/shim/v1/info")
    info = json.loads(body)
    assert info["state"] == "ready"
    assert info["residentMemoryBytes"] > 0


async def test_metrics(node: NodeFactory) -> None:
    n = await node(metricsPort=0, metricsAddress="127.0.0.1")
    await n.call("POST", "/shim/v1/cni", n.body("ADD"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{n.daemon.metrics_address}/metrics") as r,
    ):
        text = await r.text()
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    for line in (
        'multihome_cni_requests_total{command="ADD",outcome="success"} 1.0',
        'multihome_network_add_duration_seconds_count{network="cluster"} 1.0',
        'multihome_delegate_duration_seconds_count{command="ADD",plugin="cluster"} 1.0',
        'multus_server_request_total{code="200",handler="/shim/v1/cni",method="POST"} 1.0',
        "multihome_cached_attachments 1.0",
        "multihome_requests_in_flight 0.0",
    ):
        assert line in text
    assert "process_resident_memory_bytes" in text
    _parses_as_exported(text, n.daemon.metrics.registry.collect())

    await n.call("POST", "/shim/v1/cni", n.body("DEL"))
    await n.call("POST", "/shim/v1/cni", n.body("ADD", CNI_CONTAINERID="!"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{n.daemon.metrics_address}/metrics") as r,
    ):
        text = await r.text()
    assert 'multihome_network_del_duration_seconds_count{network="cluster"} 1.0' in text
    assert 'multihome_cni_requests_total{command="ADD",outcome="4"} 1.0' in text


#: Read anew by each collection: their values differ between two.
_MOVING = {"process_resident_memory_bytes", "multihome_resident_memory_peak_bytes"}


def _parses_as_exported(text: str, families: Iterable[Family]) -> None:
    """prometheus-client's parser reads ``text`` as the families the registry holds."""
    exported = {f.name: f for f in families}
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed.keys() == exported.keys()
    for name, family in parsed.items():
        ours = exported[name]
        assert family.type == ours.type, name
        assert family.documentation == ours.help, name
        samples = {
            (f"{name}{suffix}", tuple(sorted((*zip(ours.labelnames, values, strict=True), *extra))))
            for suffix, values, extra, _ in ours.samples
        }
        assert {(s.name, tuple(sorted(s.labels.items()))) for s in family.samples} == samples
        if name not in _MOVING:
            values = [float(v) for *_, v in ours.samples]
            assert [s.value for s in family.samples] == values, name


async def test_probes_answer_on_the_metrics_port(node: NodeFactory) -> None:
    # deploy/kubernetes/daemonset.yaml points the kubelet's probes here.
    n = await node(metricsPort=0, metricsAddress="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(f"http://{n.daemon.metrics_address}{path}") as r:
                assert r.status == 200, path
        n.daemon.shut_down()
        async with session.get(f"http://{n.daemon.metrics_address}/readyz") as r:
            assert r.status == 500
            assert await r.text() == "shutting down\n"


def test_a_log_file_gets_the_logs_and_only_it_loads_logging_handlers(tmp_path: Path) -> None:
    # In a fresh interpreter: configure() replaces the root logger's handlers.
    probe = (
        "import json, logging, sys\n"
        "from multihome.daemon import logs\n"
        "from multihome.daemon.config import DaemonConfig\n"
        "logs.configure(DaemonConfig.parse('{}', environ={}))\n"
        "without = 'logging.handlers' in sys.modules\n"
        "config = DaemonConfig.parse(json.dumps({'logFile': sys.argv[1]}), environ={})\n"
        "logs.configure(config)\n"
        "logging.getLogger('multihome.test').warning('to the file')\n"
        "print(json.dumps(without))\n"
    )
    log_file = tmp_path / "daemon.log"
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(log_file)], capture_output=True, text=True, check=True
    )
    assert json.loads(proc.stdout) is False
    assert "to the file" in log_file.read_text()


def test_json_logs_carry_the_request() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JSONFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("multihome.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.bound(request="r1", pod="default/web", container="c1"):
            logger.info("attached %s", "net1")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "attached net1"
    assert (first["request"], first["pod"], first["container"]) == ("r1", "default/web", "c1")
    assert "request" not in second


async def test_socket_is_private_and_a_stale_one_is_replaced(tmp: Path, node: NodeFactory) -> None:
    (tmp / "s").mkdir(mode=0o755)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp / "s" / "multihome.sock"))
    stale.close()  # a daemon that died: the file stays, nobody listens

    n = await node()

    assert stat.S_IMODE(os.stat(tmp / "s").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(n.socket).st_mode) == 0o600
    second = Daemon(n.daemon.config, allow_non_root=True)
    with pytest.raises(DaemonError, match="another multihome daemon is listening"):
        await second.start()
    await second.stop()
    assert (await n.call("GET", "/healthz"))[0] == 200  # the second one did not take the path


async def test_config_generation_runs_once_serving_and_gates_readiness(
    tmp: Path, node: NodeFactory
) -> None:
    net_d = tmp / "net.d"
    net_d.mkdir()
    n = await node(cniConfigDir=str(net_d), multusAutoconfigDir=str(net_d))
    confgen = n.daemon.confgen
    assert confgen is not None
    confgen.poll_once()  # what its task does every second, without the wait
    status, _, body = await n.call("GET", "/readyz")
    assert status == 503
    assert b"config generation: waiting for a *.conf or *.conflist file" in body

    primary = {"cniVersion": "1.0.0", "name": "cluster", "type": "bridge"}
    (net_d / "10-cluster.conf").write_text(json.dumps(primary))
    confgen.poll_once()

    assert (await n.call("GET", "/readyz"))[0] == 200
    generated = json.loads((net_d / "00-multihome.conf").read_text())
    assert (generated["type"], generated["clusterNetwork"]) == (
        "multihome-shim",
        str(net_d / "10-cluster.conf"),
    )
    info = json.loads((await n.call("GET", "/shim/v1/info"))[2])
    assert info["config"]["primary"] == str(net_d / "10-cluster.conf")


async def test_without_config_keys_the_node_config_is_left_alone(node: NodeFactory) -> None:
    n = await node()
    assert n.daemon.confgen is None


async def test_a_handler_exception_is_a_cni_error_not_a_traceback(
    node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = await node()

    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("a bug in the daemon")

    monkeypatch.setattr(n.daemon, "attachments", broken)
    status, headers, body = await n.call("GET", "/shim/v1/attachments")
    assert (status, headers["X-CNI-Exit-Code"]) == (400, "1")
    error = json.loads(body)
    assert (error["code"], error["msg"]) == (
        999,
        "internal error in the multihome daemon: a bug in the daemon",
    )
    assert b"Traceback" not in body
