"""The hot-plug controller: running pods follow their networks annotation (``hotplug``).

Level-driven: the attachment record is what a sandbox has, the pod's
``k8s.v1.cni.cncf.io/networks`` annotation (in the watch cache) what it
wants.  A pass looks at every record of the node's attachment caches and,
where the two differ (`multihome.engine.hotplug.diff`), runs one step per
sandbox under its container lock: DEL what the annotation dropped, then ADD
what it added, all or nothing, with the pre-flight, checks, rollback and
network-status write of a pod's ADD (`Engine.add_attachments`).

A pass runs when the cache sees a pod's annotation change and every
``hotplugResyncSeconds`` for all records: a missed event, a daemon restart
or a failed step converge there.  Two quick edits end in the state of the
last: each step reads the record and the pod again under the lock.  A
sandbox whose ADD, DEL or CHECK is in flight (its lock is held) is tried
again shortly after; a pod that is being deleted, or whose record is of
another incarnation, is left alone.  See docs/hotplug.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from multihome.cluster.source import EventType, Object
from multihome.cni.errors import CNIError
from multihome.engine import locks, podnet
from multihome.engine.cache import AttachmentCache, CacheRecord
from multihome.engine.engine import Engine
from multihome.engine.hotplug import diff
from multihome.networks.config import MultusConfig
from multihome.networks.findings import errors
from multihome.networks.selection import NETWORKS_ANNOTATION

from .exposition import Counter, Gauge, Registry

log = logging.getLogger(__name__)

#: A sandbox whose lock was held is looked at again after this many seconds.
BUSY_RETRY = 1.0


@dataclass(frozen=True)
class Seen:
    """The last step's outcome for one sandbox."""

    #: The annotation value the step worked from ("" when the pod has none).
    annotation: str
    #: "converged" (the record holds what the annotation asks), "failed", "invalid".
    outcome: str
    message: str = ""


class HotplugMetrics:
    def __init__(self, registry: Registry | None) -> None:
        self.attachments = Counter(
            "multihome_hotplug_attachments",
            "Attachments added to or removed from running pods by the hot-plug controller",
            ["action"],
            registry=registry,
        )
        self.failures = Counter(
            "multihome_hotplug_failures",
            "Hot-plug steps that did not meet a pod's networks annotation, by reason",
            ["reason"],
            registry=registry,
        )
        self.unmet = Gauge(
            "multihome_hotplug_unmet",
            "Sandboxes whose networks annotation is not met right now",
            registry=registry,
        )


