"""SR-IOV style networks end to end: the kubelet's devices reach each network's plugin.

There is no SR-IOV hardware here, so the device networks' plugin is a
recording plugin (a script in the test's bin dir that keeps its stdin and
answers a valid result); the cluster network is the real bridge plugin in a
real namespace.  The kubelet is the fake one (grpcio, the kubelet's
protobuf messages) or, without its socket, a checkpoint file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster.devices import PodDevices
from multihome.cluster.local import LocalSource
from multihome.cni.errors import CNIError
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.networks import deviceinfo
from multihome.networks.config import MultusConfig
from multihome.testing.kubelet import FakeKubelet, write_checkpoint
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

RESOURCE = "intel.com/sriov_netdevice"
VFS = ["0000:3b:02.1", "0000:3b:02.0"]  # the kubelet's order; NADs get them sorted

RECORDER = """#!/bin/sh
# Keeps what it was called with; answers like a plugin that moved a VF in.
dir={dir}
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}'; exit 0;;
esac
cat > "$dir/$CNI_COMMAND-$CNI_IFNAME.json"
if [ "$CNI_COMMAND" = ADD ] && [ -e "$dir/fail-$CNI_IFNAME" ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"no VF free"}}'; exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s","sandbox":"%s"}}]}}' \\
    "$CNI_IFNAME" "$CNI_NETNS"
