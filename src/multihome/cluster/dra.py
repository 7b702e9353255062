"""Devices from Dynamic Resource Allocation: ResourceClaims and this node's ResourceSlices.

Upstream HEAD (``pkg/draclient``) resolves a pod's DRA devices in three
steps, and so does multihome:

1. ``pod.status.resourceClaimStatuses[].resourceClaimName`` names the
   pod's ResourceClaims (``resource.k8s.io/v1``); each is fetched once per
   pod; one without ``status.allocation`` is an error.
2. Each allocation result names ``driver``, ``pool`` and ``device``; the
   device is looked up in the ResourceSlices of the pod's node.
3. Its attributes ``k8s.cni.cncf.io/deviceID`` and
   ``k8s.cni.cncf.io/resourceName`` give the device ID and the resource
   name (the NAD's ``k8s.v1.cni.cncf.io/resourceName``).  Devices without
   them (a GPU in the same claim) are skipped.  The pod's
   ``status.extendedResourceClaimStatus`` (extended resources backed by
   DRA) maps requests to resource names strictly: a device without the
   attributes, or with another resource name, is an error.

Upstream lists the node's slices per driver for every ADD.  The daemon
keeps them in a watch cache instead (started by the first pod that has
claims, so clusters without DRA never watch anything), and lists per
driver only while the cache is not trustworthy: not listed yet, its watch
failing, or forbidden -- upstream's ClusterRole grants only get and list on
``resourceslices``, and under it every lookup lists, as upstream does.  A
device missing from the cache (a slice newer than the watch) is listed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .kubeclient import ApiUnreachable, KubeApiError, KubeClient
from .pacing import Backoff, Sleep
from .watching import Reflector

log = logging.getLogger(__name__)

API = "/apis/resource.k8s.io/v1"
SLICES_PATH = f"{API}/resourceslices"
DEVICE_ID_ATTRIBUTE = "k8s.cni.cncf.io/deviceID"
RESOURCE_NAME_ATTRIBUTE = "k8s.cni.cncf.io/resourceName"

Object = dict[str, Any]
#: (driver, pool, device) -> (deviceID, resourceName)
DeviceKey = tuple[str, str, str]


class DraError(Exception):
    """A claim or slice lookup failed; ``transient`` when trying again may help."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class _Device:
    device_id: str
    resource_name: str


def _attribute(device: Mapping[str, Any], name: str) -> str:
    # resource.k8s.io/v1 puts attributes on the device; v1beta1 under "basic".
    attributes = device.get("attributes")
    if not isinstance(attributes, Mapping):
        basic = device.get("basic")
        attributes = basic.get("attributes") if isinstance(basic, Mapping) else None
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    text = value.get("string") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else ""


def slice_devices(obj: Mapping[str, Any]) -> dict[DeviceKey, _Device]:
    """The devices of one ResourceSlice that carry a deviceID attribute."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return {}
    driver = str(spec.get("driver") or "")
    pool = spec.get("pool")
    pool_name = str(pool.get("name") or "") if isinstance(pool, Mapping) else ""
    out: dict[DeviceKey, _Device] = {}
    for device in spec.get("devices") or ():
        if not isinstance(device, Mapping):
            continue
        device_id = _attribute(device, DEVICE_ID_ATTRIBUTE)
        if device_id:
            key = (driver, pool_name, str(device.get("name") or ""))
            out[key] = _Device(device_id, _attribute(device, RESOURCE_NAME_ATTRIBUTE))
    return out


def trim_slice(obj: Object) -> Object:
    """What the cache keeps of a slice: its name and the devices published for CNI."""
    meta = obj.get("metadata") or {}
    devices = [
        {"driver": k[0], "pool": k[1], "name": k[2], "id": d.device_id, "resource": d.resource_name}
        for k, d in slice_devices(obj).items()
    ]
    return {"metadata": {"name": meta.get("name", "")}, "devices": devices}


class _Health(Backoff):
    """The reflector's backoff, which also tells whether its last attempt failed."""

    failing = True

    def next(self) -> float:
        self.failing = True
        return super().next()

    def reset(self) -> None:
        self.failing = False
        super().reset()


