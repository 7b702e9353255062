"""A source made on first use, for the thin plugin's DEL.

A thin call is a new process that imports its Kubernetes client (about
20 ms on a small node) before it can ask anything.  A DEL needs the API only
to clear the pod's network-status, which runs beside the delegates' DELs
(`multihome.engine.engine.Engine.delete`): made there, the client is
imported while the plugins run.  A kubeconfig that cannot be read then fails
that status write (logged), not the DEL: the delegates release what they
hold either way.  It has no ``devices``: a DEL's plan uses the default
device-info directory, as the thin plugin's client does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .source import EventType, Object, Source


class Stoppable(Source, Protocol):
    async def stop(self) -> None: ...


class DeferredSource:
    """`Source` whose calls go to ``make()``'s source, made at the first call that needs it."""

    def __init__(self, make: Callable[[], Stoppable]) -> None:
        self._make = make
        self._made: Stoppable | None = None

    def _source(self) -> Stoppable:
        if self._made is None:
            self._made = self._make()
        return self._made

    async def get_pod(self, namespace: str, name: str, *, uid: str = "") -> Object | None:
        return await self._source().get_pod(namespace, name, uid=uid)

    def cached_pod(self, namespace: str, name: str) -> Object | None:
        # Not made yet: it has nothing at hand, and a DEL must not wait to find out.
        return None if self._made is None else self._made.cached_pod(namespace, name)

    async def get_nad(self, namespace: str, name: str) -> Object | None:
        return await self._source().get_nad(namespace, name)

    async def set_network_status(self, pod: Object, status: str | None) -> None:
        await self._source().set_network_status(pod, status)

    async def emit_event(self, pod: Object, *, type: EventType, reason: str, message: str) -> None:
        await self._source().emit_event(pod, type=type, reason=reason, message=message)

    async def stop(self) -> None:
        if self._made is not None:
            await self._made.stop()
