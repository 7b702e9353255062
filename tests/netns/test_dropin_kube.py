"""Drop-in on a cluster that ran Multus: its RBAC roles, recreated pods, DELs of the unknown.

Real namespaces and plugins, the Kubernetes API played by the double with a
ClusterRole's rules: a pod gets its interfaces and its network-status under
Multus v4.0.2's role, Multus HEAD's and multihome's own, in thick mode (the
daemon's engine and watch cache in this process) and thin mode (the
``multihome-cni`` process, one GET per object).  The requests each costs are
the double's record.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cni.errors import CNIError, Code
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.networks.config import MultusConfig
from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.apiserver.roles import MULTIHOME, MULTUS_V4_0_2, ROLES, Role
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

NODE = "node-a"
WAIT = 30.0  # a bound for what must happen at once; never reached when it works
Requests = dict[tuple[str, str], int]

#: A DEL's status removal in thick mode: the source knows the role by then.
STATUS_CLEAR: dict[str, Requests] = {
    "multihome": {("patch", "pods/status"): 1},
    "multus-head": {("get", "pods"): 1, ("update", "pods/status"): 1},
    "multus-v4.0.2": {("get", "pods"): 1, ("update", "pods/status"): 1},
}
#: What the double serves for one pod's status write under each role, once the
#: source knows the role (thick) or the first time (thin: each call is a new process).
STATUS_WRITE: dict[str, Requests] = {
    "multihome": {("patch", "pods/status"): 1},
    "multus-head": {("patch", "pods/status"): 1, ("get", "pods"): 1, ("update", "pods/status"): 1},
    "multus-v4.0.2": {
        ("patch", "pods/status"): 1,
        ("get", "pods"): 1,
        ("update", "pods/status"): 1,
    },
}


def manifests(world: World) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(world.manifests.glob("*.json"))]


def load(api: ApiServerDouble, world: World, *sandboxes: Sandbox, nads: bool = True) -> None:
    """The world's NADs and these pods into the API, bound to this node; UIDs are the API's."""
    by_name = {s.pod: s for s in sandboxes}
    for obj in manifests(world):
        if obj["kind"] == "Pod":
            if obj["metadata"]["name"] not in by_name:
                continue
            obj["spec"]["nodeName"] = NODE
            by_name[obj["metadata"]["name"]].uid = api.create(obj)["metadata"]["uid"]
        elif nads:
            api.create(obj)


def kube_config(world: World) -> dict[str, Any]:
    return {k: v for k, v in world.config.items() if k != "manifestDir"}


def status_of(api: ApiServerDouble, name: str) -> list[dict[str, Any]] | None:
    stored = api.get("pods", namespace="default", name=name)
    assert stored is not None
    text = (stored["metadata"].get("annotations") or {}).get(STATUS_ANNOTATION)
    return json.loads(text) if text is not None else None


class Thick:
    """The daemon's engine and watch cache, in this process."""

    def __init__(self, world: World, api: ApiServerDouble, source: KubeSource) -> None:
        self.world, self.api, self.source = world, api, source
        self.engine = Engine(source=source)
        self.config = kube_config(world)

    async def call(self, command: str, sandbox: Sandbox) -> None:
        request = Request.from_env(
            self.world.env(command, sandbox), json.dumps(self.config).encode()
        )
        await self.engine.run(request, MultusConfig.parse(request.stdin))
        await self.source.flush()


@asynccontextmanager
async def thick(
    world: World, role: Role, *sandboxes: Sandbox, tmp_path: Path, **settings: Any
) -> AsyncIterator[Thick]:
    async with ApiServerDouble(role=role) as api:
        load(api, world, *sandboxes)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        # backoffMax an hour: v4.0.2's forbidden pod list is not retried within a test.
        settings.setdefault("backoff_max", 3600.0)
        kube = KubeConfig(kubeconfig=str(kubeconfig), node_name=NODE, **settings)
        async with KubeSource(kube) as source:
            assert await source.wait_ready(WAIT)
            watches = 1 if role is MULTUS_V4_0_2 else 2  # v4.0.2 may not watch pods
            await api.until(lambda: api.open_watches == watches, timeout=WAIT)
            api.reset_requests()
            yield Thick(world, api, source)