fi
"""


def recording_plugin(root: Path) -> tuple[Path, Path]:
    """A bin dir with the ``sriov`` recorder, and the dir where it records."""
    bin_dir, records = root / "bin", root / "records"
    bin_dir.mkdir()
    records.mkdir()
    plugin = bin_dir / "sriov"
    plugin.write_text(RECORDER.format(dir=records))
    plugin.chmod(0o755)
    return bin_dir, records


def sriov_world(lab: Lab) -> tuple[World, Sandbox, Path, Path]:
    world = World(lab)
    bin_dir, records = recording_plugin(world.root)
    for name, vlan in (("sriov-a", 100), ("sriov-b", 200)):
        conf = {"cniVersion": "1.0.0", "type": "sriov", "name": name, "vlan": vlan}
        world.nad(name, conf, annotations={"k8s.v1.cni.cncf.io/resourceName": RESOURCE})
    sandbox = world.pod("dpdk", "sriov-a,sriov-b")
    world.config["binDir"] = str(bin_dir)
    return world, sandbox, bin_dir, records


async def run(world: World, sandbox: Sandbox, devices: PodDevices, command: str) -> Any:
    engine = Engine(source=LocalSource(str(world.manifests)), devices=devices)
    request = Request.from_env(world.env(command, sandbox), json.dumps(world.config).encode())
    config = MultusConfig.parse(request.stdin)
    if command == "ADD":
        return await engine.add(request, config)
    return await engine.delete(request, config)


def received(records: Path, ifname: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((records / f"ADD-{ifname}.json").read_text())
    return data


async def test_two_networks_of_one_resource_get_two_devices(lab: Lab) -> None:
    world, sandbox, _, records = sriov_world(lab)
    info_dir = world.root / "devinfo"
    (info_dir / "dp").mkdir(parents=True)
    # The device plugin describes the first VF only (as the SR-IOV device plugin does
    # for each VF it hands out).
    dp_file = info_dir / "dp" / deviceinfo.dp_file_name(RESOURCE, VFS[1])
    dp_file.write_text(deviceinfo.serialise(deviceinfo.pci(VFS[1], pf_pci_address="0000:3b:00.0")))
    socket = str(world.root / "kubelet.sock")
    pods = [
        {
            "name": "dpdk",
            "namespace": "default",
            "containers": [
                {"name": "app", "devices": [{"resourceName": RESOURCE, "deviceIds": VFS}]}
            ],
        }
    ]
    devices = PodDevices(socket=socket, info_dir=str(info_dir))
    with FakeKubelet(socket, pods=pods) as kubelet:
        await run(world, sandbox, devices, "ADD")
        assert kubelet.calls == ["Get"]

    a, b = received(records, "net1"), received(records, "net2")
    # Each network's plugin got its own device, as deviceID and pciBusID, in its config
    # and (capability deviceID not declared) nowhere else.
    assert (a["deviceID"], a["pciBusID"], a["vlan"]) == ("0000:3b:02.0", "0000:3b:02.0", 100)
    assert (b["deviceID"], b["pciBusID"], b["vlan"]) == ("0000:3b:02.1", "0000:3b:02.1", 200)
    assert "runtimeConfig" not in a

    cni_a = info_dir / "cni" / f"default-sriov-a-{sandbox.container_id}_net1"
    cni_b = info_dir / "cni" / f"default-sriov-b-{sandbox.container_id}_net2"
    assert json.loads(cni_a.read_text()) == json.loads(dp_file.read_text())
    assert cni_a.stat().st_mode & 0o777 == 0o444
    assert not cni_b.exists()  # no device plugin file for that VF

    status = world.network_status(sandbox)
    assert status is not None
    by_if = {s["interface"]: s for s in status}
    assert by_if["net1"]["device-info"] == {
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": "0000:3b:02.0", "pf-pci-address": "0000:3b:00.0"},
    }
    assert "device-info" not in by_if["net2"]

    await run(world, sandbox, devices, "DEL")
    assert not cni_a.exists()
    assert json.loads((records / "DEL-net1.json").read_text())["deviceID"] == "0000:3b:02.0"
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


async def test_a_failed_add_removes_the_device_info_it_copied(lab: Lab) -> None:
    world, sandbox, _, records = sriov_world(lab)
    info_dir = world.root / "devinfo"
    (info_dir / "dp").mkdir(parents=True)
    for vf in VFS:
        (info_dir / "dp" / deviceinfo.dp_file_name(RESOURCE, vf)).write_text(
            deviceinfo.serialise(deviceinfo.pci(vf))
        )
    checkpoint = world.root / "kubelet_internal_checkpoint"
    entry = {"PodUID": sandbox.uid, "ContainerName": "app", "ResourceName": RESOURCE}
    write_checkpoint(str(checkpoint), [{**entry, "DeviceIDs": {"0": VFS}}])
    devices = PodDevices(
        socket=str(world.root / "absent.sock"), checkpoint=str(checkpoint), info_dir=str(info_dir)
    )
    (records / "fail-net2").write_text("")
    with pytest.raises(CNIError, match="no VF free"):
        await run(world, sandbox, devices, "ADD")
    assert (records / "DEL-net1.json").exists()  # rolled back
    assert os.listdir(info_dir / "cni") == []
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


async def test_devices_from_the_checkpoint_and_too_few_of_them(lab: Lab) -> None:
    world, sandbox, _, records = sriov_world(lab)
    checkpoint = world.root / "kubelet_internal_checkpoint"
    entry = {"PodUID": sandbox.uid, "ContainerName": "app", "ResourceName": RESOURCE}
    write_checkpoint(str(checkpoint), [{**entry, "DeviceIDs": {"0": [VFS[0]]}}])
    devices = PodDevices(
        socket=str(world.root / "absent.sock"),
        checkpoint=str(checkpoint),
        info_dir=str(world.root / "devinfo"),
    )
    with pytest.raises(CNIError) as caught:
        await run(world, sandbox, devices, "ADD")
    assert "default/sriov-b (net2) gets no device of resource" in caught.value.msg
    assert "allocated 1 to the pod and 2 of its networks" in caught.value.msg
    assert os.listdir(records) == []  # refused before any plugin ran

    write_checkpoint(str(checkpoint), [{**entry, "DeviceIDs": {"0": VFS[:1], "1": VFS[1:]}}])
    await run(world, sandbox, devices, "ADD")
    assert received(records, "net1")["deviceID"] == "0000:3b:02.0"
    assert received(records, "net2")["deviceID"] == "0000:3b:02.1"
    await run(world, sandbox, devices, "DEL")
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


async def test_dra_devices_through_the_api(lab: Lab, tmp_path: Path) -> None:
    from multihome.cluster.kube import KubeConfig, KubeSource
    from multihome.testing.apiserver import ApiServerDouble

    world, sandbox, _, records = sriov_world(lab)
    manifests = [json.loads(p.read_text()) for p in sorted(world.manifests.glob("*.json"))]
    config = {k: v for k, v in world.config.items() if k != "manifestDir"}
    world.config = config
    driver, node = "sriovnetwork.example.com", "node-a"
    devices = [
        {
            "name": f"vf{i}",
            "attributes": {
                "k8s.cni.cncf.io/deviceID": {"string": pci},
                "k8s.cni.cncf.io/resourceName": {"string": RESOURCE},
            },
        }
        for i, pci in enumerate(VFS)
    ]
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(str(checkpoint), [])
    async with ApiServerDouble(tokens=["tok"]) as api:
        api.create(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": "node-a-vfs"},
                "spec": {
                    "driver": driver,
                    "nodeName": node,
                    "pool": {"name": node},
                    "devices": devices,
                },
            }
        )
        results = [
            {"request": "vf", "driver": driver, "pool": node, "device": d["name"]} for d in devices
        ]
        api.create(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": "dpdk-vfs-x7k2p", "namespace": "default"},
                "spec": {"devices": {"requests": [{"name": "vf"}]}},
                "status": {"allocation": {"devices": {"results": results}}},
            }
        )
        for obj in manifests:
            if obj["kind"] == "Pod":
                obj["spec"]["nodeName"] = node
                obj["status"] = {
                    "resourceClaimStatuses": [
                        {"name": "vfs", "resourceClaimName": "dpdk-vfs-x7k2p"}
                    ]
                }
                sandbox.uid = api.create(obj)["metadata"]["uid"]
            else:
                api.create(obj)
        settings = KubeConfig(
            kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")),
            node_name=node,
            kubelet_socket=str(tmp_path / "absent.sock"),
            kubelet_checkpoint=str(checkpoint),
            device_info_dir=str(tmp_path / "devinfo"),
        )
        async with KubeSource(settings) as source:
            assert await source.wait_ready(10)
            engine = Engine(source=source)
            stdin = json.dumps(config).encode()
            add = Request.from_env(world.env("ADD", sandbox), stdin)
            await engine.add(add, MultusConfig.parse(stdin))
            assert received(records, "net1")["deviceID"] == "0000:3b:02.0"
            assert received(records, "net2")["deviceID"] == "0000:3b:02.1"
            delete = Request.from_env(world.env("DEL", sandbox), stdin)
            await engine.delete(delete, MultusConfig.parse(stdin))
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


class CountingDevices:
    """A `Devices` fake: fixed devices, and how often it was asked."""

    def __init__(self, info_dir: str, devices: dict[str, list[str]]) -> None:
        self.info_dir = info_dir
        self.devices = devices
        self.asked = 0

    async def assigned(self, pod: Any) -> dict[str, list[str]]:
        self.asked += 1
        return self.devices


async def test_devices_are_asked_only_for_pods_whose_nads_name_a_resource(lab: Lab) -> None:
    world, sandbox, _, records = sriov_world(lab)
    world.nad("plain", {"cniVersion": "1.0.0", "type": "sriov", "name": "plain"})
    plain = world.pod("plain", "plain")
    fake = CountingDevices(str(world.root / "devinfo"), {RESOURCE: ["v0", "v1"]})
    engine = Engine(source=LocalSource(str(world.manifests)), devices=fake)
    stdin = json.dumps(world.config).encode()
    for box in (plain, sandbox):
        for command in ("ADD", "DEL"):
            request = Request.from_env(world.env(command, box), stdin)
            await engine.run(request, MultusConfig.parse(stdin))
    assert fake.asked == 1  # the ADD of the sriov pod; never for DEL or the plain pod
    assert received(records, "net1")["deviceID"] == "v0"
    assert set(lab.links(sandbox.netns)) == {"lo"}
    assert world.allocations() == {}


def test_the_kubelet_socket_answers_through_a_read_only_mount(tmp_path: Path) -> None:
    """The DaemonSet mounts /var/lib/kubelet/pod-resources read-only: connect() still works."""
    kubelet_dir, mounted = tmp_path / "pod-resources", tmp_path / "mounted"
    kubelet_dir.mkdir()
    mounted.mkdir()
    socket = kubelet_dir / "kubelet.sock"
    pod = {"metadata": {"namespace": "ns", "name": "web", "uid": "u"}, "spec": {}}
    ask = (
        "import asyncio, sys; from multihome.cluster.devices import PodDevices; "
        f"print(asyncio.run(PodDevices(socket=sys.argv[1]).assigned({pod!r})))"
    )
    entry = {"name": "web", "namespace": "ns", "containers": [
        {"name": "app", "devices": [{"resourceName": RESOURCE, "deviceIds": VFS}]}]}  # fmt: skip
    with FakeKubelet(str(socket), pods=[entry]):
        # A private mount namespace, so the bind mount goes away with the process.
        script = (
            f"mount --bind {kubelet_dir} {mounted} && mount -o remount,bind,ro {mounted} && "
            f'! touch {mounted}/x 2>/dev/null && exec "$@"'
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             sys.executable, "-c", ask, f"{mounted}/kubelet.sock"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr({RESOURCE: sorted(VFS)})
