"""The file formats of device networks: device-info (NPWG) and the kubelet's checkpoint."""

from __future__ import annotations

import json

import pytest

from multihome.cluster.checkpoint import CheckpointError, pod_devices
from multihome.networks import deviceinfo


def test_device_info_names_follow_the_nad_client() -> None:
    assert deviceinfo.dp_file_name("intel.com/sriov", "0000:03:00.1") == (
        "intel.com-sriov-0000:03:00.1-device.json"
    )
    assert deviceinfo.cni_path("/d", "ns/net", "c1", "net1") == "/d/cni/ns-net-c1_net1"


def test_device_info_is_projected_as_go_decodes_it() -> None:
    text = json.dumps(
        {
            "type": "vdpa",
            "version": "1.0.0",
            "vdpa": {"parent-device": "vdpa:0000:65:00.3", "driver": "vhost", "device": "x"},
            "pci": {"pci-address": ""},
            "extra": 1,
        }
    )
    assert deviceinfo.parse(text) == {
        "type": "vdpa",
        "version": "1.0.0",
        "pci": {},
        "vdpa": {"parent-device": "vdpa:0000:65:00.3", "driver": "vhost"},
    }
    info = deviceinfo.pci("0000:03:00.1", pf_pci_address="0000:03:00.0", rdma_device="mlx5_3")
    assert deviceinfo.parse(deviceinfo.serialise(info)) == info


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "must be a JSON object"),
        ('{"type": 1}', "'type' must be a string, not 1"),
        ('{"pci": {"pci-address": 5}}', "pci.pci-address must be a string"),
        ("{", "not JSON"),
    ],
)
def test_bad_device_info_names_the_member(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        deviceinfo.parse(text)


def test_checkpoint_of_old_kubelets_with_plain_lists() -> None:
    data = {"Data": {"PodDeviceEntries": [
        {"PodUID": "u", "ContainerName": "c", "ResourceName": "r", "DeviceIDs": ["b", "a"]},
        {"PodUID": "u", "ContainerName": "d", "ResourceName": "r", "DeviceIDs": None},
    ], "RegisteredDevices": {}}, "Checksum": 1}  # fmt: skip
    assert pod_devices(json.dumps(data), "u") == {"r": ["b", "a"]}
    assert pod_devices('{"Data": {"PodDeviceEntries": null}}', "u") == {}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("nope", "not JSON"),
        ("{}", "no 'Data'"),
        ('{"Data": {"PodDeviceEntries": [{"PodUID": "u", "ResourceName": "r", '
         '"DeviceIDs": {"0": [1]}}]}}', "DeviceIDs holds"),
    ],
)  # fmt: skip
def test_a_broken_checkpoint_says_what_is_wrong(data: str, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        pod_devices(data, "u")
