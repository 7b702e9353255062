"""The node daemon: the engine served over a unix socket, to the shim and to Multus' shim.

One asyncio process per node (thick mode).  This module is its life cycle
and the execution of a CNI request; the socket is `multihome.daemon.listening`,
the two HTTP APIs `multihome.daemon.wire` (served by
`multihome.daemon.httpserver`), admission (draining, readiness,
the per-container lock and deadline) `multihome.daemon.admission` and
`multihome.daemon.jobs`, and what ``multihome status`` shows
`multihome.daemon.status`.

Every CNI request gets the daemon file's per-request override
(`DaemonConfig.override`), is admitted (bounded concurrency, one request at
a time per container, a deadline after which an ADD is cancelled and rolls
back) and runs on the engine with the node's source of pods and NADs: the
manifest directory when the configuration names one, else the Kubernetes
watch cache, else none.

SIGTERM or SIGINT: ``/readyz`` turns unready at once, new CNI requests get
error 11 ("retry"), requests in flight finish (for ``shutdownTimeoutSeconds``;
after that they are cancelled once and roll back), then the socket goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from multihome import __version__, afteranswer
from multihome.cluster.credentials import CredentialsError
from multihome.cluster.kube import KubeSource
from multihome.cluster.local import LocalSource
from multihome.cluster.source import Source
from multihome.cni.errors import CNIError
from multihome.cni.process import Exec, SubprocessExec
from multihome.cni.request import Request
from multihome.cni.version import version_text
from multihome.engine import statuswrites
from multihome.engine.engine import Engine, import_planning
from multihome.networks.config import MultusConfig

from . import logs, wire
from .admission import Admission, pod_of
from .confgen import ConfigManager
from .config import DaemonConfig
from .hotplug import HotplugController
from .httpserver import ReadDeadlines, Server
from .jobs import Jobs
from .listening import ListenError, listen, remove_socket
from .metrics import LiveValues, MeteredExec, Metrics, metrics_routes
from .plugingroups import PluginGroups
from .status import list_attachments
from .statuswriter import StatusWriter

log = logging.getLogger(__name__)

#: Seconds a client has to send a whole request (head and body; upstream: none).
REQUEST_READ_TIMEOUT = 10.0
#: Shutdown: requests in flight are cancelled (and roll back) at 75 % of
#: shutdownTimeoutSeconds; at 90 % the plugins still running are killed.
SHUTDOWN_CANCEL_AT = 0.75
SHUTDOWN_ROLLBACK = 0.15
#: Then the answers still being written get this long before their connections go.
SERVER_CLOSE_GRACE = 5.0
#: How long requests wait for the Kubernetes caches at start-up (upstream: 20 s).
CACHE_SYNC_WAIT = 20.0
# Keys whose presence in the daemon file turns config generation on (see `_generates_config`).
_CONFGEN_KEYS = ("cniconfigdir", "multusautoconfigdir", "multusconfigfile")


class DaemonError(Exception):
    """The daemon cannot start; ``exit_code`` follows upstream (1 config, 2 config
    generation, 3 server)."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Daemon:
    """The daemon's state and life cycle; `serve` runs it as a process.

    ``executor`` and ``source`` replace the plugin runner and the cluster
    source (tests); ``allow_non_root`` lets tests run it unprivileged.
    """

    def __init__(
        self,
        config: DaemonConfig,
        *,
        executor: Exec | None = None,
        source: Source | None = None,
        allow_non_root: bool = False,
        read_timeout: float = REQUEST_READ_TIMEOUT,
    ) -> None:
        self.config = config
        #: A request's head and body must arrive within this (slow clients are cut off).
        self.deadlines = ReadDeadlines(read_timeout)
        self.allow_non_root = allow_non_root
        self.metrics = Metrics(
            LiveValues(
                attachments=self._count_attachments,
                api_requests=self._api_requests,
                watch_cache=self._watch_cache,
            )
        )
        self.plugin_groups = PluginGroups(os.path.join(config.socket_dir, "plugins"))
        base = executor or SubprocessExec(watcher=self.plugin_groups)
        #: The real plugin runner (None with a test's fake): killed at the end of a shutdown.
        self.subprocesses = base if isinstance(base, SubprocessExec) else None
        self.executor = MeteredExec(base, self.metrics)
        self.source = source
        self.kube: KubeSource | None = None
        self.jobs = Jobs(limit=config.max_concurrent_requests)
        self.metrics.in_flight.set_function(lambda: self.jobs.running)
        self.metrics.queued.set_function(lambda: self.jobs.queued)
        self.metrics.pending_status_writes.set_function(self._count_pending)
        #: Writes the network-status ADDs leave pending (all of them in Kubernetes mode).
        self.status_writer = StatusWriter(lambda: self.cache_dirs, self._write_status)
        self.metrics.ready.set_function(lambda: self.state() == "ready")
        self.metrics.events_pending.set_function(
            lambda: self.kube.recorder.pending if self.kube else 0
        )
        self.confgen: ConfigManager | None = None
        #: Every attachment cache a request used (``<cniDir>/multihome``), for status.
        self.cache_dirs: set[str] = {config.cache_dir}
        self.admission = Admission(config, self.jobs)
        self.started = time.monotonic()
        self.metrics_address = ""
        self._server: Server | None = None
        self._metrics_server: Server | None = None
        self._socket_inode: tuple[int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: The hot-plug controller, when ``hotplug`` is on (`multihome.daemon.hotplug`).
        self.hotplug: HotplugController | None = None
        self._local = self._engine(None)
        self._cluster = self._engine(source)
        import_planning()

    @property
    def draining(self) -> bool:
        return self.admission.draining

    def _engine(self, source: Source | None) -> Engine:
        return Engine(
            source=source,
            executor=self.executor,
            on_delegate=self.metrics.on_delegate,
            # An ADD answers within its deadline even when the API does not.
            status_budget=min(statuswrites.ATTEMPT_BUDGET, self.config.request_timeout / 4),
            # The API is off the ADD's critical path: the status writer sends it.
            status_in_background=source is not None,
        )

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; serve CNI requests once the source's caches are loaded."""
        if os.geteuid() != 0 and not self.allow_non_root:
            raise DaemonError(
                "the multihome daemon must run as root: it runs CNI plugins that change "
                "network namespaces, and its socket is root's only",
                exit_code=3,
            )
        for notice in self.config.notices:
            log.warning("%s", notice)
        if self._generates_config():
            try:
                self.confgen = ConfigManager(self.config.raw.to_dict())
            except CNIError as err:
                raise DaemonError(f"config generation: {err}", exit_code=1) from err
        if self.source is None and self.config.kube is not None:
            try:
                self.kube = KubeSource(self.config.kube)
            except CredentialsError as err:
                raise DaemonError(f"cannot reach the Kubernetes API: {err}", exit_code=1) from err
            self.source = self.kube
            self._cluster = self._engine(self.kube)

        # Before anything runs: plugins a killed predecessor left must not race the retries.
        self.plugin_groups.kill_leftovers()
        try:
            sock, self._socket_inode = listen(self.config.socket_dir, self.config.socket_path)
        except ListenError as err:
            raise DaemonError(str(err)) from err
        self._server = wire.server(self)
        await self._server.listen_unix(sock)
        log.info(
            "multihome daemon %s listening on %s (source: %s)",
            __version__,
            self.config.socket_path,
            self.source_name(),
        )
        if self.config.metrics_port is not None:
            await self._start_metrics()
        if self.kube is not None:
            await self.kube.start()
        self._tasks.append(asyncio.create_task(self._become_ready(), name="multihome-ready"))
        self._tasks.append(asyncio.create_task(self._write_statuses(), name="multihome-status"))

    async def _become_ready(self) -> None:
        if self.kube is not None:
            started = time.monotonic()
            if await self.kube.wait_ready(CACHE_SYNC_WAIT):
                log.info(
                    "Kubernetes caches loaded in %.1f s: %d pods, %d NADs",
                    time.monotonic() - started,
                    len(self.kube.pods.objects),
                    len(self.kube.nads.objects),
                )
            else:
                # As upstream: serve anyway; the source asks the API for what
                # its caches do not hold yet.
                log.warning(
                    "the Kubernetes caches are not loaded after %g s; serving anyway",
                    CACHE_SYNC_WAIT,
                )
        self.admission.serving.set()
        if self.config.hotplug and not self.draining:
            self._start_hotplug()
        # The node's CNI config is written once requests can be served, as upstream does.
        if self.confgen is not None and not self.draining:
            self._tasks.append(asyncio.create_task(self.confgen.run(), name="multihome-confgen"))

    def _start_hotplug(self) -> None:
        """The hot-plug controller (``hotplug``): only with the watch cache's pods."""
        if getattr(self._cluster.source, "cached_pod", None) is None:
            log.warning("hotplug is on but the daemon has no Kubernetes watch cache: it is off")
            return
        self.hotplug = HotplugController(
            self._cluster,
            cache_dirs=lambda: self.cache_dirs,
            resync=self.config.hotplug_resync,
            registry=self.metrics.registry,
        )
        self._tasks.append(asyncio.create_task(self.hotplug.run(), name="multihome-hotplug"))

    async def _write_statuses(self) -> None:
        """Keep writing the network-status ADDs left pending, until each lands (`statuswriter`)."""
        await self.admission.serving.wait()
        await self.status_writer.run(lambda: self.draining)

    async def _write_status(self, directory: str, container_id: str) -> bool:
        return await self._cluster.write_pending_one(directory, container_id)

    def _count_pending(self) -> int:
        return sum(len(statuswrites.pending_ids(d)) for d in self.cache_dirs)

    def _generates_config(self) -> bool:
        # Upstream generates by default, into /etc/cni/net.d; here only when the
        # file asks for it (its own DaemonSet config always does), so that a
        # daemon started for tests or by hand never rewrites the node's CNI config.
        return any(key.casefold() in _CONFGEN_KEYS for key in self.config.raw)

    async def _start_metrics(self) -> None:
        routes = metrics_routes(self.metrics)
        wire.add_health_routes(routes, self)
        self._metrics_server = Server(
            routes, deadlines=ReadDeadlines(self.deadlines.timeout), max_body=4096
        )
        host = self.config.metrics_address or None
        try:
            address = await self._metrics_server.listen_tcp(host, self.config.metrics_port or 0)
        except OSError as err:
            raise DaemonError(
                f"cannot serve metrics on port {self.config.metrics_port}: {err.strerror or err}"
            ) from err
        self.metrics_address = f"{address[0]}:{address[1]}"
        log.info("metrics on http://%s/metrics", self.metrics_address)

    def shut_down(self) -> None:
        """SIGTERM: unready at once, new CNI requests refused with code 11."""
        if not self.draining:
            self.admission.draining = True
            self.admission.serving.set()  # requests waiting for the caches get their refusal now
            log.info(
                "shutting down: %d requests in flight, new ones are refused",
                self.jobs.in_flight,
            )

    async def stop(self) -> None:
        """Let requests in flight finish (bounded), then close everything."""
        self.shut_down()
        budget = self.config.shutdown_timeout
        started = time.monotonic()
        cancelled = await self.jobs.drain(
            budget * SHUTDOWN_CANCEL_AT, rollback_timeout=budget * SHUTDOWN_ROLLBACK
        )
        if cancelled:
            log.warning(
                "%d requests did not finish within %g s of shutdownTimeoutSeconds: "
                "they were cancelled and rolled back",
                cancelled,
                budget * SHUTDOWN_CANCEL_AT,
            )
        if self.jobs.in_flight and self.subprocesses is not None:
            # A rollback waiting on a plugin that hangs: the budget is spent. Kill
            # the plugins; what could not be undone stays in the attachment cache,
            # and the runtime's retry (ADD or DEL) on the next daemon finishes it.
            killed = self.subprocesses.kill_all()
            left = max(budget - (time.monotonic() - started), 0.0)
            await self.jobs.drain(0.0, rollback_timeout=left)
            log.warning(
                "shutdown budget spent: killed %d plugins; %d requests left to the next daemon",
                killed,
                self.jobs.in_flight,
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.close(grace=SERVER_CLOSE_GRACE)
        remove_socket(self.config.socket_path, self._socket_inode)
        if self._metrics_server is not None:
            await self._metrics_server.close(grace=SERVER_CLOSE_GRACE)
        if self.kube is not None:
            # What ADDs left to the writer goes out first, then the events: both
            # within stopFlushSeconds; what is left the next daemon writes.
            flush = self.kube.config.stop_flush_seconds
            deadline = time.monotonic() + flush
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush):
                    await self.status_writer.round()
            await self.kube.stop(flush_seconds=deadline - time.monotonic())
        log.info("stopped")

    # -- serving CNI requests -------------------------------------------------------------

    async def cni(self, env: Mapping[str, str], stdin: bytes, *, request_id: str) -> str:
        """One CNI request: the text the runtime gets on success; a `CNIError` otherwise."""
        started = time.monotonic()
        command = env.get("CNI_COMMAND", "")
        outcome = "success"
        with logs.bound(
            request=request_id, command=command, container=env.get("CNI_CONTAINERID", "")
        ):
            try:
                request = Request.from_env(env, stdin)
                with logs.bound(pod=pod_of(request)):
                    text = await self.admission.admit(
                        request, self._execute, started=started, override=True
                    )
                    log.info("%s done in %.3f s", command, time.monotonic() - started)
                    return text
            except CNIError as err:
                outcome = str(err.code)
                log.warning("%s failed: %s", command or "request", err)
                raise
            except Exception as err:
                error = wire.unexpected(err)
                outcome = str(int(error.code))
                log.warning("%s failed: %s", command or "request", error)
                raise error from err
            finally:
                self.metrics.observe_request(command, outcome, time.monotonic() - started)

    async def _execute(self, request: Request) -> str:
        if request.command == "VERSION":
            return version_text()
        config = _multus_config(request.stdin)
        for notice in config.notices:
            log.info("%s", notice)
        cache_dir = os.path.join(config.cni_dir, "multihome")
        self.cache_dirs.add(cache_dir)
        engine = self._local if config.manifest_dir or self.source is None else self._cluster
        with self.metrics.request_scope():
            done = await engine.run(request, config)
            if request.command == "ADD" and os.path.exists(
                statuswrites.path_of(cache_dir, request.container_id)
            ):
                afteranswer.defer(self.status_writer.wake.set)
            if done.outcome is not None:
                log.info(
                    "attached %s",
                    ", ".join(f"{a.name} as {a.ifname}" for a in done.outcome.plan.attachments),
                )
            if request.command == "DEL":
                self.metrics.observe_delete(done.deleted)
        return done.text

    def attachments(self) -> list[dict[str, Any]]:
        """What the attachment caches hold: one entry per container."""
        return list_attachments(self.cache_dirs)

    def delegate_source(self) -> Source | None:
        if self.config.manifest_dir:
            return LocalSource(self.config.manifest_dir)
        return self.source

    def state(self) -> str:
        if self.draining:
            return "shutting down"
        if not self.admission.serving.is_set():
            return "loading the Kubernetes caches"
        if self.confgen is not None and not self.confgen.status.ready:
            return f"config generation: {self.confgen.status.reason}"
        return "ready"

    # -- live values for metrics -----------------------------------------------------------

    def _count_attachments(self) -> tuple[int, int]:
        records = self.attachments()
        return len(records), sum(len(r["networks"]) for r in records)

    def _api_requests(self) -> Mapping[str, int]:
        return dict(self.kube.requests) if self.kube is not None else {}

    def _watch_cache(self) -> Mapping[str, int]:
        if self.kube is None:
            return {}
        return {"pods": len(self.kube.pods.objects), "nads": len(self.kube.nads.objects)}

    def source_name(self) -> str:
        if self.kube is not None:
            return "kubernetes"
        if self.source is not None:
            return "injected"
        return "manifests" if self.config.manifest_dir else "manifestDir of each request, or none"


async def serve(config: DaemonConfig, *, allow_non_root: bool = False) -> int:
    """Run the daemon until SIGTERM or SIGINT; the process exit code."""
    daemon = Daemon(config, allow_non_root=allow_non_root)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.info("%s: already shutting down", signal.Signals(signum).name)
            return
        log.info("%s received", signal.Signals(signum).name)
        daemon.shut_down()
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await daemon.start()
    except DaemonError as err:
        log.error("%s", err)
        await daemon.stop()
        return err.exit_code
    await stopping.wait()
    await daemon.stop()
    return 0


@functools.lru_cache(maxsize=64)
def _multus_config(stdin: bytes) -> MultusConfig:
    """`MultusConfig.parse`, kept: the runtime sends the same bytes for most pods.

    (A `CNIError` is raised again on every request; only a configuration is kept.)
    """
    return MultusConfig.parse(stdin)
