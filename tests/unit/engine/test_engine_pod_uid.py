"""Which pod incarnation the engine reports to: the one the sandbox belonged to."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from multihome.cluster.source import EventType, Object
from multihome.cni.fakeexec import FakeExec
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.testing.fakeconfig import multus_config, request


class Recording:
    """A source with one pod; it records every status write and counts lookups."""

    def __init__(self, pod: Object) -> None:
        self.pod = pod
        self.lookups = 0
        self.writes: list[tuple[str, str | None]] = []

    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        self.lookups += 1
        return self.pod

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        return None

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        self.writes.append((pod["metadata"]["uid"], status))

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        pass


# A static pod: the kubelet's UID is its config hash, not the mirror's UID.
STATIC_POD_ARGS = "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=etcd-n1;K8S_POD_UID=hash1"


def _request(command: str, config: dict[str, Any]) -> Request:
    return request(command, config, args=STATIC_POD_ARGS)


def test_a_static_pods_status_is_cleared_on_its_mirror(tmp_path: Path) -> None:
    config = multus_config(tmp_path)
    mirror = {
        "metadata": {
            "name": "etcd-n1",
            "namespace": "kube-system",
            "uid": "mirror-uid",
            "annotations": {"kubernetes.io/config.source": "file"},
        }
    }
    source = Recording(mirror)
    engine = Engine(source=source, executor=FakeExec({"cluster-plugin": None}))
    asyncio.run(engine.handle(_request("ADD", config)))
    asyncio.run(engine.handle(_request("DEL", config)))
    assert [uid for uid, _ in source.writes] == ["mirror-uid", "mirror-uid"]
    assert source.writes[1][1] is None
    assert source.lookups == 1  # the ADD's; DEL reads no pod
