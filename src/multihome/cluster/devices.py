"""Which devices a pod was given, by resource name: the engine's device map.

A NAD with ``k8s.v1.cni.cncf.io/resourceName`` attaches the pod through a
device the kubelet allocated to it (an SR-IOV VF from a device plugin, or a
DRA device).  `PodDevices.assigned` asks where upstream asks, in its order:
the kubelet's PodResources API when its socket exists, else the kubelet's
device checkpoint (either failing fails the ADD, as upstream), then DRA;
each resource's IDs are sorted (upstream since v4.3.0), so NADs of one
resource get them in a stable order.

The gRPC client (`podresources`) is imported by the first pod that needs
it; without it installed, such a pod fails with an error that says what to
install.  The engine sees only the `Devices` protocol, so tests fake it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from multihome.cni.errors import CNIError, Code
from multihome.networks import deviceinfo

from .checkpoint import DEFAULT_PATH as DEFAULT_CHECKPOINT
from .checkpoint import CheckpointError, read_pod_devices

if TYPE_CHECKING:  # dra needs the API client: imported only where DRA is used
    from .dra import DraDevices

#: The kubelet's default (podresources.DEFAULT_SOCKET, without importing gRPC).
DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
EXTRA = "multihome[devices]"


class Devices(Protocol):
    #: Where device-info files live (``dp/`` and ``cni/`` below it).
    info_dir: str

    async def assigned(self, pod: Mapping[str, Any]) -> dict[str, list[str]]:
        """Resource name -> the pod's device IDs, in the order NADs take them.

        Raises `CNIError` when the devices cannot be learnt.
        """


class PodDevices:
    """`Devices` from the kubelet (PodResources API or checkpoint) and DRA.

    ``dra`` makes the `DraDevices` when first needed: the engine asks for
    devices only when a NAD names a resourceName, so a node (or a thin
    plugin's call) without such NADs never imports DRA.
    """

    def __init__(
        self,
        *,
        socket: str = DEFAULT_SOCKET,
        checkpoint: str = DEFAULT_CHECKPOINT,
        info_dir: str = deviceinfo.BASE_DIR,
        dra: Callable[[], DraDevices] | None = None,
    ) -> None:
        self.socket = socket
        self.checkpoint = checkpoint
        self.info_dir = info_dir
        self._make_dra = dra
        self._dra: DraDevices | None = None

    @property
    def dra(self) -> DraDevices | None:
        """DRA's part, made on first use; None without DRA."""
        if self._dra is None and self._make_dra is not None:
            self._dra = self._make_dra()
        return self._dra

    async def stop(self) -> None:
        """Stop DRA's slice watch, if DRA was ever used."""
        if self._dra is not None:
            await self._dra.stop()

    async def assigned(self, pod: Mapping[str, Any]) -> dict[str, list[str]]:
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        what = f"failed to learn the devices of pod {namespace}/{name}"
        out = await self._kubelet(namespace, name, str(meta.get("uid") or ""), what)
        if self.dra is not None:
            from .dra import DraError

            try:
                found = await self.dra.pod_devices(pod)
            except DraError as err:
                code = Code.TRY_AGAIN_LATER if err.transient else Code.IO_FAILURE
                raise CNIError(code, f"{what}: {err}") from err
            for resource, ids in found.items():
                out.setdefault(resource, []).extend(ids)
        return {resource: sorted(ids) for resource, ids in out.items()}

    async def _kubelet(
        self, namespace: str, name: str, uid: str, what: str
    ) -> dict[str, list[str]]:
        if os.path.exists(self.socket):
            try:
                from . import podresources
            except ImportError as err:
                raise CNIError(
                    Code.IO_FAILURE,
                    f"{what}: the kubelet's PodResources API ({self.socket}) needs a gRPC "
                    f"client that is not installed ({err.name or err})",
                    f"install {EXTRA!r} (grpclib, pure-protobuf) where the daemon runs",
                ) from err
            try:
                return await podresources.pod_devices(namespace, name, socket=self.socket)
            except podresources.KubeletError as err:
                raise CNIError(
                    Code.TRY_AGAIN_LATER, f"{what}: {err}", "is the kubelet running?"
                ) from err
        try:
            return await asyncio.to_thread(read_pod_devices, self.checkpoint, uid)
        except CheckpointError as err:
            raise CNIError(
                Code.IO_FAILURE,
                f"{what}: no kubelet PodResources socket at {self.socket}, and {err}",
                "mount /var/lib/kubelet/pod-resources (or device-plugins) into the daemon's pod",
            ) from err
