"""DRA objects for the API double: ResourceClaims, ResourceSlices and their devices.

Shaped as ``resource.k8s.io/v1`` serves them (docs/devices.md); a device
published for CNI carries the ``k8s.cni.cncf.io/deviceID`` and
``k8s.cni.cncf.io/resourceName`` attributes, as the SR-IOV DRA driver's do.
"""

from __future__ import annotations

from typing import Any

from multihome.cluster.dra import DEVICE_ID_ATTRIBUTE, RESOURCE_NAME_ATTRIBUTE

Object = dict[str, Any]


def claim(
    name: str, results: list[tuple[str, str, str]] | None, *, namespace: str = "ns"
) -> Object:
    """A ResourceClaim; ``results`` (driver, pool, device) allocated, or None: not yet."""
    obj: Object = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "vf"}}]}},
    }
    if results is not None:
        obj["status"] = {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "vf", "driver": d, "pool": p, "device": n}
                        for d, p, n in results
                    ]
                },
                "nodeSelector": {"nodeSelectorTerms": []},
            }
        }
    return obj


def resource_slice(name: str, node: str, driver: str, devices: list[Object]) -> Object:
    """A node's ResourceSlice: one pool named after the node."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def vf(name: str, pci: str, resource: str) -> Object:
    """A VF published for CNI; without ``resource`` (and ``pci``), a device CNI skips."""
    attributes: Object = {
        DEVICE_ID_ATTRIBUTE: {"string": pci},
        "sriovnetwork.k8snetworkplumbingwg.io/vendor": {"string": "8086"},
    }
    if resource:
        attributes[RESOURCE_NAME_ATTRIBUTE] = {"string": resource}
    return {"name": name, "attributes": attributes, "capacity": {"vfs": {"value": "1"}}}


def claim_statuses(*claims: str) -> Object:
    """A pod's ``status`` naming its ResourceClaims (``resourceClaimStatuses``)."""
    return {"resourceClaimStatuses": [{"name": f"ref-{c}", "resourceClaimName": c} for c in claims]}
