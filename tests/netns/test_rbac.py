"""The ClusterRole of deploy/kubernetes/base/rbac.yaml is exactly what multihome uses.

The daemon (its Kubernetes source and engine: start, ADD, DEL, events, and
the ADD of a pod with DRA devices) and the thin plugin (one GET per object)
run against the API double through the representative paths; the set of
(verb, resource) the double recorded must equal the set the ClusterRole
grants: nothing missing (a forbidden request on a real cluster) and nothing
extra (least privilege).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.networks.config import MultusConfig
from multihome.networks.nad import RESOURCE_NAME_ANNOTATION
from multihome.testing import dra
from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.kubelet import write_checkpoint
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns

RBAC = Path(__file__).resolve().parents[2] / "deploy/kubernetes/base/rbac.yaml"
NODE = "node-a"
VFS = "example.com/vf"
DRIVER = "sriov.example.com"
#: The API group of each resource the double names.
GROUPS = {
    "pods": "",
    "pods/status": "",
    "events": "",
    "network-attachment-definitions": "k8s.cni.cncf.io",
    "resourceclaims": "resource.k8s.io",
    "resourceslices": "resource.k8s.io",
}


def granted() -> set[tuple[str, str, str]]:
    [role] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole"]
    out = set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        for group in rule["apiGroups"]:
            out |= {(group, r, v) for r in rule["resources"] for v in rule["verbs"]}
    return out


def _load(api: Any, world: World, node: str) -> dict[str, str]:
    """Create the world's manifests on the double; the pods' UIDs by name."""
    uids = {}
    for path in sorted(world.manifests.glob("*.json")):
        obj = json.loads(path.read_text())
        if obj["kind"] == "Pod":
            obj["spec"]["nodeName"] = node
            if obj["metadata"]["name"] == "dra":
                obj["status"] = dra.claim_statuses("vfs")
        created = api.create(obj)
        if obj["kind"] == "Pod":
            uids[obj["metadata"]["name"]] = created["metadata"]["uid"]
    return uids


def _annotate(world: World, nad: str, annotations: dict[str, str]) -> None:
    path = world.manifests / f"nad-default-{nad}.json"
    doc = json.loads(path.read_text())
    doc["metadata"]["annotations"].update(annotations)
    path.write_text(json.dumps(doc))


async def test_the_cluster_role_is_what_the_daemon_and_thin_plugin_use(
    lab: Lab, tmp_path: Path
) -> None:
    used: set[tuple[str, str, str]] = set()

    # The daemon: caches, a warm ADD, a cold lookup, DEL, events; a pod whose
    # NAD names a resourceName and whose device comes from a ResourceClaim
    # (no kubelet socket, an empty checkpoint: DRA alone gives the device).
    world = World(lab)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    sandbox = world.pod("web", "nad-a")
    world.macvlan_nad("nad-vf", master=lan, subnet=world.lan_subnet(3))
    _annotate(world, "nad-vf", {RESOURCE_NAME_ANNOTATION: VFS})
    with_device = world.pod("dra", "nad-vf")
    checkpoint = tmp_path / "kubelet_internal_checkpoint"
    write_checkpoint(str(checkpoint), [])
    config = {k: v for k, v in world.config.items() if k != "manifestDir"}
    async with ApiServerDouble(tokens=["tok"]) as api:
        uids = _load(api, world, NODE)
        sandbox.uid, with_device.uid = uids["web"], uids["dra"]
        api.create({"apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "node-b"},
                    "metadata": {"name": "elsewhere", "namespace": "default"}})  # fmt: skip
        api.create(dra.claim("vfs", [(DRIVER, NODE, "vf0")], namespace="default"))
        vf = dra.vf("vf0", "0000:03:00.2", VFS)
        api.create(dra.resource_slice(f"{NODE}-vfs", NODE, DRIVER, [vf]))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        settings = KubeConfig(
            kubeconfig=str(kubeconfig),
            node_name=NODE,
            kubelet_socket=str(tmp_path / "absent.sock"),
            kubelet_checkpoint=str(checkpoint),
            device_info_dir=str(tmp_path / "devinfo"),
        )
        async with KubeSource(settings) as source:
            assert await source.wait_ready(10)
            engine = Engine(source=source)
            add = Request.from_env(world.env("ADD", sandbox), json.dumps(config).encode())
            await engine.add(add, MultusConfig.parse(add.stdin))
            # A pod the node's cache does not hold is read with one GET.
            assert await source.get_pod("default", "elsewhere") is not None
            delete = Request.from_env(world.env("DEL", sandbox), json.dumps(config).encode())
            await engine.delete(delete, MultusConfig.parse(delete.stdin))
            # DRA: the claim is read, the node's slices listed until their watch is
            # up (an ADD without the VF would fail: device-missing).
            add = Request.from_env(world.env("ADD", with_device), json.dumps(config).encode())
            await engine.add(add, MultusConfig.parse(add.stdin))
            slices = source.devices.dra.slices if source.devices.dra else None
            assert slices is not None
            assert await slices.until(slices.synced.is_set, timeout=10)
            await api.until(lambda: api.open_watches == 3, timeout=10)
            delete = Request.from_env(world.env("DEL", with_device), json.dumps(config).encode())
            await engine.delete(delete, MultusConfig.parse(delete.stdin))
            await source.flush()
        used |= {(GROUPS[r], r, v) for v, r in api.requests()}
        assert ("", "events", "create") in used
        assert ("resource.k8s.io", "resourceclaims", "get") in used
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert set(lab.links(with_device.netns)) == {"lo"}

    # The thin plugin: no caches, one GET of the pod and of each NAD.
    thin = World(lab, mode="thin")
    thin.macvlan_nad("nad-a", master=lan, subnet=thin.lan_subnet(2))
    pod = thin.pod("db", "nad-a")
    with run_in_thread() as api:
        pod.uid = _load(api, thin, NODE)["db"]
        thin_config = {k: v for k, v in thin.config.items() if k != "manifestDir"}
        thin_config["kubeconfig"] = str(api.write_kubeconfig(tmp_path / "thin-kubeconfig"))
        thin.call("ADD", pod, config=thin_config)
        thin.call("DEL", pod, config=thin_config)
        used |= {(GROUPS[r], r, v) for v, r in api.requests()}
    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {} and thin.allocations() == {}

    assert used == granted()
