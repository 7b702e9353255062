"""A fake kubelet: the PodResources gRPC API on a unix socket, and the device checkpoint.

For tests of `multihome.cluster.podresources` that must not test the client
against itself: the server is grpcio (gRPC's C core, another implementation
than the client's grpclib) and the messages are Google's protobuf, built
from the kubelet's ``api.proto`` schema (every message and field of
``k8s.io/kubelet/pkg/apis/podresources/v1``), so the wire bytes are what a
kubelet sends -- including the fields multihome does not read.

grpcio and protobuf are dev dependencies; nothing in multihome imports this.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_R, _O = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
_S, _I64, _U64, _M = _F.TYPE_STRING, _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_MESSAGE

#: api.proto of the kubelet's podresources/v1: message -> (field, number, type, label, message).
SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    "AllocatableResourcesRequest": [],
    "AllocatableResourcesResponse": [
        ("devices", 1, _M, _R, "ContainerDevices"),
        ("cpu_ids", 2, _I64, _R, ""),
        ("memory", 3, _M, _R, "ContainerMemory"),
    ],
    "ListPodResourcesRequest": [],
    "ListPodResourcesResponse": [("pod_resources", 1, _M, _R, "PodResources")],
    "PodResources": [
        ("name", 1, _S, _O, ""),
        ("namespace", 2, _S, _O, ""),
        ("containers", 3, _M, _R, "ContainerResources"),
        ("cpu_ids", 4, _I64, _R, ""),
        ("memory", 5, _M, _R, "ContainerMemory"),
    ],
    "ContainerResources": [
        ("name", 1, _S, _O, ""),
        ("devices", 2, _M, _R, "ContainerDevices"),
        ("cpu_ids", 3, _I64, _R, ""),
        ("memory", 4, _M, _R, "ContainerMemory"),
        ("dynamic_resources", 5, _M, _R, "DynamicResource"),
    ],
    "ContainerMemory": [
        ("memory_type", 1, _S, _O, ""),
        ("size", 2, _U64, _O, ""),
        ("topology", 3, _M, _O, "TopologyInfo"),
    ],
    "ContainerDevices": [
        ("resource_name", 1, _S, _O, ""),
        ("device_ids", 2, _S, _R, ""),
        ("topology", 3, _M, _O, "TopologyInfo"),
    ],
    "TopologyInfo": [("nodes", 1, _M, _R, "NUMANode")],
    "NUMANode": [("ID", 1, _I64, _O, "")],
    "DynamicResource": [
        ("claim_name", 2, _S, _O, ""),
        ("claim_namespace", 3, _S, _O, ""),
        ("claim_resources", 4, _M, _R, "ClaimResource"),
    ],
    "ClaimResource": [
        ("cdi_devices", 1, _M, _R, "CDIDevice"),
        ("driver_name", 2, _S, _O, ""),
        ("pool_name", 3, _S, _O, ""),
        ("device_name", 4, _S, _O, ""),
        ("share_id", 5, _S, _O, ""),
    ],
    "CDIDevice": [("name", 1, _S, _O, "")],
    "GetPodResourcesRequest": [("pod_name", 1, _S, _O, ""), ("pod_namespace", 2, _S, _O, "")],
    "GetPodResourcesResponse": [("pod_resources", 1, _M, _O, "PodResources")],
}


def messages() -> dict[str, Any]:
    """The message classes of the schema, by name."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="multihome-fake-kubelet/api.proto", package="v1", syntax="proto3"
    )
    for name, fields in SCHEMA.items():
        message = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = message.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".v1.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{n}")) for n in SCHEMA
    }


@dataclass
class FakeKubelet:
    """``with FakeKubelet(path, pods=[...]) as kubelet:`` serves until the block ends.

    ``pods`` are PodResources in protobuf's JSON mapping (``podResources``
    items: ``name``, ``namespace``, ``containers[].devices[].resourceName``,
    ``deviceIds``, and anything else of the schema).  ``get``: "on" as a
    kubelet with the Get gate, "disabled" as one with it off, "absent" as
    one that predates it (UNIMPLEMENTED).  ``calls`` records the methods called.
    """

    socket: str
    pods: Sequence[Mapping[str, Any]] = ()
    get: str = "on"
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._m = messages()
        self._server: Any = None

    def _pod(self, name: str, namespace: str) -> Mapping[str, Any] | None:
        return next(
            (p for p in self.pods if p.get("name") == name and p.get("namespace") == namespace),
            None,
        )

    def _list(self, request: Any, context: Any) -> Any:
        self.calls.append("List")
        out = self._m["ListPodResourcesResponse"]()
        json_format.ParseDict({"podResources": list(self.pods)}, out)
        return out

    def _get(self, request: Any, context: Any) -> Any:
        self.calls.append("Get")
        if self.get == "disabled":
            context.abort(grpc.StatusCode.UNKNOWN, "PodResources API Get method disabled")
        pod = self._pod(request.pod_name, request.pod_namespace)
        if pod is None:
            context.abort(
                grpc.StatusCode.UNKNOWN,
                f"pod {request.pod_name} in namespace {request.pod_namespace} not found",
            )
            raise AssertionError("abort raises")
        out = self._m["GetPodResourcesResponse"]()
        json_format.ParseDict({"podResources": dict(pod)}, out)
        return out

    def __enter__(self) -> FakeKubelet:
        m = self._m

        def unary(fn: Any, request: str, reply: str) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=m[request].FromString,
                response_serializer=m[reply].SerializeToString,
            )

        handlers = {
            "List": unary(self._list, "ListPodResourcesRequest", "ListPodResourcesResponse")
        }
        if self.get != "absent":
            handlers["Get"] = unary(self._get, "GetPodResourcesRequest", "GetPodResourcesResponse")
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("v1.PodResourcesLister", handlers),)
        )
        self._server.add_insecure_port(f"unix:{self.socket}")
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None).wait()
        if os.path.exists(self.socket):
            os.unlink(self.socket)


def write_checkpoint(path: str, entries: Sequence[Mapping[str, Any]]) -> None:
    """A device-manager checkpoint as the kubelet writes it (``json.Marshal`` of its Data).

    ``entries``: ``PodUID``, ``ContainerName``, ``ResourceName`` and
    ``DeviceIDs`` (NUMA node as a string -> IDs).
    """
    registered: dict[str, list[str]] = {}
    for entry in entries:
        for ids in entry["DeviceIDs"].values():
            registered.setdefault(entry["ResourceName"], []).extend(ids)
    data = {
        "Data": {
            "PodDeviceEntries": [{**e, "AllocResp": "CgA="} for e in entries],
            "RegisteredDevices": registered,
        },
        "Checksum": 3854436589,
        "BootID": "6b1c2d3e-0000-4000-8000-000000000000",
    }
    with open(path, "w") as f:
        f.write(json.dumps(data, separators=(",", ":")))