class DraDevices:
    """DRA device IDs of pods, from the API (see the module docstring).

    ``node_name`` is the daemon's node: its slices are watched.  Without
    one (the thin plugin), or with ``watch`` off, every lookup lists.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        node_name: str = "",
        watch: bool = True,
        watch_timeout: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self._health = _Health(initial=backoff_initial, maximum=backoff_max)
        self.slices: Reflector | None = None
        if watch and node_name:
            self.slices = Reflector(
                client,
                path=SLICES_PATH,
                field_selector=f"spec.nodeName={node_name}",
                trim=trim_slice,
                watch_timeout=watch_timeout,
                backoff=self._health,
                sleep=sleep,
            )
        self._task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _cached(self, node: str) -> dict[DeviceKey, _Device] | None:
        """The watch cache's devices, when it may be trusted for ``node``."""
        r = self.slices
        if r is None or node != self.node_name:
            return None
        if self._task is None:
            self._task = asyncio.create_task(r.run(), name="multihome-watch-resourceslices")
            return None
        if not r.synced.is_set() or self._health.failing or getattr(r, "forbidden", None):
            return None
        out: dict[DeviceKey, _Device] = {}
        for obj in r.objects.values():
            for d in obj.get("devices") or ():
                out[(d["driver"], d["pool"], d["name"])] = _Device(d["id"], d["resource"])
        return out

    async def _list(self, node: str, driver: str) -> dict[DeviceKey, _Device]:
        selector = f"spec.driver={driver}"
        if node:
            selector = f"spec.nodeName={node},{selector}"
        out: dict[DeviceKey, _Device] = {}
        token = ""
        while True:
            query = {"fieldSelector": selector, "limit": "500"}
            if token:
                query["continue"] = token
            page = await self._call(
                f"list ResourceSlices ({selector})",
                self.client.list(SLICES_PATH, query=query),
            )
            for item in page.get("items") or ():
                if isinstance(item, Mapping):
                    out.update(slice_devices(item))
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return out

    @staticmethod
    async def _call(what: str, call: Any) -> Object:
        try:
            result: Object = await call
        except KubeApiError as err:
            raise DraError(f"failed to {what}: {err.message}", transient=err.transient) from err
        except ApiUnreachable as err:
            raise DraError(f"failed to {what}: {err}", transient=True) from err
        return result

    async def pod_devices(self, pod: Mapping[str, Any]) -> dict[str, list[str]]:
        """Resource name -> device IDs of the pod's DRA devices, in allocation order."""
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        namespace = str(meta.get("namespace") or "default")
        node = str(spec.get("nodeName") or "")
        statuses = status.get("resourceClaimStatuses") or []
        extended = status.get("extendedResourceClaimStatus")
        out: dict[str, list[str]] = {}
        if not statuses and not isinstance(extended, Mapping):
            return out
        lookup = _Lookup(self, node)
        for item in statuses:
            claim_name = item.get("resourceClaimName") if isinstance(item, Mapping) else None
            if not isinstance(claim_name, str) or not claim_name:
                continue  # no claim needed for this reference (upstream logs and skips)
            for result in await lookup.results(namespace, claim_name):
                device = await lookup.device(result)
                if device is None or not device.resource_name:
                    log.info(
                        "claim %s/%s: device %s/%s/%s is not published for CNI; skipped",
                        namespace,
                        claim_name,
                        result.get("driver"),
                        result.get("pool"),
                        result.get("device"),
                    )
                    continue
                out.setdefault(device.resource_name, []).append(device.device_id)
        if isinstance(extended, Mapping):
            await self._extended(lookup, namespace, extended, out)
        return out

    async def _extended(
        self,
        lookup: _Lookup,
        namespace: str,
        extended: Mapping[str, Any],
        out: dict[str, list[str]],
    ) -> None:
        claim_name = str(extended.get("resourceClaimName") or "")
        by_request: dict[str, list[Mapping[str, Any]]] = {}
        for result in await lookup.results(namespace, claim_name):
            by_request.setdefault(str(result.get("request") or ""), []).append(result)
        for mapping in extended.get("requestMappings") or ():
            if not isinstance(mapping, Mapping):
                continue
            request, resource = str(mapping.get("requestName")), str(mapping.get("resourceName"))
            if not by_request.get(request):
                raise DraError(f"request {request!r} not found in claim {namespace}/{claim_name}")
            for result in by_request[request]:
                device = await lookup.device(result)
                name = result.get("device")
                if device is None or device.resource_name != resource:
                    got = device.resource_name if device is not None else "no attributes"
                    raise DraError(
                        f"device {name!r} of claim {namespace}/{claim_name}: "
                        f"{RESOURCE_NAME_ATTRIBUTE} is {got!r} but the extended resource "
                        f"mapping of request {request!r} is {resource!r}"
                    )
                out.setdefault(resource, []).append(device.device_id)


class _Lookup:
    """One pod's lookups: each claim fetched once, each driver listed at most once."""

    def __init__(self, dra: DraDevices, node: str) -> None:
        self.dra = dra
        self.node = node
        self.claims: dict[str, list[Mapping[str, Any]]] = {}
        self.cached = dra._cached(node)
        self.listed: dict[str, dict[DeviceKey, _Device]] = {}

    async def results(self, namespace: str, name: str) -> list[Mapping[str, Any]]:
        if name in self.claims:
            return self.claims[name]
        path = f"{API}/namespaces/{quote(namespace)}/resourceclaims/{quote(name)}"
        claim = await self.dra._call(
            f"get ResourceClaim {namespace}/{name}", self.dra.client.get(path)
        )
        allocation = (claim.get("status") or {}).get("allocation")
        devices = allocation.get("devices") if isinstance(allocation, Mapping) else None
        results = devices.get("results") if isinstance(devices, Mapping) else None
        if not isinstance(results, list):
            raise DraError(
                f"ResourceClaim {namespace}/{name} has no device allocation", transient=True
            )
        self.claims[name] = [r for r in results if isinstance(r, Mapping)]
        return self.claims[name]

    async def device(self, result: Mapping[str, Any]) -> _Device | None:
        driver = str(result.get("driver") or "")
        key = (driver, str(result.get("pool") or ""), str(result.get("device") or ""))
        if self.cached is not None and key in self.cached:
            return self.cached[key]
        if driver not in self.listed:
            self.listed[driver] = await self.dra._list(self.node, driver)
        return self.listed[driver].get(key)
