"""Thick mode end to end: the static shim, the daemon as a process, real namespaces.

The container runtime is played by `World` (mode "shim"), which execs
``multihome-shim``; the daemon is a child process (`DaemonProcess`).  Every
test checks the pod's namespace, the host-local store and the attachment
cache, not just exit codes.  A plugin that must stay "in the middle of an
ADD" is `multihome.testing.gate`'s: it writes a marker and waits for a
release file, and the test waits for the marker by polling with a bound,
never by sleeping a fixed time.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cni.errors import CNIError
from multihome.cni.result import Result
from multihome.testing.apiserver import run_in_thread
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.gate import Gate, wait_for
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

WAIT = 30.0  # the bound of every wait below; never reached when things work


@pytest.fixture(autouse=True)
def _shim_built() -> None:
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def assert_nothing_left(world: World, *pods: Sandbox) -> None:
    for pod in pods:
        assert set(world.lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
    assert world.cached_containers() == []
    # The host ends of the cluster network's veths go with their pods.
    assert [
        link.name
        for link in world.lab.links(None).values()
        if link.master == world.cluster_bridge and link.kind == "veth"
    ] == []


def start_shim(world: World, command: str, pod: Sandbox, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [world.shim],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**world.env(command, pod), **env},
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(world.config).encode())
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, Any]]:
    assert proc.stdout is not None
    out = proc.stdout.read()
    code = proc.wait(WAIT)
    return code, json.loads(out)


# -- the scenarios -----------------------------------------------------------------------


def test_daemon_killed_in_the_middle_of_an_add(lab: Lab, stack: ExitStack) -> None:
    first = stack.enter_context(DaemonProcess())
    world = World(lab, mode="shim", socket_dir=first.socket_dir)
    gate = Gate(world, "slow")
    stack.callback(gate.release)  # a failing test must not leave the plugin waiting
    pod = world.pod("web", "slow")
    shim = start_shim(world, "ADD", pod)
    gate.wait_held()

    first.kill()

    code, error = finish(shim)
    assert (code, error["code"]) == (1, 11)
    assert "closed the connection" in error["msg"]
    # Half attached: the cluster network and the macvlan of the dead ADD are there.
    assert {"eth0", "net1"} <= set(lab.links(pod.netns))
    gate.release()  # the plugin outlived the daemon (its own session): let it end
    stack.enter_context(DaemonProcess(socket_dir=first.socket_dir))

    result = world.add(pod)  # the runtime's retry

    assert [i.name for i in result.interfaces if i.sandbox] == ["eth0"]
    assert {"eth0", "net1"} <= set(lab.links(pod.netns))
    # The dead ADD's addresses were given back before the retry took new ones.
    assert {net: len(ips) for net, ips in world.allocations().items()} == {"cluster": 2, "slow": 1}
    assert world.cached_containers() == [pod.container_id]

    world.delete(pod)

    assert_nothing_left(world, pod)


def test_sigterm_finishes_the_add_in_flight_and_refuses_new_requests(
    lab: Lab, stack: ExitStack
) -> None:
    daemon = stack.enter_context(DaemonProcess(config={"shutdownTimeoutSeconds": 60}))
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    gate = Gate(world, "slow")
    stack.callback(gate.release)  # a failing test must not leave the plugin waiting
    pod = world.pod("web", "slow")
    late = world.pod("late", "slow")
    shim = start_shim(world, "ADD", pod)
    gate.wait_held()

    daemon.terminate()

    wait_for("/readyz to turn unready", lambda: daemon.readyz() == 500)
    with pytest.raises(CNIError) as refused:
        world.add(late)
    assert refused.value.code == 11
    assert refused.value.msg == "the multihome daemon is shutting down"
    gate.release()
    code, result = finish(shim)
    assert code == 0
    assert Result.parse(result).interfaces[-1].name == "eth0"
    assert daemon.wait(WAIT) == 0
    assert not os.path.exists(daemon.socket_path)
    assert {"eth0", "net1"} <= set(lab.links(pod.netns))  # complete, not half attached
    assert set(lab.links(late.netns)) == {"lo"}

    stack.enter_context(DaemonProcess(socket_dir=daemon.socket_dir))
    world.delete(pod)
    world.delete(late)
    assert_nothing_left(world, pod, late)


def test_fifty_concurrent_adds_then_dels(lab: Lab, stack: ExitStack) -> None:
    daemon = stack.enter_context(DaemonProcess(config={"logLevel": "info"}))
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    pods = [world.pod(f"web{i}", "nad-a") for i in range(50)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(world.add, pods))

    addresses = {ip.address for r in results for ip in r.ips if "." in ip.address}
    assert len(addresses) == 50
    for pod in pods:
        links = lab.links(pod.netns)
        assert {"eth0", "net1"} <= set(links)
        assert len(links["net1"].addresses) == 1
    assert {net: len(ips) for net, ips in world.allocations().items()} == {
        "cluster": 100,  # IPv4 and IPv6 for each pod
        "nad-a": 50,
    }
    info = daemon.info()
    print(
        f"daemon resident memory after 50 concurrent ADDs: "
        f"{info['residentMemoryBytes'] / 2**20:.1f} MiB"
    )

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(world.delete, pods))

    assert_nothing_left(world, *pods)
    print(f"after the DELs: {daemon.info()['residentMemoryBytes'] / 2**20:.1f} MiB")


def test_the_shim_with_the_daemon_down_explains_itself(stack: ExitStack) -> None:
    daemon = stack.enter_context(DaemonProcess())
    assert daemon.stop() == 0
    config = {"cniVersion": "0.4.0", "name": "n", "daemonSocketDir": daemon.socket_dir}

    proc = subprocess.run(
        [str(shim_binary())],
        input=json.dumps(config).encode(),
        env={"CNI_COMMAND": "ADD", "MULTIHOME_SHIM_TIMEOUT": "0.5"},
        capture_output=True,
        timeout=WAIT,
        check=False,
    )

    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert (error["cniVersion"], error["code"]) == ("0.4.0", 11)
    assert error["msg"] == "multihome daemon is not running"
    assert error["details"].startswith(f"no daemon answered at {daemon.socket_path} after 0.5 s")


# -- upstream Multus' thick API, byte for byte --------------------------------------------


def multus_request(socket_path: str, path: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
    """What the upstream Go shim sends (net/http client, keep-alives off); the head and body."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: dummy\r\nUser-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(payload)}\r\nContent-Type: application/json\r\n"
        "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(socket_path)
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    return head, rest


