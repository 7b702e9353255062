"""A multihome configuration and CNI requests for engine tests with `FakeExec` plugins.

The cluster network is one fake plugin (``cluster-plugin``); nothing is
looked up on disk but the configuration files written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multihome.cni.request import Request

CLUSTER_PLUGIN = "cluster-plugin"
POD_ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1"


def multus_config(root: Path, **keys: Any) -> dict[str, Any]:
    """``root/cluster.conf`` (the fake cluster network) and a configuration naming it.

    ``keys`` are added to the configuration or replace its defaults
    (``binDir`` is ``/nowhere``: FakeExec finds plugins in any bin dir).
    """
    (root / "cluster.conf").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "cluster", "type": CLUSTER_PLUGIN})
    )
    return {
        "cniVersion": "1.0.0",
        "name": "multihome",
        "type": "multihome-cni",
        "clusterNetwork": str(root / "cluster.conf"),
        "cniDir": str(root / "cni"),
        "binDir": "/nowhere",
        **keys,
    }


def request(
    command: str,
    config: dict[str, Any],
    *,
    netns: str = "/run/netns/none",
    args: str = POD_ARGS,
) -> Request:
    """``command`` for container ``c1`` (ifname eth0) of the pod in ``args``."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": args,
    }
    return Request.from_env(env, json.dumps(config).encode())
