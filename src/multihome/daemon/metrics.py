"""Prometheus metrics of the daemon, served on their own TCP port.

What an operator asks of a CNI daemon: how many requests, how many failed
and with which code, how long each network takes to attach and detach, which
plugin is slow, how many requests are running or waiting, what is attached
on the node, how hard the daemon leans on the Kubernetes API, and how much
memory it holds (upstream's daemon runs with a 50 MiB limit and gets OOM
killed).  Upstream exposes a single request counter; its name,
``multus_server_request_total``, is kept for existing dashboards.

The registry is each daemon's own, so that several daemons in one test
process do not collide; the instruments and the text format are ours
(`multihome.daemon.exposition`, which says why).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import posixpath
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from multihome.cni.process import Exec, Outcome
from multihome.cni.request import COMMANDS
from multihome.engine.cache import CacheRecord

from .exposition import CONTENT_TYPE, Counter, Family, Gauge, Histogram, Registry
from .httpserver import Request, Response, Routes

# CNI calls take from a few milliseconds (a cached DEL) to minutes (a plugin
# waiting on its IPAM); the buckets cover both ends.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class _RequestScope:
    """What one CNI request's delegates did, for attributing time to networks."""

    #: Seconds of plugin processes by interface name (DEL has no plan to name networks by).
    by_ifname: dict[str, float] = field(default_factory=dict)
    #: Networks whose ADD time was already observed (the hook fires once per plugin).
    added: set[str] = field(default_factory=set)


_SCOPE: contextvars.ContextVar[_RequestScope | None] = contextvars.ContextVar(
    "multihome_metrics_scope", default=None
)


@dataclass
class LiveValues:
    """Values read when Prometheus scrapes, from whoever owns them."""

    #: Cached containers and attachments on the node.
    attachments: Callable[[], tuple[int, int]] = lambda: (0, 0)
    #: Kubernetes API requests sent, by verb.
    api_requests: Callable[[], Mapping[str, int]] = dict
    #: Objects in the watch caches, by kind (pods, nads).
    watch_cache: Callable[[], Mapping[str, int]] = dict


class _LiveCollector:
    def __init__(self, live: LiveValues) -> None:
        self.live = live

    def collect(self) -> Iterator[Family]:
        # prometheus-client's name and help; the dashboard's memory panel reads it.
        process = Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
        process.add((), resident_memory())
        yield process
        containers, attachments = self.live.attachments()
        cached = Family(
            "multihome_cached_attachments",
            "gauge",
            "Network attachments in the attachment cache (what DEL will remove)",
        )
        cached.add((), attachments)
        yield cached
        pods = Family(
            "multihome_cached_containers",
            "gauge",
            "Containers with attachments in the attachment cache",
        )
        pods.add((), containers)
        yield pods
        api = Family(
            "multihome_kube_api_requests",
            "counter",
            "Requests sent to the Kubernetes API server, by verb",
            ("verb",),
        )
        for verb, count in sorted(self.live.api_requests().items()):
            api.add((verb,), count)
        yield api
        cache = Family(
            "multihome_watch_cache_objects",
            "gauge",
            "Objects held in the Kubernetes watch caches, by kind",
            ("kind",),
        )
        for kind, count in sorted(self.live.watch_cache().items()):
            cache.add((kind,), count)
        yield cache
        rss = Family(
            "multihome_resident_memory_peak_bytes", "gauge", "Peak resident memory of the daemon"
        )
        rss.add((), peak_resident_memory())
        yield rss