def assert_attached(lab: Lab, world: World, api: ApiServerDouble, sandbox: Sandbox) -> None:
    links = lab.links(sandbox.netns)
    assert set(links) == {"lo", "eth0", "net1"}
    status = status_of(api, sandbox.pod)
    assert status is not None
    assert [s["interface"] for s in status] == ["eth0", "net1"]
    for entry in status:
        link = links[entry["interface"]]
        assert entry["mac"] == link.mac
        assert entry["ips"]
        assert set(entry["ips"]) <= {a.split("/")[0] for a in link.addresses}


def one_pod(lab: Lab, mode: str = "engine") -> tuple[World, Sandbox]:
    world = World(lab, mode="thin" if mode == "thin" else "engine")
    world.macvlan_nad("nad-a", master=lab.macvlan_parent("lan"), subnet=world.lan_subnet(1))
    return world, world.pod("web", "nad-a")


# -- 1. RBAC: every role gets pods their networks ---------------------------------------


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_thick_attaches_under_each_role(lab: Lab, tmp_path: Path, role: str) -> None:
    world, sandbox = one_pod(lab)
    async with thick(world, ROLES[role], sandbox, tmp_path=tmp_path) as node:
        await node.call("ADD", sandbox)
        add = node.api.requests()
        assert_attached(lab, world, node.api, sandbox)
        node.api.reset_requests()
        await node.call("DEL", sandbox)
        delete = node.api.requests()
        assert status_of(node.api, "web") is None
    # v4.0.2 may not watch pods: the ADD reads its pod with one GET.
    lookup = {("get", "pods"): 1} if role == "multus-v4.0.2" else {}
    assert add == Counter(STATUS_WRITE[role]) + Counter(lookup) + Counter({("create", "events"): 1})
    # The source remembers the role: DEL does not try PATCH again.
    assert delete == Counter(STATUS_CLEAR[role])
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_thin_attaches_under_each_role(lab: Lab, tmp_path: Path, role: str) -> None:
    world, sandbox = one_pod(lab, "thin")
    with run_in_thread(role=ROLES[role]) as api:
        load(api, world, sandbox)
        config = {**kube_config(world), "kubeconfig": str(api.write_kubeconfig(tmp_path / "kc"))}
        api.reset_requests()
        world.call("ADD", sandbox, config=config)
        add = api.requests()
        assert_attached(lab, world, api, sandbox)
        api.reset_requests()
        world.call("DEL", sandbox, config=config)
        delete = api.requests()
        assert status_of(api, "web") is None
    reads = {("get", "pods"): 1, ("get", "network-attachment-definitions"): 1}
    assert add == Counter(reads) + Counter(STATUS_WRITE[role]) + Counter({("create", "events"): 1})
    # A DEL reads nothing but what the status write needs.
    assert delete == Counter(STATUS_WRITE[role])
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


# -- 2. A recreated pod keeps its network-status --------------------------------------


def recreate(api: ApiServerDouble, world: World) -> Sandbox:
    """The StatefulSet controller's part: pod web deleted, created again with a new UID."""
    api.delete("pods", namespace="default", name="web")
    new = world.pod("web", "nad-a")  # a new sandbox: new netns, container ID
    load(api, world, new, nads=False)
    return new


def assert_untouched(api: ApiServerDouble, new: Sandbox, status: Any, events: int) -> None:
    assert status_of(api, "web") == status
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None and stored["metadata"]["uid"] == new.uid
    on_new = [e for e in api.events() if e["involvedObject"].get("uid") == new.uid]
    assert len(on_new) == events


