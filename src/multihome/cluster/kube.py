"""The Kubernetes API as the engine's `Source`: pods and NADs from a node-scoped watch cache.

With warm caches an ADD costs one API request, the network-status PATCH
(upstream Multus makes nine for the same ADD).  Under a role made for
Multus the source makes do with what it grants: the status as GET + PUT
when PATCH is forbidden, each pod by GET when list and watch are.  The daemon keeps two
reflectors running: the pods bound to this node (``spec.nodeName`` field
selector) and every NetworkAttachmentDefinition, both trimmed to the fields
multihome reads so that 110 pods and 1,000 NADs fit in a few MiB.

A pod the runtime asks about may be newer than the cache (it was created a
moment ago): `KubeSource.get_pod` waits for the watch to deliver it, for a
bounded time, then asks the API once.  Events go through a queue and are
sent after the CNI answer (`events`).  Nothing here has a sub-second
timeout: upstream's 250 ms per GET fails pods on slow API servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from multihome import afteranswer
from multihome.cni.errors import CNIError, Code
from multihome.networks import deviceinfo

from . import credentials as creds
from .checkpoint import DEFAULT_PATH as DEFAULT_CHECKPOINT
from .devices import DEFAULT_SOCKET, PodDevices
from .events import EventRecorder
from .kubeclient import ApiUnreachable, KubeApiError, KubeClient
from .pacing import Backoff, Clock, Sleep
from .source import STATUS_ANNOTATION, EventType, Object, pod_key
from .watching import Reflector

if TYPE_CHECKING:  # made when a pod first needs devices (`PodDevices`)
    from .dra import DraDevices

log = logging.getLogger(__name__)

PODS_PATH = "/api/v1/pods"
NADS_PATH = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"

#: Pod annotations multihome reads or writes; every other one is dropped from the cache.
POD_ANNOTATION_PREFIXES = ("k8s.v1.cni.cncf.io/", "v1.multus-cni.io/")
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"


@dataclass(frozen=True)
class KubeConfig:
    """How the daemon reaches the API server and how hard it may lean on it.

    Times are in seconds.  See docs/configuration-kube.md.
    """

    #: A kubeconfig file; empty: the pod's service account (in-cluster).
    kubeconfig: str = ""
    #: The kubeconfig context; empty: its current-context.
    context: str = ""
    #: This node's name (the pod watch's field selector); empty: every pod (as upstream).
    node_name: str = ""
    #: Requests a second to the API server, and how many may go at once after a quiet time:
    #: the kubelet's client defaults, so that a node-reboot burst (110 pods, two requests
    #: each) is not held back by the CNI's own budget.
    qps: float = 50.0
    burst: int = 100
    #: The limit for one request (a watch: the server-side timeout plus this).
    request_timeout: float = 30.0
    #: At shutdown, how long queued events may take to go out before they are dropped:
    #: the daemon's drain plus this must fit the pod's termination grace period (30 s).
    stop_flush_seconds: float = 5.0
    #: How long reads (GET, list) are retried on 5xx, 429 and connection errors.
    retry_seconds: float = 10.0
    #: How long an ADD waits for a pod the cache has not seen yet before one GET.
    pod_wait: float = 10.0
    #: How long the network-status PATCH is retried on 409, 5xx and connection errors.
    status_retry_seconds: float = 10.0
    #: Server-side watch timeout; each watch picks between this and twice this.
    watch_timeout: float = 300.0
    #: Objects per list page.
    page_size: int = 500
    #: Backoff between failed list/watch attempts and retries: first delay and cap.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: Events a second and burst; a repeat for the same pod within the window is sent once.
    event_qps: float = 1.0
    event_burst: int = 25
    event_dedup_window: float = 600.0
    #: Events waiting to be sent at most; more are dropped with a log line.
    event_queue_size: int = 1000
    #: The kubelet's PodResources socket, its device checkpoint (read where the
    #: socket is missing) and the device-info directory (docs/devices.md).
    kubelet_socket: str = DEFAULT_SOCKET
    kubelet_checkpoint: str = DEFAULT_CHECKPOINT
    device_info_dir: str = deviceinfo.BASE_DIR

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> KubeConfig:
        """From a config file's section: camelCase keys (``nodeName``, ``podWait``, ...).

        Unknown keys are ignored with a log line; a bad value is a ValueError
        naming the key, the value and what is valid.
        """
        by_key = {_camel(f.name): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            f = by_key.get(key)
            if f is None:
                import difflib  # for an unknown key only: not resident in the daemon

                close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                log.warning("ignoring unknown kube setting %r%s", key, hint)
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if f.type == "str":
                ok, want = isinstance(value, str), "a string"
            elif f.type == "int":
                ok, want = number and value == int(value) and value >= 1, "a whole number >= 1"
            elif f.name in _POSITIVE:
                ok, want = number and value > 0, "a number above 0"
            else:
                ok, want = number and value >= 0, "a number of seconds, 0 or more"
            if not ok:
                raise ValueError(f"kube setting {key}: {value!r} is not valid: expected {want}")
            values[f.name] = {"float": float, "int": int}.get(str(f.type), str)(value)
        return cls(**values)


_POSITIVE = frozenset(
    {"qps", "request_timeout", "watch_timeout", "backoff_initial", "backoff_max", "event_qps"}
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# -- trimming: what the cache keeps of each object --------------------------


def _trim_meta(meta: Mapping[str, Any], keep: Any) -> Object:
    out: Object = {}
    for key in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp"):
        if key in meta:
            out[key] = meta[key]
    if isinstance(out.get("namespace"), str):
        # A node's pods and NADs share a few namespaces: one string each, not one an object.
        out["namespace"] = sys.intern(out["namespace"])
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        kept = {sys.intern(k): v for k, v in annotations.items() if keep(k)}
        if kept:
            out["annotations"] = kept
    return out


def _pod_annotation(key: str) -> bool:
    # network-status is what multihome writes, never what it reads: caching
    # it would double every pod's footprint in the daemon.
    if key in (STATUS_ANNOTATION, "k8s.v1.cni.cncf.io/networks-status"):
        return False
    return key.startswith(POD_ANNOTATION_PREFIXES) or key == CONFIG_SOURCE_ANNOTATION


def trim_pod(obj: Object) -> Object:
    """Name, UID, the CNI annotations, the node, DRA claim statuses: nothing else."""
    pod: Object = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _trim_meta(obj.get("metadata") or {}, _pod_annotation),
    }
    spec = obj.get("spec")
    if isinstance(spec, Mapping) and "nodeName" in spec:
        pod["spec"] = {"nodeName": spec["nodeName"]}
    status = obj.get("status")
    if isinstance(status, Mapping):
        kept = {k: status[k] for k in _DRA_STATUS if status.get(k)}
        if kept:
            pod["status"] = kept
    return pod


_DRA_STATUS = ("resourceClaimStatuses", "extendedResourceClaimStatus")


def trim_nad(obj: Object) -> Object:
    """Name, UID, ``spec.config`` and the resourceName annotation."""
    nad: Object = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": _trim_meta(obj.get("metadata") or {}, lambda k: k == RESOURCE_NAME_ANNOTATION),
        "spec": {},
    }
    spec = obj.get("spec")
    if isinstance(spec, Mapping) and "config" in spec:
        nad["spec"]["config"] = spec["config"]
    return nad


def is_static(pod: Object) -> bool:
    """A static pod's API object is a mirror with another UID (upstream ``IsStaticPod``)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    source = annotations.get(CONFIG_SOURCE_ANNOTATION)
    return source is not None and source != "api"


