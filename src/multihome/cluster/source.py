"""Where pods and NetworkAttachmentDefinitions come from, behind one small interface.

The engine asks a `Source` for the pod of a CNI request and for the NADs it
references, and tells it what the pod got (network-status) and what happened
(events).  Two sources exist: the Kubernetes API through the node's watch
cache (`multihome.cluster.kube`) and a directory of manifests
(`multihome.cluster.local`) for the demo, hosts without Kubernetes and
offline tools.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

Object = dict[str, Any]
EventType = Literal["Normal", "Warning"]

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"


class Source(Protocol):
    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        """The pod, or None when it does not exist.

        ``uid`` is the runtime's K8S_POD_UID: a source that may still be
        catching up waits (boundedly) for that pod to appear.
        """

    def cached_pod(self, namespace: str, name: str) -> Object | None:
        """The pod if the source has it at hand: no wait, no request (for a DEL
        without its record); do not mutate it."""

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        """The NetworkAttachmentDefinition, or None when it does not exist."""

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        """Write the network-status annotation value; None removes it.

        Only on the incarnation whose UID is ``pod``'s ``metadata.uid`` (when
        it has one): a pod that is gone, or was created again under the same
        name, is left alone.  Raises when the write failed.
        """

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        """Record an event on the pod (best effort: never fails the caller)."""


def pod_key(pod: Object) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")
