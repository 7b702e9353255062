"""Device information (NPWG Device Information Specification v1.1), without I/O.

A device plugin that hands a pod a device (an SR-IOV VF, a vDPA device, a
vhost-user socket) describes it in a JSON file under
``/var/run/k8s.cni.cncf.io/devinfo/dp/``, named after the resource and the
device ID; the delegating plugin copies it, before the delegate's ADD, to
the file it names in the delegate's ``CNIDeviceInfoFile`` runtimeConfig
(under ``.../devinfo/cni/``), where the CNI plugin may rewrite it.  After the
ADD that file becomes the ``device-info`` of the network's network-status
entries; DEL removes it.  This module knows the names and the format; the
engine does the reading and writing (`multihome.engine.devicefiles`).

The format is decoded as the NAD client's Go ``DeviceInfo`` type decodes it
(Multus reads it so), so network-status carries exactly the members Multus
writes, in its order: ``type``, ``version`` and one of ``pci``, ``vdpa``,
``vhost-user``, ``memif`` with their known string members; unknown members
and empty strings are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

BASE_DIR = "/var/run/k8s.cni.cncf.io/devinfo"
DP_SUBDIR = "dp"
CNI_SUBDIR = "cni"
#: The version multihome writes (the NAD client's ``DeviceInfoVersion``).
VERSION = "1.1.0"

#: The members of each type's object, in the Go type's field order.
_MEMBERS: dict[str, tuple[str, ...]] = {
    "pci": ("pci-address", "vhost-net", "rdma-device", "pf-pci-address", "representor-device"),
    "vdpa": (
        "parent-device",
        "driver",
        "path",
        "pci-address",
        "pf-pci-address",
        "representor-device",
    ),
    "vhost-user": ("mode", "path"),
    "memif": ("role", "path", "mode"),
}
TYPES = tuple(_MEMBERS)


def _flat(text: str) -> str:
    return text.replace("/", "-")


def dp_file_name(resource_name: str, device_id: str) -> str:
    """The device plugin's file for one device: ``<resource>-<device>-device.json``."""
    return f"{_flat(resource_name)}-{_flat(device_id)}-device.json"


def cni_file_name(network: str, container_id: str, ifname: str) -> str:
    """The CNI file of one attachment, as Multus names it: ``<network>-<container>_<ifname>``."""
    return _flat(f"{network}-{container_id}_{ifname}")


def dp_path(base_dir: str, resource_name: str, device_id: str) -> str:
    return f"{base_dir}/{DP_SUBDIR}/{dp_file_name(resource_name, device_id)}"


def cni_path(base_dir: str, network: str, container_id: str, ifname: str) -> str:
    return f"{base_dir}/{CNI_SUBDIR}/{cni_file_name(network, container_id, ifname)}"


def parse(text: str | bytes) -> dict[str, Any]:
    """A device-info file's content, projected as Go's decoder projects it.

    ValueError, naming what is wrong, when it is not a JSON object or a
    member has the wrong type.
    """
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"device-info is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("device-info must be a JSON object")
    out: dict[str, Any] = {}
    for key in ("type", "version"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"device-info {key!r} must be a string, not {json.dumps(value)}")
        if value:
            out[key] = value
    for kind, members in _MEMBERS.items():
        section = data.get(kind)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ValueError(f"device-info {kind!r} must be an object")
        kept: dict[str, str] = {}
        for member in members:
            value = section.get(member)
            if value is not None and not isinstance(value, str):
                raise ValueError(
                    f"device-info {kind}.{member} must be a string, not {json.dumps(value)}"
                )
            if value:
                kept[member] = value
        # Go's omitempty keeps an empty struct behind a non-nil pointer.
        out[kind] = kept
    return out


def pci(pci_address: str, **members: str) -> dict[str, Any]:
    """A ``pci`` device-info, as an SR-IOV device plugin writes it.

    ``members`` take the spec's names with ``_`` for ``-``
    (``pf_pci_address``, ``rdma_device``, ``vhost_net``, ``representor_device``).
    """
    section = {"pci-address": pci_address}
    for key, value in members.items():
        name = key.replace("_", "-")
        if name not in _MEMBERS["pci"]:
            raise ValueError(f"{name!r} is not a member of a pci device-info")
        section[name] = value
    return {"type": "pci", "version": VERSION, "pci": section}


def serialise(info: Mapping[str, Any]) -> str:
    """The file content: compact JSON, as Go's ``json.Marshal`` writes it."""
    return json.dumps(dict(info), separators=(",", ":"))