#: GET + PUT rounds on 409 before giving up, as client-go's ``retry.DefaultRetry``.
_CONFLICT_ATTEMPTS = 5


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"


def _uid(pod: Object) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


# -- the source ---------------------------------------------------------------


class KubeSource:
    """The engine's `Source` on the Kubernetes API: ``async with KubeSource(config)``.

    ``requests`` counts API requests by verb; ``pods`` and ``nads`` are the
    reflectors (``lists``, ``watches``, ``errors`` counters); ``recorder``
    holds the event counters.
    """

    def __init__(
        self,
        config: KubeConfig,
        *,
        credentials: creds.Credentials | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        if credentials is None:
            credentials = creds.load(config.kubeconfig, context=config.context)
        self.client = KubeClient(
            credentials,
            qps=config.qps,
            burst=config.burst,
            timeout=config.request_timeout,
            retry_seconds=config.retry_seconds,
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            clock=clock,
            sleep=sleep,
        )

        def reflector(path: str, *, selector: str, trim: Any) -> Reflector:
            return Reflector(
                self.client,
                path=path,
                field_selector=selector,
                trim=trim,
                watch_timeout=config.watch_timeout,
                page_size=config.page_size,
                backoff=Backoff(initial=config.backoff_initial, maximum=config.backoff_max),
                sleep=sleep,
            )

        selector = f"spec.nodeName={config.node_name}" if config.node_name else ""
        self.pods = reflector(PODS_PATH, selector=selector, trim=trim_pod)
        self.nads = reflector(NADS_PATH, selector="", trim=trim_nad)
        self.recorder = EventRecorder(
            self.client,
            host=config.node_name,
            qps=config.event_qps,
            burst=config.event_burst,
            dedup_window=config.event_dedup_window,
            queue_size=config.event_queue_size,
            retry_seconds=config.retry_seconds,
            clock=clock,
            sleep=sleep,
        )

        def dra() -> DraDevices:
            from .dra import DraDevices

            return DraDevices(
                self.client,
                node_name=config.node_name,
                watch_timeout=config.watch_timeout,
                backoff_initial=config.backoff_initial,
                backoff_max=config.backoff_max,
                sleep=sleep,
            )

        #: The pods' devices: the kubelet's, and DRA's through this client.
        self.devices = PodDevices(
            socket=config.kubelet_socket,
            checkpoint=config.kubelet_checkpoint,
            info_dir=config.device_info_dir,
            dra=dra,
        )
        self._tasks: list[asyncio.Task[None]] = []
        #: The role forbade the status PATCH once: GET + PUT from then on (`set_network_status`).
        self.status_by_update = False

    @property
    def requests(self) -> Counter[str]:
        """API requests sent so far, by verb (get, list, watch, patch, update, create)."""
        return self.client.requests

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Start listing and watching, and the event sender; returns at once."""
        if self._tasks:
            return
        if not self.config.node_name:
            log.warning("no node name configured: caching every pod of the cluster")
        self._tasks = [
            asyncio.create_task(self.pods.run(), name="multihome-watch-pods"),
            asyncio.create_task(self.nads.run(), name="multihome-watch-nads"),
            asyncio.create_task(self.recorder.run(), name="multihome-events"),
        ]

    async def stop(self, *, flush_seconds: float | None = None) -> None:
        """Send what events are queued (for ``stopFlushSeconds`` at most), then stop."""
        if not self._tasks and self.recorder.pending:
            # Used without start() (the thin plugin): send the queue now.
            self._tasks = [asyncio.create_task(self.recorder.run(), name="multihome-events")]
        if self._tasks:
            try:
                budget = self.config.stop_flush_seconds if flush_seconds is None else flush_seconds
                async with asyncio.timeout(max(budget, 0.0)):
                    await self.recorder.flush(hurry=True)
            except TimeoutError:
                log.warning("stopping with %d events unsent", self.recorder.pending)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.devices.stop()
        await self.client.close()

    async def __aenter__(self) -> KubeSource:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def ready(self) -> bool:
        """Both initial lists are done, or forbidden (the daemon's readiness)."""
        return self.pods.settled and self.nads.settled

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for `ready`; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self.pods.until(lambda: self.pods.settled, timeout=None)
                await self.nads.until(lambda: self.nads.settled, timeout=None)
        except TimeoutError:
            return False
        return True

    async def flush(self) -> None:
        """Wait until every queued event was sent (tests, shutdown)."""
        await self.recorder.flush()

    # -- Source -----------------------------------------------------------

    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        """The pod from the cache, else from the watch within ``pod_wait``, else one GET.

        Only a lookup with a `uid` (an ADD's K8S_POD_UID) waits for the
        watch; a pod whose UID is not `uid` is an error, except a static
        pod, whose API object is a mirror with its own UID.  A DEL that must
        cost nothing uses `cached_pod`.
        """
        pod = self.pods.get(namespace, name)
        if pod is None and uid and self.pods.forbidden is None:
            await self.pods.until(
                lambda: (
                    self.pods.get(namespace, name) is not None or self.pods.forbidden is not None
                ),
                timeout=self.config.pod_wait,
            )
            pod = self.pods.get(namespace, name)
        if pod is not None and self._uid_ok(pod, uid):
            return copy.deepcopy(pod)
        # Not in the cache, or another incarnation of the name there: the
        # API server has the last word.
        try:
            live = trim_pod(await self.client.get(_pod_path(namespace, name), retry_seconds=0))
        except KubeApiError as err:
            if err.code == 404:
                return None
            raise _api_failure(f"failed to get pod {namespace}/{name}", err) from err
        except ApiUnreachable as err:
            raise _api_failure(f"failed to get pod {namespace}/{name}", err) from err
        if not self._uid_ok(live, uid):
            raise CNIError(
                Code.INVALID_ENV,
                f"failed to get pod {namespace}/{name}: expected pod UID {uid!r} (K8S_POD_UID) but "
                f"the Kubernetes API has UID {_uid(live)!r}",
                "the pod was deleted and created again under the same name",
            )
        return live

    def cached_pod(self, namespace: str, name: str) -> Object | None:
        """The cached pod, synchronously: no wait, no request (for DEL); do not mutate."""
        return self.pods.get(namespace, name)

    @staticmethod
    def _uid_ok(pod: Object, uid: str) -> bool:
        return not uid or _uid(pod) == uid or is_static(pod)

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        """From the cache once it is ready (no API request); before that, one GET."""
        if not self.nads.settled:
            await self.nads.until(lambda: self.nads.settled, timeout=self.config.pod_wait)
        if self.nads.synced.is_set():
            nad = self.nads.get(namespace, name)
            return copy.deepcopy(nad) if nad is not None else None
        path = (
            f"/apis/k8s.cni.cncf.io/v1/namespaces/{quote(namespace)}"
            f"/network-attachment-definitions/{quote(name)}"
        )
        what = f"failed to get network-attachment-definition {namespace}/{name}"
        try:
            return trim_nad(await self.client.get(path, retry_seconds=0))
        except KubeApiError as err:
            if err.code == 404:
                return None
            raise _api_failure(what, err) from err
        except ApiUnreachable as err:
            raise _api_failure(what, err) from err

    def cached_nad(self, namespace: str, name: str) -> Object | None:
        """The cached NAD, synchronously (a `NadLookup` for the network model); do not mutate."""
        return self.nads.get(namespace, name)

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        """Write the annotation (None removes it) on this incarnation of the pod only.

        One merge PATCH of ``pods/<name>/status`` with the pod's UID as a
        precondition.  Where the role forbids that (Multus's roles grant
        ``update``, not ``patch``), a GET of the pod and a PUT of its status
        with the resourceVersion, as Multus writes it; the choice is kept
        for the life of this source and logged once.  A pod that is gone,
        or is another incarnation of the name, is left alone (for a removal
        the watch cache, once listed, tells so without a request).
        """
        namespace, name = pod_key(pod)
        uid = _uid(pod)
        what = f"failed to write network-status on pod {namespace}/{name}"
        if status is None and uid and self.pods.synced.is_set():
            cached = self.pods.get(namespace, name)
            if cached is None or _uid(cached) != uid:
                # The watch saw this incarnation go: nothing left to clear.
                log.debug("pod %s/%s (UID %s) is gone: nothing to clear", namespace, name, uid)
                return
        try:
            if not self.status_by_update:
                try:
                    await self._patch_status(namespace, name, uid, status)
                    return
                except KubeApiError as err:
                    if err.code != 403:
                        raise
                    self.status_by_update = True
                    log.warning(
                        "%s; writing network-status with GET pods and PUT pods/status instead, "
                        'as Multus does (grant "patch" on "pods/status" to save a request a write)',
                        err.message,
                    )
            await self._update_status(namespace, name, uid, status)
        except KubeApiError as err:
            if err.code == 404 or err.precondition_failed:
                log.info("pod %s/%s is gone: network-status not written (%s)", namespace, name, err)
                return
            if err.code == 403:
                raise CNIError(
                    Code.IO_FAILURE,
                    f"{what}: {err.message}",
                    'grant "patch" on "pods/status" (multihome\'s role), or "get" on "pods" and '
                    '"update" on "pods/status" (Multus\'s role), to the service account',
                ) from err
            raise _api_failure(what, err) from err
        except ApiUnreachable as err:
            raise _api_failure(what, err) from err

    async def _patch_status(self, namespace: str, name: str, uid: str, status: str | None) -> None:
        meta: Object = {"annotations": {STATUS_ANNOTATION: status}}
        if uid:
            meta["uid"] = uid
        await self.client.patch(
            _pod_path(namespace, name) + "/status",
            {"metadata": meta},
            retry_seconds=self.config.status_retry_seconds,
            retry_conflicts=True,
            answer=False,
        )

    async def _update_status(self, namespace: str, name: str, uid: str, status: str | None) -> None:
        retry = self.config.status_retry_seconds
        for attempt in range(_CONFLICT_ATTEMPTS):
            live = await self.client.get(_pod_path(namespace, name), retry_seconds=retry)
            if uid and _uid(live) != uid:
                log.info(
                    "pod %s/%s has UID %s now, not %s: network-status not written",
                    namespace,
                    name,
                    _uid(live),
                    uid,
                )
                return
            annotations = live.setdefault("metadata", {}).get("annotations") or {}
            if annotations.get(STATUS_ANNOTATION) == status:
                return  # nothing to change: no write
            if status is None:
                annotations.pop(STATUS_ANNOTATION, None)
            else:
                annotations[STATUS_ANNOTATION] = status
            live["metadata"]["annotations"] = annotations
            try:
                # The GET's resourceVersion (and UID) ride along: a pod
                # changed or recreated since is a 409, never overwritten.
                await self.client.update(
                    _pod_path(namespace, name) + "/status", live, retry_seconds=retry
                )
                return
            except KubeApiError as err:
                if err.code != 409 or err.precondition_failed or attempt + 1 == _CONFLICT_ATTEMPTS:
                    raise

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        """Queue the event; a background task sends it (never on the caller's path).

        In the daemon it is queued once the request is answered (`multihome.afteranswer`).
        """
        afteranswer.defer(
            functools.partial(self.recorder.record, pod, type=type, reason=reason, message=message)
        )


def _api_failure(what: str, err: KubeApiError | ApiUnreachable) -> CNIError:
    """Code 11 when waiting may help (no answer, overload, conflicts), else an I/O failure."""
    if isinstance(err, ApiUnreachable) or err.transient or err.code == 409:
        return CNIError(
            Code.TRY_AGAIN_LATER,
            f"{what}: the Kubernetes API is unavailable; try again later",
            str(err),
        )
    return CNIError(Code.IO_FAILURE, f"{what}: {err.message}", str(err))
