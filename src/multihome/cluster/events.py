"""Kubernetes Events about pods, sent off the CNI path, paced and deduplicated.

An event is what a user sees in ``kubectl describe pod``; it is never worth
delaying a pod for.  `EventRecorder.record` only queues (it cannot fail and
does not wait); a background task sends core/v1 Events at a bounded rate,
and a message repeated for the same pod within a window is sent once
(client-go's recorder has the same two guards, in its correlator).  A full
queue drops new events with a log line: losing an event is better than
growing without bound while the API server is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from typing import Any

from .kubeclient import ApiUnreachable, KubeApiError, KubeClient
from .pacing import Clock, Sleep, TokenBucket

log = logging.getLogger(__name__)

Object = dict[str, Any]

#: The longest message sent; events.k8s.io/v1 refuses longer notes.
MAX_MESSAGE = 1024
_MAX_NAME = 253


class EventRecorder:
    """Queues events for pods and sends them from `run`.

    ``counts`` has ``queued``, ``sent``, ``failed``, ``deduplicated`` and
    ``dropped`` for the daemon's metrics.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        component: str = "multihome",
        host: str = "",
        qps: float = 1.0,
        burst: int = 25,
        dedup_window: float = 600.0,
        dedup_size: int = 1024,
        queue_size: int = 1000,
        retry_seconds: float = 10.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Clock = time.time,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.dedup_window = dedup_window
        # A node that attaches pods fast sees thousands of distinct messages
        # within the window: the memory is bounded by count too, oldest out.
        self.dedup_size = dedup_size
        self.retry_seconds = retry_seconds
        self.counts: Counter[str] = Counter()
        self._bucket = TokenBucket(rate=qps, burst=burst, clock=clock, sleep=sleep)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._seen: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._clock = clock
        self._wall = wall
        self._last_ns = 0
        self._hurry = False

    def record(self, pod: Object, *, type: str, reason: str, message: str) -> None:
        """Queue an event about `pod`; never raises, never waits."""
        try:
            meta = pod.get("metadata") or {}
            namespace = str(meta.get("namespace") or "default")
            name = str(meta.get("name") or "")
            uid = str(meta.get("uid") or "")
            key = (namespace, name, uid, type, reason, message)
            now = self._clock()
            while self._seen and next(iter(self._seen.values())) <= now:
                self._seen.popitem(last=False)
            if key in self._seen:
                self.counts["deduplicated"] += 1
                return
            # client-go names events "<object>.<unix nanoseconds in hex>"; the
            # counter keeps two events of one nanosecond apart.
            stamp = max(int(self._wall() * 1e9), self._last_ns + 1)
            self._last_ns = stamp
            pending = _Pending(
                namespace=namespace,
                name=name,
                uid=uid,
                resource_version=str(meta.get("resourceVersion") or ""),
                type=type,
                reason=reason,
                message=message,
                stamp=stamp,
            )
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.warning(
                "event queue full: dropped %s event %s for pod %s/%s", type, reason, namespace, name
            )
            return
        except Exception:  # an event must never fail its caller
            log.exception("cannot queue an event")
            return
        self._seen[key] = now + self.dedup_window
        while len(self._seen) > self.dedup_size:
            self._seen.popitem(last=False)
        self.counts["queued"] += 1

    async def flush(self, *, hurry: bool = False) -> None:
        """Return once every queued event was sent (or given up on).

        ``hurry`` (at shutdown): the rest go at the client's pace, not the
        event budget's; otherwise a burst's queue could not go out in time.
        """
        self._hurry = self._hurry or hurry
        await self._queue.join()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if not self._hurry:
                    await self._bucket.acquire()
                await self._send(event)
            finally:
                self._queue.task_done()

    async def _send(self, pending: _Pending) -> None:
        namespace, name = pending.namespace, pending.name
        event = self._event(pending)
        try:
            await self.client.create(
                f"/api/v1/namespaces/{namespace}/events",
                event,
                retry_seconds=self.retry_seconds,
                answer=False,
            )
        except KubeApiError as err:
            if err.code == 409:  # a retried create that had gone through after all
                self.counts["sent"] += 1
                return
            self.counts["failed"] += 1
            log.warning(
                "cannot send event %s for pod %s/%s: %s", pending.reason, namespace, name, err
            )
        except ApiUnreachable as err:
            self.counts["failed"] += 1
            log.warning(
                "cannot send event %s for pod %s/%s: %s", pending.reason, namespace, name, err
            )
        else:
            self.counts["sent"] += 1

    def _event(self, pending: _Pending) -> Object:
        namespace, name, message = pending.namespace, pending.name, pending.message
        suffix = f".{pending.stamp:x}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pending.stamp / 1e9))
        involved: Object = {"kind": "Pod", "namespace": namespace, "name": name, "apiVersion": "v1"}
        if pending.uid:
            involved["uid"] = pending.uid
        if pending.resource_version:
            involved["resourceVersion"] = pending.resource_version
        source: Object = {"component": self.component}
        if self.host:
            source["host"] = self.host
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name[: _MAX_NAME - len(suffix)] + suffix, "namespace": namespace},
            "involvedObject": involved,
            "reason": pending.reason,
            "message": message,
            "type": pending.type,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }


class _Pending:
    """A queued event: what it is about and says, its time; the body is built when it is sent.

    A full queue holds 1,000 of these: as the Event bodies themselves they
    took 1.5 KB each (tracemalloc), as these about 0.4 KB with the dedup entry.
    """

    __slots__ = (
        "message",
        "name",
        "namespace",
        "reason",
        "resource_version",
        "stamp",
        "type",
        "uid",
    )

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        resource_version: str,
        type: str,
        reason: str,
        message: str,
        stamp: int,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.resource_version = resource_version
        self.type = type
        self.reason = reason
        self.message = message
        self.stamp = stamp
