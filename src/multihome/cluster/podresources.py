"""The kubelet's PodResources API: which devices the kubelet gave a pod's containers.

The kubelet serves ``v1.PodResourcesLister`` (gRPC, protobuf) on a unix
socket, by default ``/var/lib/kubelet/pod-resources/kubelet.sock``.  Multus
calls ``List`` (every pod of the node) and picks the pod by namespace and
name; multihome calls ``Get`` (one pod) and falls back to ``List`` where the
kubelet has no ``Get`` (before 1.27, or its feature gate off), remembering
that for the socket.

Weight (docs/devices.md has the measurement): grpclib (pure Python, on h2
and multidict) and pure-protobuf (dataclass messages) add
about 2.4 MiB RSS and 50 ms, loaded only by the first pod that needs
devices; grpcio would add 15 MiB and Google's protobuf 2.3 MiB of its own,
against a daemon budget of 50 MiB.  The messages below declare only the
fields multihome reads; protobuf decoders skip the others (topology, CPU
and memory, DRA's dynamic resources), so newer kubelets decode too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError
from pure_protobuf.annotations import Field
from pure_protobuf.message import BaseMessage

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
#: Upstream's limits for one call.
TIMEOUT = 10.0
MAX_MESSAGE = 16 * 1024 * 1024
_SERVICE = "/v1.PodResourcesLister"


# -- the messages (k8s.io/kubelet/pkg/apis/podresources/v1/api.proto) ----------------


@dataclass
class ContainerDevices(BaseMessage):
    resource_name: Annotated[str, Field(1)] = ""
    device_ids: Annotated[list[str], Field(2)] = field(default_factory=list)


@dataclass
class ContainerResources(BaseMessage):
    name: Annotated[str, Field(1)] = ""
    devices: Annotated[list[ContainerDevices], Field(2)] = field(default_factory=list)


@dataclass
class PodResources(BaseMessage):
    name: Annotated[str, Field(1)] = ""
    namespace: Annotated[str, Field(2)] = ""
    containers: Annotated[list[ContainerResources], Field(3)] = field(default_factory=list)


@dataclass
class ListPodResourcesRequest(BaseMessage):
    pass


@dataclass
class ListPodResourcesResponse(BaseMessage):
    pod_resources: Annotated[list[PodResources], Field(1)] = field(default_factory=list)


@dataclass
class GetPodResourcesRequest(BaseMessage):
    pod_name: Annotated[str, Field(1)] = ""
    pod_namespace: Annotated[str, Field(2)] = ""


@dataclass
class GetPodResourcesResponse(BaseMessage):
    pod_resources: Annotated[PodResources | None, Field(1)] = None


class _Codec(CodecBase):
    """grpclib's codec for pure-protobuf messages (its own expects Google's)."""

    __content_subtype__ = "proto"

    def encode(self, message: BaseMessage, message_type: type[BaseMessage]) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: type[BaseMessage]) -> BaseMessage:
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"the kubelet's answer is larger than {MAX_MESSAGE} bytes")
        try:
            return message_type.loads(data)
        except Exception as err:  # pure-protobuf's own errors, or a truncated message
            raise ValueError(f"the kubelet's answer does not decode: {err}") from err


class KubeletError(Exception):
    """The PodResources API did not answer; the message says why (never a credential)."""


# Sockets whose kubelet has no Get: asked with List from then on.
_no_get: set[str] = set()


def _collect(pod: PodResources | None, out: dict[str, list[str]]) -> None:
    for container in pod.containers if pod is not None else ():
        for devices in container.devices:
            out.setdefault(devices.resource_name, []).extend(devices.device_ids)


async def pod_devices(
    namespace: str, name: str, *, socket: str = DEFAULT_SOCKET, timeout: float = TIMEOUT
) -> dict[str, list[str]]:
    """Resource name -> device IDs the kubelet allocated to every container of the pod."""
    channel = Channel(path=socket, codec=_Codec())
    out: dict[str, list[str]] = {}
    try:
        if socket not in _no_get:
            get = UnaryUnaryMethod(
                channel, f"{_SERVICE}/Get", GetPodResourcesRequest, GetPodResourcesResponse
            )
            try:
                answer = await get(
                    GetPodResourcesRequest(pod_name=name, pod_namespace=namespace),
                    timeout=timeout,
                )
            except GRPCError as err:
                # UNIMPLEMENTED (old kubelet), UNKNOWN "Get method disabled" (gate
                # off) or "not found": List is the one every kubelet answers.
                if err.status is Status.UNIMPLEMENTED or "disabled" in (err.message or ""):
                    log.info("%s: the kubelet has no PodResources Get; using List", socket)
                    _no_get.add(socket)
            else:
                _collect(answer.pod_resources, out)
                return out
        list_ = UnaryUnaryMethod(
            channel, f"{_SERVICE}/List", ListPodResourcesRequest, ListPodResourcesResponse
        )
        listed = await list_(ListPodResourcesRequest(), timeout=timeout)
        for pod in listed.pod_resources:
            if pod.name == name and pod.namespace == namespace:
                _collect(pod, out)
        return out
    except GRPCError as err:
        raise KubeletError(
            f"the kubelet's PodResources API at {socket} answered {err.status.name}: "
            f"{err.message or 'no message'}"
        ) from None
    except (OSError, TimeoutError, StreamTerminatedError, ValueError) as err:
        reason = str(err) or type(err).__name__
        raise KubeletError(
            f"cannot ask the kubelet's PodResources API at {socket}: {reason}"
        ) from None
    finally:
        channel.close()
