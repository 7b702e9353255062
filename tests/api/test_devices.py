"""The pod's devices: the kubelet's PodResources API, its checkpoint, and DRA on the API double.

The fake kubelet is grpcio with Google's protobuf messages of the kubelet's
schema (`multihome.testing.kubelet`), so the client (grpclib, pure-protobuf)
is tested against another implementation's bytes, unread fields included.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from multihome.cluster import podresources
from multihome.cluster.devices import PodDevices
from multihome.cluster.dra import DraDevices
from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cni.errors import CNIError, Code
from multihome.testing import dra
from multihome.testing.apiserver import ApiServerDouble
from multihome.testing.dra import claim, resource_slice
from multihome.testing.kubelet import FakeKubelet, write_checkpoint

NODE = "node1"
SRIOV = "intel.com/sriov"
POD = {"metadata": {"namespace": "ns", "name": "web", "uid": "uid-1"}, "spec": {"nodeName": NODE}}
WAIT = 10.0


def kubelet_pod(name: str, devices: dict[str, list[str]]) -> dict[str, Any]:
    """A PodResources entry with everything a kubelet fills in, not just devices."""
    return {
        "name": name,
        "namespace": "ns",
        "cpuIds": ["4", "5"],
        "memory": [{"memoryType": "hugepages-1Gi", "size": "1073741824"}],
        "containers": [
            {
                "name": "app",
                "cpuIds": ["4"],
                "devices": [
                    {"resourceName": r, "deviceIds": ids, "topology": {"nodes": [{"ID": "0"}]}}
                    for r, ids in devices.items()
                ],
                "dynamicResources": [
                    {
                        "claimName": "gpu",
                        "claimNamespace": "ns",
                        "claimResources": [{"driverName": "gpu.example.com", "deviceName": "g0"}],
                    }
                ],
            },
            {
                "name": "sidecar",
                "devices": [{"resourceName": SRIOV, "deviceIds": ["0000:03:00.7"]}],
            },
        ],
    }


@pytest.fixture(autouse=True)
def _fresh_get_memory() -> None:
    podresources._no_get.clear()


@pytest.mark.parametrize(("get", "calls"), [("on", ["Get"]), ("disabled", ["Get", "List"])])
async def test_kubelet_devices_of_every_container_sorted(
    tmp_path: Path, get: str, calls: list[str]
) -> None:
    socket = str(tmp_path / "kubelet.sock")
    pods = [
        kubelet_pod("other", {SRIOV: ["0000:03:00.9"]}),
        kubelet_pod("web", {SRIOV: ["0000:03:00.5", "0000:03:00.2"], "x/y": ["a"]}),
    ]
    with FakeKubelet(socket, pods=pods, get=get) as kubelet:
        devices = await PodDevices(socket=socket).assigned(POD)
        assert kubelet.calls == calls
        # Remembered: the next pod goes straight to List.
        await PodDevices(socket=socket).assigned(POD)
        assert kubelet.calls[len(calls) :] == (["Get"] if get == "on" else ["List"])
    assert devices == {SRIOV: ["0000:03:00.2", "0000:03:00.5", "0000:03:00.7"], "x/y": ["a"]}


async def test_a_kubelet_without_get_is_listed(tmp_path: Path) -> None:
    socket = str(tmp_path / "kubelet.sock")
    with FakeKubelet(socket, pods=[kubelet_pod("web", {SRIOV: ["b", "a"]})], get="absent") as k:
        assert await PodDevices(socket=socket).assigned(POD) == {SRIOV: ["0000:03:00.7", "a", "b"]}
        assert k.calls == ["List"]


async def test_a_dead_kubelet_socket_is_try_again_later(tmp_path: Path) -> None:
    socket = tmp_path / "kubelet.sock"
    socket.write_text("")  # exists, nobody listens
    with pytest.raises(CNIError) as caught:
        await PodDevices(socket=str(socket)).assigned(POD)
    assert caught.value.code == Code.TRY_AGAIN_LATER
    assert "failed to learn the devices of pod ns/web" in caught.value.msg
    assert str(socket) in caught.value.msg


async def test_without_the_socket_the_checkpoint_is_read(tmp_path: Path) -> None:
    checkpoint = tmp_path / "kubelet_internal_checkpoint"
    write_checkpoint(
        str(checkpoint),
        [
            {"PodUID": "uid-1", "ContainerName": "app", "ResourceName": SRIOV,
             "DeviceIDs": {"1": ["0000:81:00.3"], "0": ["0000:03:00.4"]}},
            {"PodUID": "uid-1", "ContainerName": "sidecar", "ResourceName": SRIOV,
             "DeviceIDs": {"-1": ["0000:03:00.1"]}},
            {"PodUID": "uid-2", "ContainerName": "app", "ResourceName": SRIOV,
             "DeviceIDs": {"0": ["0000:03:00.2"]}},
        ],
    )  # fmt: skip
    devices = PodDevices(socket=str(tmp_path / "absent.sock"), checkpoint=str(checkpoint))
    assert await devices.assigned(POD) == {SRIOV: ["0000:03:00.1", "0000:03:00.4", "0000:81:00.3"]}


async def test_neither_socket_nor_checkpoint_is_an_error_naming_both(tmp_path: Path) -> None:
    devices = PodDevices(socket=str(tmp_path / "s.sock"), checkpoint=str(tmp_path / "cp"))
    with pytest.raises(CNIError) as caught:
        await devices.assigned(POD)
    assert caught.value.code == Code.IO_FAILURE
    assert "s.sock" in caught.value.msg and "cannot read" in caught.value.msg


async def test_a_missing_grpc_library_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "kubelet.sock"
    socket.write_text("")
    import multihome.cluster

    # As on a node without the extra: importing the client fails.
    monkeypatch.delitem(sys.modules, "multihome.cluster.podresources")
    monkeypatch.delattr(multihome.cluster, "podresources")
    monkeypatch.setitem(sys.modules, "grpclib.client", None)
    with pytest.raises(CNIError) as caught:
        await PodDevices(socket=str(socket)).assigned(POD)
    assert "multihome[devices]" in caught.value.details
    assert "grpclib" in caught.value.msg


# -- DRA on the API double ------------------------------------------------------------------


def vf(name: str, pci: str, resource: str = SRIOV) -> dict[str, Any]:
    return dra.vf(name, pci, resource)


def dra_pod(*claims: str) -> dict[str, Any]:
    return {**POD, "status": dra.claim_statuses(*claims)}


@pytest.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(tokens=["tok"]) as double:
        double.create(resource_slice("n1-vfs", NODE, "sriov.example.com", [
            vf("vf0", "0000:03:00.3"), vf("vf1", "0000:03:00.1"), vf("gpu", "", ""),
        ]))  # fmt: skip
        double.create(resource_slice("n2-vfs", "node2", "sriov.example.com", [vf("vf0", "x")]))
        double.create(
            claim("nets", [("sriov.example.com", NODE, "vf0"), ("sriov.example.com", NODE, "vf1")])
        )
        double.create(claim("gpu", [("gpu.example.com", NODE, "g0")]))
        double.create(claim("pending", None))
        yield double


@pytest.fixture
async def source(api: ApiServerDouble, tmp_path: Path) -> AsyncIterator[KubeSource]:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(str(checkpoint), [])  # a kubelet whose device plugins gave nothing
    settings = KubeConfig(
        kubeconfig=str(kubeconfig),
        node_name=NODE,
        backoff_initial=0.01,
        kubelet_socket=str(tmp_path / "no.sock"),
        kubelet_checkpoint=str(checkpoint),
    )
    async with KubeSource(settings) as the_source:
        assert await the_source.wait_ready(WAIT)
        yield the_source


def test_the_double_serves_resource_slices_cluster_scoped(api: ApiServerDouble) -> None:
    stored = api.get("resourceslices", namespace="", name="n1-vfs")
    assert stored is not None and "namespace" not in stored["metadata"]
    assert api.get("resourceclaims", namespace="ns", name="nets") is not None


async def test_dra_devices_from_claims_and_slices_listed_per_driver(
    api: ApiServerDouble, source: KubeSource
) -> None:
    dra = DraDevices(source.client, node_name=NODE, watch=False)
    api.reset_requests()
    found = await dra.pod_devices(dra_pod("nets", "gpu"))
    assert found == {SRIOV: ["0000:03:00.3", "0000:03:00.1"]}
    # Each claim once, each driver's slices of this node listed once: upstream's requests.
    assert api.requests() == Counter({("get", "resourceclaims"): 2, ("list", "resourceslices"): 2})
    selectors = [r.query.get("fieldSelector") for r in api.request_log() if r.verb == "list"]
    assert f"spec.nodeName={NODE},spec.driver=sriov.example.com" in selectors


async def test_the_watch_cache_serves_later_pods_without_listing(
    api: ApiServerDouble, source: KubeSource
) -> None:
    devices = source.devices
    assert devices.dra is not None
    await devices.dra.pod_devices(dra_pod("nets"))  # starts the slice watch
    slices = devices.dra.slices
    assert slices is not None
    await api.until(lambda: api.open_watches == 3, timeout=WAIT)
    api.reset_requests()
    assert await devices.dra.pod_devices(dra_pod("nets")) == {
        SRIOV: ["0000:03:00.3", "0000:03:00.1"]
    }
    assert api.requests() == Counter({("get", "resourceclaims"): 1})


async def test_an_unallocated_claim_is_an_error(source: KubeSource) -> None:
    with pytest.raises(CNIError) as caught:
        await source.devices.assigned(dra_pod("pending"))
    assert caught.value.code == Code.TRY_AGAIN_LATER
    assert "ResourceClaim ns/pending has no device allocation" in caught.value.msg


async def test_without_watch_on_slices_every_pod_lists(
    api: ApiServerDouble, source: KubeSource
) -> None:
    """Upstream HEAD's role: get/list on resourceslices, no watch."""
    api.fail_next(10_000, code=403, verb="watch", resource="resourceslices")
    dra = source.devices.dra
    assert dra is not None and dra.slices is not None
    await dra.pod_devices(dra_pod("nets"))  # starts the slice watch, which is refused
    # The reflector took the 403 as the role's answer: lookups list from now on.
    slices = dra.slices
    assert await slices.until(lambda: slices.forbidden is not None, timeout=WAIT)
    # A VF published after the cache's list: the cache would not know it.
    api.update(
        resource_slice("n1-vfs", NODE, "sriov.example.com", [vf("vf0", "0000:03:00.3"),
                       vf("vf1", "0000:03:00.6")])
    )  # fmt: skip
    api.reset_requests()
    assert await dra.pod_devices(dra_pod("nets")) == {SRIOV: ["0000:03:00.3", "0000:03:00.6"]}
    assert api.requests()[("list", "resourceslices")] == 1
