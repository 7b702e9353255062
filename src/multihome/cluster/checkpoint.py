"""The kubelet's device-manager checkpoint: which devices each pod's containers got.

Where the kubelet's PodResources socket is missing (old kubelets, or it is
not mounted into the daemon's pod), Multus reads
``/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint`` instead, and
so does multihome.  The kubelet writes it (``pkg/kubelet/cm/devicemanager/
checkpoint``) as::

    {"Data": {"PodDeviceEntries": [{"PodUID": "...", "ContainerName": "...",
              "ResourceName": "intel.com/sriov", "DeviceIDs": {"0": ["0000:03:00.2"]},
              "AllocResp": "<base64>"}],
              "RegisteredDevices": {"intel.com/sriov": ["0000:03:00.2", ...]}},
     "Checksum": 1234, "BootID": "..."}

``DeviceIDs`` maps a NUMA node (``-1``: none) to IDs; kubelets before 1.20
wrote a plain list, which is read too.  Entries match the pod by UID.  The
checksum is not checked (Multus does not either): the kubelet writes the
file atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_PATH = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"


class CheckpointError(Exception):
    """The file cannot be read or is not a checkpoint; the message says why."""


def pod_devices(data: str | bytes, pod_uid: str) -> dict[str, list[str]]:
    """Resource name -> device IDs of every container of the pod ``pod_uid``."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise CheckpointError(f"not JSON: {err}") from None
    body = doc.get("Data") if isinstance(doc, Mapping) else None
    if not isinstance(body, Mapping):
        raise CheckpointError("it has no 'Data' object")
    entries = body.get("PodDeviceEntries") or []
    if not isinstance(entries, list):
        raise CheckpointError("'Data.PodDeviceEntries' is not a list")
    out: dict[str, list[str]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise CheckpointError(f"PodDeviceEntries[{index}] is not an object")
        if entry.get("PodUID") != pod_uid:
            continue
        resource = entry.get("ResourceName")
        if not isinstance(resource, str):
            raise CheckpointError(f"PodDeviceEntries[{index}].ResourceName is not a string")
        out.setdefault(resource, []).extend(_ids(entry.get("DeviceIDs"), index))
    return out


def _ids(value: Any, index: int) -> list[str]:
    where = f"PodDeviceEntries[{index}].DeviceIDs"
    if value is None:
        return []
    if isinstance(value, list):
        groups: list[Any] = [value]
    elif isinstance(value, Mapping):
        # Go writes map keys sorted; keep that order (the IDs are sorted later anyway).
        groups = [value[k] for k in sorted(value, key=_numa_key)]
    else:
        raise CheckpointError(f"{where} is neither a list nor a map of NUMA node to list")
    ids: list[str] = []
    for group in groups:
        if not isinstance(group, list) or not all(isinstance(i, str) for i in group):
            raise CheckpointError(f"{where} holds something other than lists of strings")
        ids.extend(group)
    return ids


def _numa_key(key: str) -> tuple[int, str]:
    try:
        return (int(key), key)
    except ValueError:
        return (0, key)


def read_pod_devices(path: str, pod_uid: str) -> dict[str, list[str]]:
    """`pod_devices` of the file at ``path`` (blocking: run it off the event loop)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return pod_devices(data, pod_uid)
    except CheckpointError as err:
        raise CheckpointError(f"{path} is not a kubelet device checkpoint: {err}") from None