def go_shim_body(
    world: World, command: str, pod: Sandbox, config: dict[str, Any]
) -> dict[str, Any]:
    # The Go shim sends its whole environment, and the stdin as a Go []byte: base64.
    env = {**world.env(command, pod), "PATH": "/usr/sbin:/usr/bin", "HOME": "/root"}
    return {"env": env, "config": base64.b64encode(json.dumps(config).encode()).decode()}


def test_the_multus_thick_api_byte_for_byte(lab: Lab, stack: ExitStack) -> None:
    daemon = stack.enter_context(DaemonProcess(config={"socketName": "multus.sock"}))
    assert daemon.socket_path.endswith("/multus.sock")
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    pod = world.pod("web")
    config = {**world.config, "cniVersion": "0.3.1", "type": "multus-shim"}

    head, body = multus_request(daemon.socket_path, "/cni", go_shim_body(world, "ADD", pod, config))

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: application/json" in head
    answer = json.loads(body)
    assert list(answer) == ["Result"]
    assert body.startswith(b'{"Result":{"cniVersion":"1.0.0","interfaces":[')
    ip = world.host(world.cluster_subnet, 2)
    assert answer["Result"]["ips"][0]["address"] == f"{ip}/24"
    assert answer["Result"]["interfaces"][-1] == {
        "name": "eth0",
        "mac": lab.links(pod.netns)["eth0"].mac,
        "sandbox": pod.netns.path,
    }

    head, body = multus_request(daemon.socket_path, "/cni", go_shim_body(world, "DEL", pod, config))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b""
    assert_nothing_left(world, pod)

    broken = {k: v for k, v in config.items() if k != "clusterNetwork"}
    head, body = multus_request(daemon.socket_path, "/cni", go_shim_body(world, "ADD", pod, broken))
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    error = json.loads(body)
    assert (error["code"], error["cniVersion"]) == (7, "0.3.1")
    assert "cluster network" in error["msg"]

    head, body = multus_request(daemon.socket_path, "/cni", {"env": {}, "config": ""})
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(body)["msg"] == "required env variables [CNI_COMMAND] missing"

    for path in ("/healthz", "/readyz"):
        head, _ = multus_request(daemon.socket_path, path, {})
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert set(lab.links(pod.netns)) == {"lo"}


