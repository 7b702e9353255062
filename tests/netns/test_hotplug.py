"""Hot-plug: running pods follow their networks annotation (docs/hotplug.md).

Real namespaces and plugins (bridge for the cluster network, macvlan with
host-local or static IPAM), the API played by the double, the daemon's
engine, watch cache and hot-plug controller in this process.  After every
step the namespace's links and addresses, host-local's leases, the record
and the pod's network-status are checked against each other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cluster.source import STATUS_ANNOTATION
from multihome.cni.request import Request
from multihome.daemon.hotplug import HotplugController
from multihome.engine import locks
from multihome.engine.cache import AttachmentCache
from multihome.engine.engine import Engine
from multihome.networks.config import MultusConfig
from multihome.networks.selection import NETWORKS_ANNOTATION
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

NODE = "node-a"
WAIT = 30.0  # a bound for what must happen at once; never reached when it works


class Node:
    """One node's daemon parts: engine, watch cache, controller (not running unless started)."""

    def __init__(self, world: World, api: ApiServerDouble, source: KubeSource) -> None:
        self.world, self.api, self.source = world, api, source
        self.engine = Engine(source=source)
        self.cache = AttachmentCache(world.cni_dir / "multihome")
        self.controller = self.new_controller()

    def new_controller(self) -> HotplugController:
        return HotplugController(
            self.engine, cache_dirs=lambda: [str(self.cache.directory)], resync=3600.0
        )

    async def call(self, command: str, sandbox: Sandbox) -> None:
        config = {k: v for k, v in self.world.config.items() if k != "manifestDir"}
        request = Request.from_env(self.world.env(command, sandbox), json.dumps(config).encode())
        await self.engine.run(request, MultusConfig.parse(request.stdin))
        await self.source.flush()

    async def create_nad(self, name: str) -> None:
        """Create the NAD in the API; wait until the watch cache has it."""
        path = self.world.manifests / f"nad-default-{name}.json"
        self.api.create(json.loads(path.read_text()))

        def cached() -> bool:
            return self.source.cached_nad("default", name) is not None

        assert await self.source.nads.until(cached, timeout=WAIT)

    async def annotate(self, sandbox: Sandbox, networks: Any) -> str:
        """Set (None: remove) the pod's networks annotation; wait until the cache has it."""
        value = networks if networks is None or isinstance(networks, str) else json.dumps(networks)
        pod = self.api.get("pods", namespace="default", name=sandbox.pod)
        assert pod is not None
        annotations = pod["metadata"].setdefault("annotations", {})
        if value is None:
            annotations.pop(NETWORKS_ANNOTATION, None)
        else:
            annotations[NETWORKS_ANNOTATION] = value
        self.api.update(pod)

        def cached() -> bool:
            got = self.source.cached_pod("default", sandbox.pod)
            return (((got or {}).get("metadata") or {}).get("annotations") or {}).get(
                NETWORKS_ANNOTATION
            ) == value

        assert await self.source.pods.until(cached, timeout=WAIT)
        return value or ""

    async def sync(self) -> None:
        await self.controller.sync_all()
        await self.source.flush()

    def status(self, sandbox: Sandbox) -> list[dict[str, Any]]:
        stored = self.api.get("pods", namespace="default", name=sandbox.pod)
        assert stored is not None
        text = (stored["metadata"].get("annotations") or {}).get(STATUS_ANNOTATION)
        return json.loads(text) if text else []

    def events(self, reason: str) -> list[str]:
        return [
            str(e.get("message") or e.get("note"))
            for e in self.api.events()
            if e.get("reason") == reason
        ]

    def check(self, lab: Lab, sandbox: Sandbox, expected: dict[str, str]) -> None:
        """The namespace, the record, the leases and network-status all say ``expected``
        (interface -> network), besides eth0 on the cluster network."""
        record = self.cache.load(sandbox.container_id)
        assert record is not None
        held = {a.ifname: a.network for a in record.attachments}
        assert held == {"eth0": "cluster", **expected}
        links = lab.links(sandbox.netns)
        assert set(links) == {"lo", "eth0", *expected}
        status = self.status(sandbox)
        assert [s["interface"] for s in status] == [a.ifname for a in record.attachments]
        for entry in status:
            assert entry["name"] == held[entry["interface"]]
            link = links[entry["interface"]]
            assert entry["mac"] == link.mac
            assert set(entry["ips"]) == {a.split("/")[0] for a in link.addresses}
        leases = self.world.allocations()
        for network in ("nad-a", "nad-b"):
            count = sum(1 for n in expected.values() if n == f"default/{network}")
            assert len(leases.get(network, set())) == count, (network, leases)