class Metrics:
    def __init__(self, live: LiveValues | None = None) -> None:
        self.registry = Registry()
        self.live = live or LiveValues()
        self.registry.register(_LiveCollector(self.live))
        reg = self.registry
        self.http_requests = Counter(
            "multus_server_request",
            "HTTP requests on the daemon socket (upstream Multus' name)",
            ["handler", "code", "method"],
            registry=reg,
        )
        self.cni_requests = Counter(
            "multihome_cni_requests",
            "CNI requests by command and outcome (success or the CNI error code)",
            ["command", "outcome"],
            registry=reg,
        )
        self.cni_seconds = Histogram(
            "multihome_cni_request_duration_seconds",
            "Time to answer a CNI request, queueing included, by command",
            ["command"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.network_add_seconds = Histogram(
            "multihome_network_add_duration_seconds",
            "Time to ADD one network (its whole chain), by network (namespace/name)",
            ["network"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.network_del_seconds = Histogram(
            "multihome_network_del_duration_seconds",
            "Time to DEL one network (its whole chain), by network (namespace/name)",
            ["network"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.delegate_seconds = Histogram(
            "multihome_delegate_duration_seconds",
            "Time of one plugin process, by plugin type and CNI command",
            ["plugin", "command"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "multihome_requests_in_flight", "CNI requests being served", registry=reg
        )
        self.queued = Gauge(
            "multihome_requests_queued",
            "CNI requests waiting for a free slot or for their container's previous request",
            registry=reg,
        )
        self.pending_status_writes = Gauge(
            "multihome_pending_status_writes",
            "Pods whose networks are attached and whose network-status write is still "
            "being retried",
            registry=reg,
        )
        self.ready = Gauge("multihome_ready", "1 while /readyz answers 200, else 0", registry=reg)
        self.events_pending = Gauge(
            "multihome_events_pending",
            "Kubernetes events queued and not yet sent",
            registry=reg,
        )

    # -- per request --------------------------------------------------------------------

    @contextmanager
    def request_scope(self) -> Iterator[None]:
        """Attribute the plugin time of the code inside to this request."""
        token = _SCOPE.set(_RequestScope())
        try:
            yield
        finally:
            _SCOPE.reset(token)

    def on_delegate(self, network: str, plugin_type: str, seconds: float) -> None:
        """The engine's hook: called for each plugin of a network's ADD with the chain's time."""
        scope = _SCOPE.get()
        if scope is not None:
            if network in scope.added:
                return
            scope.added.add(network)
        self.network_add_seconds.labels(network).observe(seconds)

    def observe_delete(self, record: CacheRecord | None) -> None:
        """After a DEL: the plugin time of each network the record named."""
        scope = _SCOPE.get()
        if record is None or scope is None:
            return
        for attachment in record.attachments:
            seconds = scope.by_ifname.get(attachment.ifname)
            if seconds is not None:
                self.network_del_seconds.labels(attachment.network).observe(seconds)

    def observe_request(self, command: str, outcome: str, seconds: float) -> None:
        # The command comes from the caller: only the spec's make a label value.
        label = command if command in COMMANDS else "invalid"
        self.cni_requests.labels(label, outcome).inc()
        self.cni_seconds.labels(label).observe(seconds)

    def exposition(self) -> bytes:
        return self.registry.exposition()


class MeteredExec:
    """An `Exec` that times every plugin process it runs."""

    def __init__(self, inner: Exec, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        return self.inner.find(plugin_type, paths)

    @property
    def versions(self) -> dict[str, Any] | None:
        """The inner runner's VERSION cache (`multihome.cni.invoking.version_info`)."""
        return getattr(self.inner, "versions", None)

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        started = time.monotonic()
        try:
            return await self.inner.run(path, stdin=stdin, env=env)
        finally:
            elapsed = time.monotonic() - started
            command = env.get("CNI_COMMAND", "")
            self.metrics.delegate_seconds.labels(posixpath.basename(path), command).observe(elapsed)
            scope = _SCOPE.get()
            ifname = env.get("CNI_IFNAME", "")
            if scope is not None and ifname and command != "VERSION":
                scope.by_ifname[ifname] = scope.by_ifname.get(ifname, 0.0) + elapsed


def resident_memory() -> int:
    """Resident memory of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_resident_memory() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def metrics_routes(metrics: Metrics) -> Routes:
    """``/metrics`` for the TCP listener."""

    async def serve(_: Request) -> Response:
        # Off the event loop: collecting reads the attachment cache files.
        return Response(body=await asyncio.to_thread(metrics.exposition), content_type=CONTENT_TYPE)

    routes = Routes()
    routes.get("/metrics", serve)
    return routes
