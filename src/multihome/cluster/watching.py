"""A list-then-watch cache of one resource, as client-go's reflector keeps it.

No Python client ships an informer, and the daemon needs only its core: list
the collection (in pages), then watch from the list's resourceVersion;
when a watch ends, resume from the last resourceVersion seen (an event or a
bookmark); when the server says that version is gone (410 Expired, as an
ERROR event or as the HTTP status), list again.  Errors back off with
jitter so that every node of a cluster does not come back at once.

Objects are trimmed as they arrive (the caller says how), so the cache
holds only what multihome reads.  Readiness is the first complete list.
A 403 (the service account's role grants no list or watch, as Multus
v4.0.2's role for pods) empties the cache, with one log line: its owner
then asks the API server for each object instead.  The reflector lists
again every ``backoff.maximum`` seconds, quietly, so that a role granted
late (a ClusterRoleBinding applied with the DaemonSet) is picked up.
The loop takes its sleep and a bounded iteration count as arguments, so
tests drive it step by step instead of patching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from .kubeclient import ApiUnreachable, KubeApiError, KubeClient
from .pacing import Backoff, Sleep

log = logging.getLogger(__name__)

Object = dict[str, Any]
Key = tuple[str, str]
Trim = Callable[[Object], Object]


def key_of(obj: Object) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Reflector:
    """The objects of one collection (optionally field-selected), kept current.

    `path` is the collection's URL path (all namespaces), e.g.
    ``/api/v1/pods``.  ``lists`` counts complete lists (1 after the initial
    one; each relist adds one) and ``watches`` counts watch requests.
    ``forbidden`` is the 403 that keeps it from caching, while one does.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        path: str,
        field_selector: str = "",
        trim: Trim = lambda obj: obj,
        watch_timeout: float = 300.0,
        page_size: int = 500,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.path = path
        self.field_selector = field_selector
        self.trim = trim
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._sleep = sleep
        self._rng = rng
        self.objects: dict[Key, Object] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.lists = 0
        self.watches = 0
        self.errors = 0
        self.forbidden: KubeApiError | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    # -- reading ----------------------------------------------------------

    def get(self, namespace: str, name: str) -> Object | None:
        return self.objects.get((namespace, name))

    @property
    def settled(self) -> bool:
        """Listed, or stopped by a 403: nothing more to wait for."""
        return self.synced.is_set() or self.forbidden is not None

    async def until(self, predicate: Callable[[], bool], *, timeout: float | None) -> bool:
        """Wait until `predicate()` holds, re-checked after each change; False at the timeout."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    waiter = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError:
            return predicate()
        return True

    @property
    def waiting(self) -> int:
        """Callers in `until` right now."""
        return len(self._waiters)

    def _changed(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the loop ---------------------------------------------------------

    async def run(self, *, _iterations: int | None = None) -> None:
        """List, then watch and resume, forever; `_iterations` bounds it for tests.

        Each iteration is one list or one watch request (with its backoff
        after a failure).
        """
        done = 0
        while _iterations is None or done < _iterations:
            done += 1
            try:
                if self.resource_version:
                    await self._watch()
                else:
                    await self._list()
                self.backoff.reset()
            except KubeApiError as err:
                self.errors += 1
                if err.code == 403:
                    self._forbid(err)
                    await self._sleep(self.backoff.maximum)
                    continue
                if err.code == 410 or "Too large resource version" in err.message:
                    log.info("%s: %s; listing again", self.path, err)
                    self.resource_version = ""
                    if err.code == 410:
                        continue  # the normal end of a long watch: no backoff
                await self._pause(err)
            except ApiUnreachable as err:
                self.errors += 1
                await self._pause(err)

    def _forbid(self, err: KubeApiError) -> None:
        # Said once: the retries that follow are slow and would only repeat it.
        if self.forbidden is None:
            log.warning(
                "%s: not caching it: %s; each lookup asks the API server instead "
                "(grant list and watch on it for lookups that cost no request)",
                self.path,
                err.message,
            )
        self.forbidden = err
        self.objects = {}
        self.resource_version = ""
        self.synced.clear()
        self._changed()

    async def _pause(self, err: Exception) -> None:
        delay = self.backoff.next()
        log.warning("%s: %s; trying again in %.1fs", self.path, err, delay)
        await self._sleep(delay)

    async def _list(self) -> None:
        objects: dict[Key, Object] = {}
        token = ""
        while True:
            query = {"limit": str(self.page_size)}
            if self.field_selector:
                query["fieldSelector"] = self.field_selector
            if token:
                query["continue"] = token
            page = await self.client.list(self.path, query=query)
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    obj = self.trim(item)
                    objects[key_of(obj)] = obj
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.objects = objects
        self.resource_version = str(meta.get("resourceVersion") or "")
        self.lists += 1
        if self.forbidden is not None:
            log.warning("%s: listing is allowed now: caching it again", self.path)
            self.forbidden = None
        log.debug("%s: listed %d objects at %s", self.path, len(objects), self.resource_version)
        self.synced.set()
        self._changed()

    async def _watch(self) -> None:
        # A random server-side timeout, as client-go's reflector picks, so
        # the watches of many nodes do not all restart together.
        timeout = int(self.watch_timeout * (1 + self._rng()))
        query = {
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, timeout)),
        }
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        self.watches += 1
        async with contextlib.aclosing(self.client.watch(self.path, query=query)) as events:
            async for event in events:
                self._apply(event)

    def _apply(self, event: Object) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            raise KubeApiError.from_status(obj, code=int(obj.get("code") or 500))
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind in ("ADDED", "MODIFIED"):
            trimmed = self.trim(obj)
            self.objects[key_of(trimmed)] = trimmed
        elif kind == "DELETED":
            self.objects.pop(key_of(obj), None)
        elif kind != "BOOKMARK":
            log.warning("%s: ignoring a watch event of type %r", self.path, kind)
            return
        if rv:
            self.resource_version = rv
        self._changed()
