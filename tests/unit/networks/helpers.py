"""Builders shared by the network model's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multihome.cni.request import Request
from multihome.networks.config import MultusConfig
from multihome.networks.findings import Finding

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "networks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def nad(namespace: str, name: str, config: Any = None, **annotations: str) -> dict[str, Any]:
    """A NAD object; ``config`` as text, or a dict that is dumped to text."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    obj: dict[str, Any] = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
    }
    if config is not None:
        obj["spec"] = {"config": config if isinstance(config, str) else json.dumps(config)}
    return obj


def pod(
    namespace: str = "default",
    name: str = "pod-1",
    *,
    networks: Any = None,
    default_network: Any = None,
    uid: str = "uid-1",
) -> dict[str, Any]:
    annotations = {}
    if networks is not None:
        annotations["k8s.v1.cni.cncf.io/networks"] = (
            networks if isinstance(networks, str) else json.dumps(networks)
        )
    if default_network is not None:
        annotations["v1.multus-cni.io/default-network"] = (
            default_network if isinstance(default_network, str) else json.dumps(default_network)
        )
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "annotations": annotations}
    }


def config(**keys: Any) -> MultusConfig:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "type": "multus",
        "clusterNetwork": "cluster",
    }
    base.update(keys)
    return MultusConfig.parse(json.dumps(base))


def request(*, container_id: str = "ctr-1", ifname: str = "eth0", args: str = "") -> Request:
    from multihome.cni.request import parse_args

    if not args:
        args = (
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-1;"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-1"
        )
    return Request(command="ADD", container_id=container_id, ifname=ifname, args=parse_args(args))


CLUSTER = {"cniVersion": "1.0.0", "name": "cluster-net", "type": "bridge", "bridge": "cni0"}


class Nads:
    """A NAD lookup over a dict, counting lookups."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {
            (o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o for o in objects
        }
        self.calls: list[tuple[str, str]] = []

    def __call__(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append((namespace, name))
        return self.objects.get((namespace, name))


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def by_code(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert matching, f"no {code} in {[str(f) for f in findings]}"
    return matching[0]