async def test_thick_del_of_the_old_sandbox_keeps_the_new_pods_status(
    lab: Lab, tmp_path: Path
) -> None:
    world, old = one_pod(lab)
    async with thick(world, MULTIHOME, old, tmp_path=tmp_path) as node:
        await node.call("ADD", old)
        new = recreate(node.api, world)
        await node.source.pods.until(lambda: _cached_uid(node.source) == new.uid, timeout=WAIT)
        await node.call("ADD", new)
        status = status_of(node.api, "web")
        assert status is not None
        on_new = len([e for e in node.api.events() if e["involvedObject"].get("uid") == new.uid])

        node.api.reset_requests()
        await node.call("DEL", old)
        # The watch knows that incarnation is gone: not even a request.
        assert node.api.requests() == Counter()
        assert_untouched(node.api, new, status, on_new)
        assert set(lab.links(old.netns)) == {"lo"}

        # A late ADD for the old sandbox is refused before anything runs or is written.
        with pytest.raises(CNIError) as caught:
            await node.call("ADD", old)
        assert caught.value.code == Code.INVALID_ENV
        assert_untouched(node.api, new, status, on_new)
        assert set(lab.links(old.netns)) == {"lo"}
        await node.call("DEL", new)
    assert world.allocations() == {}


def _cached_uid(source: KubeSource) -> str:
    cached = source.cached_pod("default", "web")
    return str((cached or {}).get("metadata", {}).get("uid", ""))


# Under Multus v4.0.2's role the status goes by GET + PUT, whose UID check is the source's own.
@pytest.mark.parametrize("role", ["multihome", "multus-v4.0.2"])
def test_thin_del_of_the_old_sandbox_keeps_the_new_pods_status(
    lab: Lab, tmp_path: Path, role: str
) -> None:
    world, old = one_pod(lab, "thin")
    with run_in_thread(role=ROLES[role]) as api:
        load(api, world, old)
        config = {**kube_config(world), "kubeconfig": str(api.write_kubeconfig(tmp_path / "kc"))}
        world.call("ADD", old, config=config)
        new = recreate(api, world)
        world.call("ADD", new, config=config)
        status = status_of(api, "web")
        assert status is not None
        on_new = len([e for e in api.events() if e["involvedObject"].get("uid") == new.uid])

        world.call("DEL", old, config=config)
        assert_untouched(api, new, status, on_new)
        assert set(lab.links(old.netns)) == {"lo"}

        with pytest.raises(CNIError) as caught:
            world.call("ADD", old, config=config)
        assert caught.value.code == Code.INVALID_ENV
        assert_untouched(api, new, status, on_new)
        world.call("DEL", new, config=config)
    assert world.allocations() == {}


# -- 3. A DEL never waits for a pod ----------------------------------------------------


async def test_thick_del_without_a_record_deletes_the_cluster_network_at_once(
    lab: Lab, tmp_path: Path
) -> None:
    world, sandbox = one_pod(lab)
    # podWait an hour: a DEL that waited for the pod would hit the test's bound instead.
    async with thick(world, MULTIHOME, sandbox, tmp_path=tmp_path, pod_wait=3600.0) as node:
        await node.call("ADD", sandbox)
        (world.cni_dir / "multihome" / f"{sandbox.container_id}.json").unlink()  # record lost
        node.api.delete("pods", namespace="default", name="web")
        await node.source.pods.until(lambda: _cached_uid(node.source) == "", timeout=WAIT)
        node.api.reset_requests()
        async with asyncio.timeout(WAIT):
            await node.call("DEL", sandbox)
        assert node.api.requests() == Counter()  # no pod read, no status to clear
    # The cluster network, which the configuration names, is gone with its lease;
    # net1 came from the pod's annotation, which only the lost record knew.
    assert set(lab.links(sandbox.netns)) == {"lo", "net1"}
    assert "cluster" not in world.allocations()


def test_thin_del_without_a_record_reads_no_pod(lab: Lab, tmp_path: Path) -> None:
    world = World(lab, mode="thin")
    sandbox = world.pod("gone")  # never in the API
    with run_in_thread(role=MULTIHOME) as api:
        config = {**kube_config(world), "kubeconfig": str(api.write_kubeconfig(tmp_path / "kc"))}
        world.call("DEL", sandbox, config=config)
        # One status write that finds no pod (404): no GET, no wait.
        assert api.requests() == Counter({("patch", "pods/status"): 1})
    assert world.allocations() == {}