class HotplugController:
    """Keeps the sandboxes of ``cache_dirs()`` in line with their pods' annotations."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_dirs: Callable[[], Iterable[str]],
        resync: float,
        registry: Registry | None = None,
    ) -> None:
        self.engine = engine
        self.cache_dirs = cache_dirs
        self.resync = resync
        self.metrics = HotplugMetrics(registry)
        self.metrics.unmet.set_function(
            lambda: sum(1 for s in self.seen.values() if s.outcome != "converged")
        )
        #: Each sandbox's last outcome, by container ID.
        self.seen: dict[str, Seen] = {}
        self.passes = 0
        self._progress = asyncio.Condition()

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Pass after pass until cancelled: at each annotation change, and every ``resync``."""
        last_resync = -float("inf")
        while True:
            now = time.monotonic()
            full = now - last_resync >= self.resync
            if full:
                last_resync = now
            wishes = self._wishes()
            busy = False
            try:
                busy = await self.sync_all(full=full)
            except Exception:
                log.exception("hot-plug pass failed")
            wait = min(self.resync - (time.monotonic() - last_resync), BUSY_RETRY if busy else 1e9)
            await self._changed(wishes, max(wait, 0.0))

    async def _changed(self, wishes: dict[Any, str], timeout: float) -> None:
        reflector = getattr(self.engine.source, "pods", None)
        until = getattr(reflector, "until", None)
        if until is None:
            await asyncio.sleep(timeout)
            return
        await until(lambda: self._wishes() != wishes, timeout=timeout)

    def _wishes(self) -> dict[Any, str]:
        reflector = getattr(self.engine.source, "pods", None)
        objects = getattr(reflector, "objects", None) or {}
        return {key: _annotation(pod) for key, pod in objects.items()}

    async def until(self, predicate: Callable[[], bool], *, timeout: float) -> bool:
        """Wait until ``predicate()`` holds, checked after each sandbox's step (tests, status)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(predicate)
        return predicate()

    async def _note(self, container_id: str, seen: Seen | None) -> None:
        if seen is None:
            self.seen.pop(container_id, None)
        else:
            self.seen[container_id] = seen
        async with self._progress:
            self._progress.notify_all()

    # -- one pass -----------------------------------------------------------------------

    async def sync_all(self, *, full: bool = True) -> bool:
        """One pass over every record; whether some sandbox was busy (try again soon).

        Without ``full`` only sandboxes whose pod's annotation differs from
        what their last step converged to are looked at.
        """
        busy = False
        present: set[str] = set()
        for directory in sorted(set(self.cache_dirs())):
            cache = AttachmentCache(directory)
            ids = await asyncio.to_thread(cache.container_ids)
            present.update(ids)
            for container_id in ids:
                try:
                    busy |= await self.sync(cache, container_id, full=full) == "busy"
                except Exception:
                    log.exception("hot-plug of container %s failed", container_id)
        for gone in set(self.seen) - present:
            await self._note(gone, None)
        self.passes += 1
        async with self._progress:
            self._progress.notify_all()
        return busy

    async def sync(self, cache: AttachmentCache, container_id: str, *, full: bool = True) -> str:
        """One sandbox: "skipped", "busy", or the outcome of its step (`Seen.outcome`)."""
        record = await asyncio.to_thread(cache.load, container_id)
        pod = self._pod(record) if record is not None else None
        if record is None or pod is None:
            return "skipped"
        last = self.seen.get(container_id)
        if not full and last is not None and last.annotation == _annotation(pod):
            return "skipped"
        try:
            async with locks.container_lock(cache.directory, container_id, timeout=0):
                # Read again under the lock: a DEL or another step may have run since.
                record = await asyncio.to_thread(cache.load, container_id)
                pod = self._pod(record) if record is not None else None
                if record is None or pod is None:
                    return "skipped"
                if not await asyncio.to_thread(os.path.exists, record.netns):
                    return "skipped"  # the sandbox is gone: its DEL (or GC) comes
                try:
                    seen = await self._step(record, pod)
                except (CNIError, OSError, TimeoutError) as err:
                    # The API, the manifests or the namespace failed us: the next pass retries.
                    message = err.msg if isinstance(err, CNIError) else str(err) or repr(err)
                    seen = await self._failed(record, pod, _annotation(pod), "error", message)
        except locks.LockTimeout:
            return "busy"
        await self._note(container_id, seen)
        return seen.outcome

    def _pod(self, record: CacheRecord) -> Object | None:
        """The record's pod from the watch cache, if it is this incarnation and not leaving."""
        if not record.pod_name or not record.multus_config:
            return None  # not a pod, or attached before records kept their configuration
        if any(a.state != "added" for a in record.attachments):
            return None  # an ADD that died half-way: the runtime's retry or DEL finishes it
        peek = getattr(self.engine.source, "cached_pod", None)
        if peek is None:
            return None
        pod: Object | None = peek(record.pod_namespace, record.pod_name)
        if pod is None:
            return None
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (record.pod_uid and meta.get("uid") != record.pod_uid):
            return None
        return copy.deepcopy(pod)

    async def _step(self, record: CacheRecord, pod: Object) -> Seen:
        """Bring ``record`` to what ``pod`` asks; the caller holds the container's lock."""
        annotation = _annotation(pod)
        config = MultusConfig.parse(record.multus_config.encode())
        plan, findings = await self.engine.replan(record, config, pod)
        problems = errors(findings)
        if problems:
            message = "; ".join(f.message for f in problems)
            return await self._failed(record, pod, annotation, "invalid", message)
        change = diff(record, plan)
        if not change.empty:
            # Only now look into the namespace (one `ip` run): new names must avoid its links.
            links = await podnet.read_links(record.netns)
            change = diff(record, plan, taken=set(links) - {a.ifname for a in record.attachments})
        if change.problems:
            message = "; ".join(change.problems)
            return await self._failed(record, pod, annotation, "conflict", message)
        if change.empty:
            return Seen(annotation, "converged")

        if change.add:
            # Before anything is removed: an edit whose new networks cannot run changes nothing.
            findings = errors(await self.engine.preflight(record, change.add, config))
            if findings:
                message = "; ".join(f.message for f in findings)
                return await self._failed(record, pod, annotation, "plugin", message)
        removed: list[str] = []
        failure = ""
        reason = ""
        if change.remove:
            left = await self.engine.remove_attachments(record, change.remove, config)
            kept = {id(c) for c in left}
            removed = [f"{c.ifname} ({c.network})" for c in change.remove if id(c) not in kept]
            self.metrics.attachments.labels("removed").inc(len(removed))
            if left:
                reason = "delete-failed"
                failure = "could not remove " + ", ".join(f"{c.ifname} ({c.network})" for c in left)
        added: list[str] = []
        if change.add and not failure:
            try:
                outcome = await self.engine.add_attachments(record, change.add, config)
            except CNIError as err:
                reason, failure = "add-failed", str(err.msg)
            else:
                for attachment, result in zip(
                    outcome.plan.attachments, outcome.results, strict=True
                ):
                    ips = " ".join(ip.address for ip in result.ips)
                    added.append(f"{attachment.ifname} [{ips}] from {attachment.name}")
                self.metrics.attachments.labels("added").inc(len(added))
        if removed or added:
            await self.engine.report_record(record, config, pod)
        if removed:
            await self._event(pod, "Normal", "RemovedInterface", "Remove " + ", ".join(removed))
        if added:
            await self._event(pod, "Normal", "AddedInterface", "Add " + ", ".join(added))
        log.info(
            "pod %s: hot-plug: removed %s, added %s",
            record.pod,
            ", ".join(removed) or "nothing",
            ", ".join(added) or "nothing",
        )
        if failure:
            return await self._failed(record, pod, annotation, reason, failure)
        return Seen(annotation, "converged")

    async def _failed(
        self, record: CacheRecord, pod: Object, annotation: str, reason: str, message: str
    ) -> Seen:
        self.metrics.failures.labels(reason).inc()
        attached = ", ".join(f"{a.ifname} ({a.network})" for a in record.attachments)
        text = f"the networks annotation is not met: {message}; attached: {attached or 'nothing'}"
        log.warning("pod %s: %s", record.pod, text)
        await self._event(pod, "Warning", "HotplugFailed", text)
        return Seen(annotation, "failed" if reason != "invalid" else "invalid", text)

    async def _event(self, pod: Object, type: EventType, reason: str, message: str) -> None:
        """Reports never fail the step they report on."""
        source = self.engine.source
        if source is None:
            return
        try:
            await source.emit_event(pod, type=type, reason=reason, message=message)
        except Exception as err:
            log.warning("could not report to the cluster: %s", err)


def _annotation(pod: Object) -> str:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(NETWORKS_ANNOTATION)
    return value if isinstance(value, str) else ""
