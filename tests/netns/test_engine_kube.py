"""The engine with pods and NADs from the Kubernetes API (the project's API double).

With a warm cache an ADD reads nothing from the API: its one request before
answering is the network-status PATCH, and the one after is the event.
Upstream Multus v4.0.2 makes 9 requests for the same ADD.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.networks.config import MultusConfig
from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

NODE = "node-a"


async def test_warm_add_costs_one_request_and_one_event(lab: Lab, tmp_path: Path) -> None:
    world = World(lab)
    lan = lab.macvlan_parent("lan")
    for index, name in enumerate(("nad-a", "nad-b"), start=1):
        world.macvlan_nad(name, master=lan, subnet=world.lan_subnet(index))
    sandbox = world.pod("web", "nad-a,nad-b")
    manifests = [json.loads(p.read_text()) for p in sorted(world.manifests.glob("*.json"))]
    config = {k: v for k, v in world.config.items() if k != "manifestDir"}

    async with ApiServerDouble(tokens=["tok"]) as api:
        for obj in manifests:
            if obj["kind"] == "Pod":
                obj["spec"]["nodeName"] = NODE
            created = api.create(obj)
            if obj["kind"] == "Pod":
                sandbox.uid = created["metadata"]["uid"]  # the API server assigns UIDs
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        async with KubeSource(KubeConfig(kubeconfig=str(kubeconfig), node_name=NODE)) as source:
            await _add_then_delete(api, source, world, sandbox, config)
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


async def _add_then_delete(
    api: ApiServerDouble, source: KubeSource, world: World, sandbox: Sandbox, config: dict[str, Any]
) -> None:
    assert await source.wait_ready(10)
    await api.until(lambda: api.open_watches == 2)  # the cache is warm and watching
    engine = Engine(source=source)
    request = Request.from_env(world.env("ADD", sandbox), json.dumps(config).encode())
    api.reset_requests()

    outcome = await engine.add(request, MultusConfig.parse(request.stdin))

    assert api.requests() == Counter({("patch", "pods/status"): 1})
    await source.flush()
    assert api.requests() == Counter({("patch", "pods/status"): 1, ("create", "events"): 1})
    stored = api.get("pods", namespace="default", name="web")
    assert stored is not None
    status = json.loads(stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"])
    assert [s["interface"] for s in status] == ["eth0", "net1", "net2"]
    assert [a.name for a in outcome.plan.attachments] == [
        "cluster",
        "default/nad-a",
        "default/nad-b",
    ]
    [event] = [e for e in api.events() if e.get("reason") == "AddedInterface"]
    assert "Add net2" in event["message"]

    api.reset_requests()
    delete = Request.from_env(world.env("DEL", sandbox), json.dumps(config).encode())
    await engine.delete(delete, MultusConfig.parse(delete.stdin))
    # DEL clears the status of the pod that still exists: one PATCH, no reads.
    assert api.requests() == Counter({("patch", "pods/status"): 1})


def test_thin_plugin_reads_the_api_with_one_get_each(lab: Lab, tmp_path: Path) -> None:
    world = World(lab, mode="thin")
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    sandbox = world.pod("web", "nad-a")
    manifests = [json.loads(p.read_text()) for p in sorted(world.manifests.glob("*.json"))]
    with run_in_thread() as api:
        for obj in manifests:
            created = api.create(obj)
            if obj["kind"] == "Pod":
                sandbox.uid = created["metadata"]["uid"]
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        config = {k: v for k, v in world.config.items() if k != "manifestDir"}
        config["kubeconfig"] = str(kubeconfig)

        world.call("ADD", sandbox, config=config)

        assert api.requests() == Counter(
            {
                ("get", "pods"): 1,
                ("get", "network-attachment-definitions"): 1,
                ("patch", "pods/status"): 1,
                ("create", "events"): 1,
            }
        )
        world.call("DEL", sandbox, config=config)
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}