@asynccontextmanager
async def node(world: World, *sandboxes: Sandbox, tmp_path: Path) -> AsyncIterator[Node]:
    async with ApiServerDouble() as api:
        names = {s.pod: s for s in sandboxes}
        for path in sorted(world.manifests.glob("*.json")):
            obj = json.loads(path.read_text())
            if obj["kind"] == "Pod" and obj["metadata"]["name"] in names:
                obj["spec"]["nodeName"] = NODE
                names[obj["metadata"]["name"]].uid = api.create(obj)["metadata"]["uid"]
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        kube = KubeConfig(kubeconfig=str(kubeconfig), node_name=NODE)
        async with KubeSource(kube) as source:
            assert await source.wait_ready(WAIT)
            yield Node(world, api, source)


def lans(lab: Lab, tmp: World) -> str:
    """The NADs of these tests, all on one LAN bridge; its name."""
    parent = lab.macvlan_parent("lan")
    tmp.macvlan_nad("nad-a", master=parent, subnet=tmp.lan_subnet(1))
    tmp.macvlan_nad("nad-b", master=parent, subnet=tmp.lan_subnet(2))
    tmp.macvlan_nad("nad-s", master=parent, static=True)
    tmp.macvlan_nad("nad-bad", master="nonexistent0", subnet=tmp.lan_subnet(3))
    tmp.nad(
        "nad-noplugin",
        {"cniVersion": "1.0.0", "name": "nad-noplugin", "type": "multihome-no-such-plugin"},
    )
    return parent


async def test_add_remove_and_change(lab: Lab, tmp_path: Path) -> None:
    world = World(lab)
    lans(lab, world)
    sandbox = world.pod("web", "nad-a")
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        for nad in ("nad-a", "nad-b", "nad-s"):
            await n.create_nad(nad)
        await n.call("ADD", sandbox)
        n.check(lab, sandbox, {"net1": "default/nad-a"})

        # Add a network: net1 keeps its name, the new one gets the next.  Not
        # while another command holds the sandbox's lock.
        await n.annotate(sandbox, "nad-a,nad-b")
        async with locks.container_lock(n.cache.directory, sandbox.container_id):
            assert await n.controller.sync(n.cache, sandbox.container_id) == "busy"
        n.check(lab, sandbox, {"net1": "default/nad-a"})
        await n.sync()
        n.check(lab, sandbox, {"net1": "default/nad-a", "net2": "default/nad-b"})
        assert any("net2" in m and "default/nad-b" in m for m in n.events("AddedInterface"))

        # Remove the first: the other keeps net2.
        await n.annotate(sandbox, "nad-b")
        await n.sync()
        n.check(lab, sandbox, {"net2": "default/nad-b"})
        assert any("net1 (default/nad-a)" in m for m in n.events("RemovedInterface"))

        # A static address, then another one: the interface is re-plugged with it.
        subnet = world.lan_subnet(4)
        first, second = world.host(subnet, 10) + "/24", world.host(subnet, 11) + "/24"
        wish = [{"name": "nad-b"}, {"name": "nad-s", "interface": "lan0", "ips": [first]}]
        await n.annotate(sandbox, wish)
        await n.sync()
        n.check(lab, sandbox, {"net2": "default/nad-b", "lan0": "default/nad-s"})
        assert lab.links(sandbox.netns)["lan0"].addresses == [first]
        wish[1]["ips"] = [second]
        await n.annotate(sandbox, wish)
        await n.sync()
        n.check(lab, sandbox, {"net2": "default/nad-b", "lan0": "default/nad-s"})
        assert lab.links(sandbox.netns)["lan0"].addresses == [second]

        # Nothing to do: a pass changes nothing and writes nothing.
        n.api.reset_requests()
        await n.sync()
        assert not n.api.requests()

        await n.call("DEL", sandbox)
        assert set(lab.links(sandbox.netns)) == {"lo"}
        assert world.allocations() == {}


