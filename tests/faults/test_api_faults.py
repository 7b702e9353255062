"""The Kubernetes API failing during ADD and DEL, with the daemon and the API double.

The pod is in the daemon's watch cache, so an ADD needs the API only for
the network-status write: whatever the API does, the ADD answers ok with
the pod attached, the status is kept pending (and lands once the API is
back, where it can come back), and DEL never needs the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from multihome.cluster.source import STATUS_ANNOTATION
from multihome.engine import statuswrites
from multihome.testing import leaks
from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.gate import wait_for
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns


class Cluster:
    """The API double, a daemon watching it, and a world whose pods live in the API."""

    def __init__(self, lab: Lab, stack: ExitStack, tmp: Path) -> None:
        self.api_context: AbstractContextManager[ApiServerDouble] = run_in_thread(tokens=["t0k3n"])
        self.api = self.api_context.__enter__()
        stack.callback(self.stop_api)
        kubeconfig = self.api.write_kubeconfig(tmp / "kubeconfig")
        config = {
            "kubeconfig": str(kubeconfig),
            "nodeName": "node1",
            "requestTimeoutSeconds": 8,  # an ADD waits 2 s for its status write
        }
        self.daemon = stack.enter_context(DaemonProcess(config=config))
        self.world = World(lab, mode="shim", socket_dir=self.daemon.socket_dir)
        del self.world.config["manifestDir"]
        self.cache_dir = self.world.cni_dir / "multihome"
        self.stopped = False

    def pod(self, name: str) -> Sandbox:
        pod = self.world.pod(name)
        doc = json.loads((self.world.manifests / f"pod-default-{name}.json").read_text())
        doc["spec"]["nodeName"] = "node1"
        pod.uid = self.api.create(doc)["metadata"]["uid"]
        wait_for("the watch cache", lambda: self.cached(name))
        return pod

    def cached(self, name: str) -> bool:
        return bool(self.daemon.info()["kube"]["pods"] >= int(name[-1]))

    def status(self, pod: Sandbox) -> str | None:
        written = self.api.get("pods", namespace="default", name=pod.pod) or {}
        value = (written.get("metadata", {}).get("annotations") or {}).get(STATUS_ANNOTATION)
        return value if isinstance(value, str) else None

    def stop_api(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.api_context.__exit__(None, None, None)


@pytest.fixture
def cluster(lab: Lab, tmp_path: Path) -> Iterator[Cluster]:
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    with ExitStack() as stack:
        yield Cluster(lab, stack, tmp_path)


def fail_5xx(c: Cluster) -> Callable[[], None] | None:
    c.api.fail_next(100_000, code=503)
    return None


def slow(c: Cluster) -> Callable[[], None] | None:
    c.api.set_latency(4000)  # beyond the ADD's status budget
    return lambda: c.api.set_latency(0)


def unauthorized(c: Cluster) -> Callable[[], None] | None:
    c.api.set_tokens("another")
    return lambda: c.api.set_tokens("t0k3n")


def down(c: Cluster) -> Callable[[], None] | None:
    c.stop_api()
    return None


FAULTS: dict[str, Callable[[Cluster], Callable[[], None] | None]] = {
    "5xx": fail_5xx,
    "slow": slow,
    "401": unauthorized,
    "down": down,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_add_and_del_while_the_api_fails(cluster: Cluster, fault: str) -> None:
    world = cluster.world
    before = leaks.baseline(world.lab)
    first, second = cluster.pod("web1"), cluster.pod("web2")
    recover = FAULTS[fault](cluster)

    world.add(first)
    world.add(second)

    assert "eth0" in world.lab.links(first.netns)
    assert statuswrites.pending_ids(cluster.cache_dir) == sorted(
        [first.container_id, second.container_id]
    )
    world.delete(second)  # DEL never needs the API
    leaks.assert_clean(world.leftovers(second, before).own())
    if recover is not None:
        recover()
        wait_for("the status to land", lambda: cluster.status(first) is not None)
        assert [s["interface"] for s in json.loads(cluster.status(first) or "")] == ["eth0"]
        wait_for("no status pending", lambda: not statuswrites.pending_ids(cluster.cache_dir))
        assert cluster.status(second) is None
    world.delete(first)
    for pod in (first, second):
        leaks.assert_clean(world.leftovers(pod, before))
    assert cluster.daemon.info()["residentMemoryBytes"] < 50 * 2**20


def test_add_after_the_watches_expire(cluster: Cluster) -> None:
    world = cluster.world
    before = leaks.baseline(world.lab)
    cluster.api.compact()
    cluster.api.close_watches()  # they resume from a version the API forgot: 410, relist

    pod = cluster.pod("web1")
    world.add(pod)

    # The daemon's ADD answers first; its writer sends the status right after.
    wait_for("the status to land", lambda: cluster.status(pod) is not None)
    wait_for("no status pending", lambda: not statuswrites.pending_ids(cluster.cache_dir))
    world.delete(pod)
    leaks.assert_clean(world.leftovers(pod, before))