# -- the Kubernetes API double as the source -----------------------------------------------


def test_two_macvlans_with_the_api_double_cost_one_request(
    lab: Lab, stack: ExitStack, tmp_path: Path
) -> None:
    api = stack.enter_context(run_in_thread(tokens=["t0k3n"]))
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    daemon = stack.enter_context(
        DaemonProcess(config={"kubeconfig": str(kubeconfig), "nodeName": "node1"})
    )
    world = World(lab, mode="shim", socket_dir=daemon.socket_dir)
    del world.config["manifestDir"]  # the API is the source now
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    world.macvlan_nad("nad-b", master=lan, subnet=world.lan_subnet(2))
    pod = world.pod("web", "nad-a,nad-b")
    # The same manifests, created in the API instead of read from the directory.
    for path in sorted(world.manifests.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc["kind"] == "Pod":
            doc["spec"]["nodeName"] = "node1"
            pod.uid = api.create(doc)["metadata"]["uid"]
        else:
            api.create(doc)
    wait_for(
        "the daemon's watch cache",
        lambda: daemon.info()["kube"]["pods"] == 1 and daemon.info()["kube"]["nads"] == 2,
    )
    api.reset_requests()

    world.add(pod)

    # The ADD answers first; the daemon's writer sends the status right after.
    wait_for("the status write", lambda: api.count("patch", "pods/status") == 1)
    requests = {k: n for k, n in api.requests().items() if k != ("create", "events")}
    assert requests == {("patch", "pods/status"): 1}
    links = lab.links(pod.netns)
    assert {"eth0", "net1", "net2"} <= set(links)
    written = api.get("pods", namespace="default", name="web")
    assert written is not None
    status = json.loads(written["metadata"]["annotations"][STATUS_ANNOTATION])
    assert [(s["name"], s["interface"]) for s in status] == [
        ("cluster", "eth0"),
        ("default/nad-a", "net1"),
        ("default/nad-b", "net2"),
    ]
    assert status[1]["mac"] == links["net1"].mac
    assert daemon.info()["kube"]["apiRequests"]["patch"] == 1
    status_cmd = [sys.executable, "-m", "multihome", "status", "--socket", daemon.socket_path]
    listing = json.loads(subprocess.check_output([*status_cmd, "--output", "json"]))
    [entry] = [a for a in listing["attachments"] if a["containerId"] == pod.container_id]
    assert entry["pod"] == "default/web"
    assert [(n["network"], n["interface"]) for n in entry["networks"]] == [
        ("cluster", "eth0"),
        ("default/nad-a", "net1"),
        ("default/nad-b", "net2"),
    ]
    assert listing["daemon"]["source"] == "kubernetes"
    table = subprocess.check_output(status_cmd, text=True)
    assert "default/nad-b" in table
    assert links["net2"].addresses[0] in table

    world.delete(pod)

    assert_nothing_left(world, pod)