async def test_pod_without_annotation_and_quick_edits(lab: Lab, tmp_path: Path) -> None:
    """The watch drives it: two edits in a row end in the last one's state."""
    world = World(lab)
    lans(lab, world)
    sandbox = world.pod("bare")
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        for nad in ("nad-a", "nad-b"):
            await n.create_nad(nad)
        await n.call("ADD", sandbox)
        n.check(lab, sandbox, {})
        task = asyncio.create_task(n.controller.run())
        try:
            assert await n.controller.until(lambda: n.controller.passes >= 1, timeout=WAIT)
            await n.annotate(sandbox, "nad-a")
            last = await n.annotate(sandbox, [{"name": "nad-b", "interface": "b0"}])
            seen = n.controller.seen
            done = await n.controller.until(
                lambda: getattr(seen.get(sandbox.container_id), "annotation", None) == last,
                timeout=WAIT,
            )
            assert done and seen[sandbox.container_id].outcome == "converged"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await n.source.flush()
        n.check(lab, sandbox, {"b0": "default/nad-b"})

        # Removing the annotation removes what it asked for.
        await n.annotate(sandbox, None)
        await n.sync()
        n.check(lab, sandbox, {})
        await n.call("DEL", sandbox)
        assert world.allocations() == {}


async def test_failing_network_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    world = World(lab)
    lans(lab, world)
    sandbox = world.pod("web", "nad-a")
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        for nad in ("nad-a", "nad-b", "nad-bad", "nad-noplugin"):
            await n.create_nad(nad)
        await n.call("ADD", sandbox)
        before = n.status(sandbox)
        # Two new networks, one of which fails: neither stays (all or nothing).
        await n.annotate(sandbox, "nad-a,nad-b,nad-bad")
        await n.sync()
        n.check(lab, sandbox, {"net1": "default/nad-a"})
        assert n.status(sandbox) == before
        seen = n.controller.seen[sandbox.container_id]
        assert seen.outcome == "failed"
        failed = n.events("HotplugFailed")
        assert failed and "not met" in failed[-1] and "nad-bad" in failed[-1]
        assert "net1 (default/nad-a)" in failed[-1]  # what is really attached

        # A plugin that is not installed: the pre-flight stops the edit before
        # anything is removed.
        await n.annotate(sandbox, "nad-b,nad-noplugin")
        await n.sync()
        n.check(lab, sandbox, {"net1": "default/nad-a"})
        assert "multihome-no-such-plugin" in n.events("HotplugFailed")[-1]

        # A missing NAD is the same validation as at pod start: nothing runs.
        await n.annotate(sandbox, "nad-a,nad-missing")
        await n.sync()
        n.check(lab, sandbox, {"net1": "default/nad-a"})
        assert n.controller.seen[sandbox.container_id].outcome == "invalid"
        assert "nad-missing" in n.events("HotplugFailed")[-1]
        await n.call("DEL", sandbox)
        assert world.allocations() == {}


async def test_restart_between_edit_and_resync(lab: Lab, tmp_path: Path) -> None:
    """The edit lands while no controller runs; a new daemon's first pass converges."""
    world = World(lab)
    lans(lab, world)
    sandbox = world.pod("web", "nad-a")
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        for nad in ("nad-a", "nad-b"):
            await n.create_nad(nad)
        await n.call("ADD", sandbox)
        await n.source.stop()  # the daemon goes away
        pod = n.api.get("pods", namespace="default", name="web")
        assert pod is not None
        pod["metadata"]["annotations"][NETWORKS_ANNOTATION] = "nad-b"
        n.api.update(pod)
        # The new daemon: a new watch cache, engine and controller over the same records.
        kube = KubeConfig(kubeconfig=str(tmp_path / "kubeconfig"), node_name=NODE)
        async with KubeSource(kube) as source:
            assert await source.wait_ready(WAIT)
            again = Node(world, n.api, source)
            await again.sync()
            again.check(lab, sandbox, {"net2": "default/nad-b"})
            await again.call("DEL", sandbox)
    assert world.allocations() == {}


