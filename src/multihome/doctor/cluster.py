"""Objects read from the API for lint and explain: paged lists, never one GET per object.

A cluster may hold thousands of pods; lint reads NADs and pods with one
paged LIST each (500 per page, as client-go's pager), so the number of
requests is ``ceil(objects / 500)`` per collection, whatever it finds.
"""

from __future__ import annotations

from multihome.cluster import credentials
from multihome.cluster.kube import NADS_PATH, PODS_PATH
from multihome.cluster.kubeclient import ApiUnreachable, KubeApiError, KubeClient

from .manifests import NAD_KIND, Located, Object

PAGE_SIZE = 500


class ClusterError(Exception):
    """The API cannot be read; the message says which call and why."""


def _path(collection: str, namespace: str) -> str:
    if not namespace:
        return collection
    if collection == PODS_PATH:
        return f"/api/v1/namespaces/{namespace}/pods"
    return NADS_PATH.replace("/network-attachment-definitions", "") + (
        f"/namespaces/{namespace}/network-attachment-definitions"
    )


async def list_all(client: KubeClient, path: str, *, page_size: int = PAGE_SIZE) -> list[Object]:
    items: list[Object] = []
    token = ""
    while True:
        query = {"limit": str(page_size)}
        if token:
            query["continue"] = token
        page = await client.list(path, query=query)
        items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return items


async def load(
    *,
    kubeconfig: str = "",
    context: str = "",
    namespace: str = "",
    pods: bool = True,
    page_size: int = PAGE_SIZE,
) -> list[Located]:
    """The NADs and (with ``pods``) the pods of the cluster or of one namespace."""
    try:
        creds = credentials.load(kubeconfig, context=context)
    except credentials.CredentialsError as err:
        raise ClusterError(str(err)) from None
    out: list[Located] = []
    async with KubeClient(creds) as client:
        wanted = [(NADS_PATH, NAD_KIND)] + ([(PODS_PATH, "Pod")] if pods else [])
        for collection, kind in wanted:
            path = _path(collection, namespace)
            try:
                objects = await list_all(client, path, page_size=page_size)
            except (KubeApiError, ApiUnreachable) as err:
                raise ClusterError(f"cannot list {path}: {err}") from None
            for obj in objects:
                obj.setdefault("kind", kind)
                out.append(Located(kind, obj))
    return out