async def test_daemon_runs_it_when_configured(lab: Lab, tmp_path: Path) -> None:
    """``hotplug: true``: the daemon's watch drives the controller; off by default."""
    from multihome.daemon.config import DaemonConfig
    from multihome.daemon.server import Daemon

    world = World(lab)
    lans(lab, world)
    sandbox = world.pod("web")
    sockets = lab.tmpdir()  # in /tmp: a socket path holds at most 107 bytes
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        await n.create_nad("nad-a")
        await n.call("ADD", sandbox)
        off = Daemon(
            DaemonConfig.parse(json.dumps({"socketDir": str(sockets / "off")})), source=n.source
        )
        await off.start()
        try:
            await off.admission.serving.wait()
            assert off.hotplug is None
        finally:
            await off.stop()
        settings = {"socketDir": str(sockets / "on"), "cniDir": str(world.cni_dir), "hotplug": True}
        daemon = Daemon(DaemonConfig.parse(json.dumps(settings)), source=n.source)
        await daemon.start()
        try:
            await daemon.admission.serving.wait()
            controller = daemon.hotplug
            assert controller is not None
            value = await n.annotate(sandbox, "nad-a")
            seen = controller.seen
            assert await controller.until(
                lambda: getattr(seen.get(sandbox.container_id), "annotation", None) == value,
                timeout=WAIT,
            )
            await n.source.flush()
            # The daemon's ADD path leaves network-status to its writer (issue 17).
            await n.api.until(lambda: len(n.status(sandbox)) == 2, timeout=WAIT)
            n.check(lab, sandbox, {"net1": "default/nad-a"})
            scrape = daemon.metrics.exposition().decode()
            assert 'multihome_hotplug_attachments_total{action="added"} 1.0\n' in scrape
        finally:
            await daemon.stop()
        await n.call("DEL", sandbox)
    assert world.allocations() == {}


async def test_delegate_api_attachments_stay(lab: Lab, tmp_path: Path) -> None:
    """What upstream's ``/delegate`` API added is not the annotation's: a pass keeps it."""
    from multihome.cni.process import default_exec
    from multihome.daemon.delegate import hot_plug
    from multihome.testing.world import CNI_BIN_DIR

    world = World(lab)
    lan = lans(lab, world)
    sandbox = world.pod("web", "nad-a")
    async with node(world, sandbox, tmp_path=tmp_path) as n:
        await n.create_nad("nad-a")
        await n.call("ADD", sandbox)
        conf = {
            "cniVersion": "1.0.0",
            "name": "dyn",
            "type": "macvlan",
            "master": lan,
            "ipam": {"type": "static", "addresses": [{"address": "192.0.2.7/24"}]},
        }
        env = {**world.env("ADD", sandbox, ifname="dyn0"), "CNI_PATH": CNI_BIN_DIR}
        request = Request.from_env(env, json.dumps(conf).encode())
        await hot_plug(
            request,
            attributes=None,
            source=n.source,
            cache=n.cache,
            bin_dir=CNI_BIN_DIR,
            executor=default_exec(),
        )
        await n.annotate(sandbox, None)  # the annotation drops nad-a: dyn0 stays
        await n.sync()
        assert set(lab.links(sandbox.netns)) == {"lo", "eth0", "dyn0"}
        record = n.cache.load(sandbox.container_id)
        assert record is not None
        assert [a.ifname for a in record.attachments] == ["eth0", "dyn0"]
        await n.call("DEL", sandbox)
        assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}
