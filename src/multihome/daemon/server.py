"""The node daemon: the engine served over a unix socket, to the shim and to Multus' shim.

One asyncio process per node (thick mode).  It listens on
``<socketDir>/<socketName>`` (directory 0700, socket 0600, root only) and
serves two APIs over HTTP/1.1:

* multihome's own, for ``multihome-shim``: ``POST /shim/v1/cni`` with
  ``{"env": {CNI_*}, "config": "<base64 stdin>"}``; the answer's body is
  exactly what the shim prints (the result in the runtime's cniVersion, or
  the CNI error JSON) and ``X-CNI-Exit-Code`` its exit code.  Plus ``GET
  /shim/v1/attachments`` and ``GET /shim/v1/info`` for ``multihome status``.
* upstream Multus' thick API, unchanged, so that the upstream Go shim and
  tools built on it work: ``POST /cni`` answered by ``{"Result": <1.0.0
  result>}`` (errors: 400 with a CNI error JSON body), ``POST /delegate``
  (hot-plug, `multihome.daemon.delegate`), ``/healthz`` and ``/readyz``.

Every CNI request gets the daemon file's per-request override
(`DaemonConfig.override`), is admitted by `multihome.daemon.jobs` (bounded
concurrency, one request at a time per container, a deadline after which an
ADD is cancelled and rolls back) and runs on the engine with the node's
source of pods and NADs: the manifest directory when the configuration names
one, else the Kubernetes watch cache, else none.

SIGTERM or SIGINT: ``/readyz`` turns unready at once, new CNI requests get
error 11 ("retry"), requests in flight finish (for ``shutdownTimeoutSeconds``;
after that they are cancelled once and roll back), then the socket goes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import stat
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import prometheus_client
from aiohttp import web

from multihome import __version__
from multihome.cluster.credentials import CredentialsError
from multihome.cluster.kube import KubeSource
from multihome.cluster.local import LocalSource
from multihome.cluster.source import Source
from multihome.cni.config import cni_version_of
from multihome.cni.errors import CNIError, Code
from multihome.cni.invoking import Exec, default_exec
from multihome.cni.request import Request
from multihome.cni.result import Result
from multihome.engine.cache import AttachmentCache, CacheRecord
from multihome.engine.engine import Engine, version_text
from multihome.networks.config import MultusConfig

from . import logs
from .confgen import ConfigManager
from .config import DaemonConfig
from .delegate import hot_plug
from .jobs import Jobs, Late
from .metrics import LiveValues, MeteredExec, Metrics, metrics_app, resident_memory

log = logging.getLogger(__name__)

SHIM_CNI_PATH = "/shim/v1/cni"
REQUEST_ID_HEADER = "X-Multihome-Request-Id"
EXIT_CODE_HEADER = "X-CNI-Exit-Code"
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
    """The daemon's state and its HTTP handlers; `serve` runs it as a process.

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
    ) -> None:
        self.config = config
        self.allow_non_root = allow_non_root
        self.metrics = Metrics(
            LiveValues(
                attachments=self._count_attachments,
                api_requests=self._api_requests,
                watch_cache=self._watch_cache,
            )
        )
        self.executor = MeteredExec(executor or default_exec(), self.metrics)
        self.source = source
        self.kube: KubeSource | None = None
        self.jobs = Jobs(limit=config.max_concurrent_requests)
        self.metrics.in_flight.set_function(lambda: self.jobs.running)
        self.metrics.queued.set_function(lambda: self.jobs.queued)
        self.metrics.status_writes_pending.set_function(
            lambda: self.kube.status_writes_pending if self.kube else 0
        )
        self.metrics.ready.set_function(lambda: self._state() == "ready")
        self.metrics.events_pending.set_function(
            lambda: self.kube.recorder.pending if self.kube else 0
        )
        self.confgen: ConfigManager | None = None
        #: Every attachment cache a request used (``<cniDir>/multihome``), for status.
        self.cache_dirs: set[str] = {config.cache_dir}
        self.draining = False
        self.started = time.monotonic()
        self.metrics_address = ""
        self._serving = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._socket_inode: tuple[int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._local = self._engine(None)
        self._cluster = self._engine(source)

    def _engine(self, source: Source | None) -> Engine:
        return Engine(source=source, executor=self.executor, on_delegate=self.metrics.on_delegate)

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

        app = web.Application(client_max_size=self.config.max_request_bytes)
        app.middlewares.append(self._count_requests)
        app.router.add_post(SHIM_CNI_PATH, self._shim_cni)
        app.router.add_get("/shim/v1/attachments", self._attachments)
        app.router.add_get("/shim/v1/info", self._info)
        app.router.add_post("/cni", self._multus_cni)
        app.router.add_post("/delegate", self._multus_delegate)
        for method in ("GET", "POST"):
            app.router.add_route(method, "/healthz", self._healthz)
            app.router.add_route(method, "/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        sock = self._listen()
        await web.SockSite(self._runner, sock).start()
        log.info(
            "multihome daemon %s listening on %s (source: %s)",
            __version__,
            self.config.socket_path,
            self._source_name(),
        )
        if self.config.metrics_port is not None:
            await self._start_metrics()
        if self.kube is not None:
            await self.kube.start()
        self._tasks.append(asyncio.create_task(self._become_ready(), name="multihome-ready"))

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
        self._serving.set()
        # The node's CNI config is written once requests can be served, as upstream does.
        if self.confgen is not None and not self.draining:
            self._tasks.append(asyncio.create_task(self.confgen.run(), name="multihome-confgen"))

    def _generates_config(self) -> bool:
        # Upstream generates by default, into /etc/cni/net.d; here only when the
        # file asks for it (its own DaemonSet config always does), so that a
        # daemon started for tests or by hand never rewrites the node's CNI config.
        return any(key.casefold() in _CONFGEN_KEYS for key in self.config.raw)

    def _listen(self) -> socket.socket:
        directory = self.config.socket_dir
        path = self.config.socket_path
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            _remove_stale_socket(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Created 0600 from the start: no moment in which others could connect.
            umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(umask)
            os.chmod(path, 0o600)
        except OSError as err:
            raise DaemonError(f"cannot listen on {path}: {err.strerror or err}") from err
        st = os.stat(path)
        self._socket_inode = (st.st_dev, st.st_ino)
        return sock

    async def _start_metrics(self) -> None:
        app = metrics_app(self.metrics)
        # The kubelet's probes speak HTTP over TCP, not over the unix socket.
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._metrics_runner = web.AppRunner(app, access_log=None)
        await self._metrics_runner.setup()
        host = self.config.metrics_address or None
        site = web.TCPSite(self._metrics_runner, host, self.config.metrics_port or 0)
        try:
            await site.start()
        except OSError as err:
            raise DaemonError(
                f"cannot serve metrics on port {self.config.metrics_port}: {err.strerror or err}"
            ) from err
        address = self._metrics_runner.addresses[0]
        self.metrics_address = f"{address[0]}:{address[1]}"
        log.info("metrics on http://%s/metrics", self.metrics_address)

    def shut_down(self) -> None:
        """SIGTERM: unready at once, new CNI requests refused with code 11."""
        if not self.draining:
            self.draining = True
            self._serving.set()  # requests waiting for the caches get their refusal now
            log.info(
                "shutting down: %d requests in flight, new ones are refused",
                self.jobs.in_flight,
            )

    async def stop(self) -> None:
        """Let requests in flight finish (bounded), then close everything."""
        self.shut_down()
        cancelled = await self.jobs.drain(self.config.shutdown_timeout)
        if cancelled:
            log.warning(
                "%d requests did not finish within %g s (shutdownTimeoutSeconds): "
                "they were cancelled and rolled back",
                cancelled,
                self.config.shutdown_timeout,
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._remove_socket()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.kube is not None:
            await self.kube.stop()
        log.info("stopped")

    def _remove_socket(self) -> None:
        # Only our own socket: a new daemon may already listen at the same path.
        path = self.config.socket_path
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._socket_inode:
                os.unlink(path)

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
                with logs.bound(pod=_pod_of(request)):
                    text = await self._admit(request, self._execute, started=started, override=True)
                    log.info("%s done in %.3f s", command, time.monotonic() - started)
                    return text
            except CNIError as err:
                outcome = str(err.code)
                log.warning("%s failed: %s", command or "request", err)
                raise
            except Exception as err:
                outcome = str(int(Code.INTERNAL))
                log.exception("%s: internal error", command or "request")
                raise CNIError(
                    Code.INTERNAL, f"internal error in the multihome daemon: {err}"
                ) from err
            finally:
                self.metrics.observe_request(command, outcome, time.monotonic() - started)

    async def _admit(
        self,
        request: Request,
        work: Callable[[Request], Awaitable[str]],
        *,
        started: float,
        override: bool,
    ) -> str:
        if self.draining:
            raise _shutting_down()
        if override and request.command != "VERSION":
            request = dataclasses.replace(request, stdin=self.config.override(request.stdin))
        deadline = started + self.config.request_timeout
        # DEL works from the attachment cache alone: it never waits for the API.
        if not self._serving.is_set() and request.command not in ("DEL", "VERSION"):
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    await self._serving.wait()
            except TimeoutError:
                raise CNIError(
                    Code.TRY_AGAIN_LATER,
                    "the multihome daemon is not ready: the Kubernetes API caches are still "
                    "loading",
                    "check that the daemon can reach the API server; the runtime retries",
                ) from None
        if self.draining:
            raise _shutting_down()
        try:
            return await self.jobs.run(
                request.container_id,
                lambda: work(request),
                timeout=max(deadline - time.monotonic(), 0.0),
            )
        except Late as late:
            raise _late(
                request, self.config.request_timeout, rolled_back=late.rolled_back
            ) from None

    async def _execute(self, request: Request) -> str:
        if request.command == "VERSION":
            return version_text()
        config = MultusConfig.parse(request.stdin)
        for notice in config.notices:
            log.info("%s", notice)
        cache_dir = os.path.join(config.cni_dir, "multihome")
        self.cache_dirs.add(cache_dir)
        engine = self._local if config.manifest_dir or self.source is None else self._cluster
        with self.metrics.request_scope():
            done = await engine.run(request, config)
            if done.outcome is not None:
                log.info(
                    "attached %s",
                    ", ".join(f"{a.name} as {a.ifname}" for a in done.outcome.plan.attachments),
                )
            if request.command == "DEL":
                self.metrics.observe_delete(done.deleted)
        return done.text

    # -- HTTP: multihome's shim ----------------------------------------------------------

    async def _shim_cni(self, http: web.Request) -> web.Response:
        request_id = http.headers.get(REQUEST_ID_HEADER) or _new_id()
        version = "1.0.0"
        try:
            env, stdin, _ = _decode_call(await self._body(http))
            version = cni_version_of(stdin) or version
            text = await self.cni(env, stdin, request_id=request_id)
        except CNIError as err:
            return _shim_answer(err.to_json(version) + "\n", code=1, status=_status_of(err))
        except _TooLarge as err:
            return _shim_answer(err.error.to_json(version) + "\n", code=1, status=413)
        return _shim_answer(text + "\n" if text else "", code=0, status=200)

    async def _attachments(self, _: web.Request) -> web.Response:
        listing = await asyncio.to_thread(self.attachments)
        return web.json_response({"attachments": listing})

    def attachments(self) -> list[dict[str, Any]]:
        """What the attachment caches hold: one entry per container."""
        out = []
        for directory in sorted(self.cache_dirs):
            cache = AttachmentCache(directory)
            for container_id in cache.container_ids():
                record = cache.load(container_id)
                if record is not None:
                    out.append(_describe(record, directory))
        return out

    async def _info(self, _: web.Request) -> web.Response:
        info: dict[str, Any] = {
            "version": __version__,
            "pid": os.getpid(),
            "socket": self.config.socket_path,
            "state": self._state(),
            "uptimeSeconds": round(time.monotonic() - self.started, 3),
            "residentMemoryBytes": resident_memory(),
            "source": self._source_name(),
            "inFlight": self.jobs.in_flight,
            "queued": self.jobs.queued,
            "maxConcurrentRequests": self.config.max_concurrent_requests,
            "metrics": self.metrics_address or None,
            "cacheDirs": sorted(self.cache_dirs),
        }
        if self.kube is not None:
            info["kube"] = {
                "ready": self.kube.ready(),
                "pods": len(self.kube.pods.objects),
                "nads": len(self.kube.nads.objects),
                "apiRequests": dict(self.kube.requests),
            }
        if self.confgen is not None:
            status = self.confgen.status
            info["config"] = {
                "path": self.confgen.path,
                "ready": status.ready,
                "primary": status.source,
                "problem": status.reason,
            }
        return web.json_response(info)

    # -- HTTP: upstream Multus' thick API --------------------------------------------------

    async def _multus_cni(self, http: web.Request) -> web.Response:
        version = "1.0.0"
        try:
            env, stdin, _ = _decode_call(await self._body(http))
            version = cni_version_of(stdin) or version
            text = await self.cni(
                self._multus_env(env),
                stdin,
                request_id=http.headers.get(REQUEST_ID_HEADER) or _new_id(),
            )
        except CNIError as err:
            return _multus_error(err, version, status=400)
        except _TooLarge as err:
            return _multus_error(err.error, version, status=413)
        if env.get("CNI_COMMAND") != "ADD":
            return web.Response(status=200)
        return _multus_result(Result.parse(text))

    async def _multus_delegate(self, http: web.Request) -> web.Response:
        version = "1.0.0"
        started = time.monotonic()
        request_id = http.headers.get(REQUEST_ID_HEADER) or _new_id()
        try:
            env, stdin, attributes = _decode_call(await self._body(http))
            version = cni_version_of(stdin) or version
            env = self._multus_env(env)
            with logs.bound(
                request=request_id,
                command=f"delegate {env.get('CNI_COMMAND', '')}",
                container=env.get("CNI_CONTAINERID", ""),
            ):
                request = Request.from_env(env, stdin)
                result: list[Result | None] = []

                async def work(r: Request) -> str:
                    result.append(
                        await hot_plug(
                            r,
                            attributes=attributes,
                            source=self._delegate_source(),
                            cache=AttachmentCache(self.config.cache_dir),
                            bin_dir=self.config.bin_dir,
                            executor=self.executor,
                        )
                    )
                    return ""

                try:
                    await self._admit(request, work, started=started, override=False)
                except CNIError as err:
                    log.warning("hot-plug %s failed: %s", request.command, err)
                    raise
        except CNIError as err:
            return _multus_error(err, version, status=400)
        except _TooLarge as err:
            return _multus_error(err.error, version, status=413)
        if result and result[0] is not None:
            return _multus_result(result[0])
        return web.Response(status=200)

    def _multus_env(self, env: Mapping[str, str]) -> dict[str, str]:
        # Upstream defaults the interface name and finds plugins in binDir alone;
        # callers of this API (controllers) may send neither.
        out = dict(env)
        out.setdefault("CNI_IFNAME", "eth0")
        if not out.get("CNI_PATH"):
            out["CNI_PATH"] = self.config.bin_dir
        return out

    def _delegate_source(self) -> Source | None:
        if self.config.manifest_dir:
            return LocalSource(self.config.manifest_dir)
        return self.source

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _readyz(self, _: web.Request) -> web.Response:
        state = self._state()
        if state == "ready":
            return web.Response(status=200)
        # Upstream answers 500 once shutting down; "not yet" is 503.
        return web.Response(status=500 if self.draining else 503, text=state + "\n")

    def _state(self) -> str:
        if self.draining:
            return "shutting down"
        if not self._serving.is_set():
            return "loading the Kubernetes caches"
        if self.confgen is not None and not self.confgen.status.ready:
            return f"config generation: {self.confgen.status.reason}"
        return "ready"

    # -- HTTP plumbing ---------------------------------------------------------------------

    async def _body(self, http: web.Request) -> bytes:
        limit = self.config.max_request_bytes
        if http.content_length is not None and http.content_length > limit:
            raise _TooLarge(limit, http.content_length)
        try:
            return await http.read()
        except web.HTTPRequestEntityTooLarge as err:
            raise _TooLarge(limit, None) from err

    @web.middleware
    async def _count_requests(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "NotFound"
        try:
            response = await handler(request)
        except web.HTTPException as err:
            if err.status == 404:
                name = "NotFound"
                response = web.Response(status=404)  # upstream answers an empty 404
            else:
                self.metrics.http_requests.labels(name, str(err.status), request.method).inc()
                raise
        self.metrics.http_requests.labels(name, str(response.status), request.method).inc()
        return response

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

    def _source_name(self) -> str:
        if self.kube is not None:
            return "kubernetes"
        if self.source is not None:
            return "injected"
        return "manifests" if self.config.manifest_dir else "manifestDir of each request, or none"


class _TooLarge(Exception):
    def __init__(self, limit: int, size: int | None) -> None:
        super().__init__("request too large")
        size_text = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        self.error = CNIError(
            Code.IO_FAILURE,
            f"request to the multihome daemon too large: {size_text}",
            f"the daemon accepts at most {limit} bytes (maxRequestBytes)",
        )


def _decode_call(body: bytes) -> tuple[dict[str, str], bytes, dict[str, Any] | None]:
    """``{"env": {...}, "config": "<base64>", "interfaceAttributes": {...}}`` as sent by a shim."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise _malformed(f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise _malformed("the body is not a JSON object")
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _malformed('"env" is not an object of strings')
    config = data.get("config") or ""
    if not isinstance(config, str):
        raise _malformed('"config" is not a base64 string')
    try:
        stdin = base64.b64decode(config, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _malformed(f'"config" is not base64: {err}') from err
    attributes = data.get("interfaceAttributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise _malformed('"interfaceAttributes" is not an object')
    return env, stdin, attributes


def _malformed(what: str) -> CNIError:
    return CNIError(
        Code.DECODE_FAILURE,
        f"malformed request to the multihome daemon: {what}",
        'the body must be {"env": {"CNI_COMMAND": ...}, "config": "<base64 of the CNI config>"}',
    )


def _shutting_down() -> CNIError:
    return CNIError(
        Code.TRY_AGAIN_LATER,
        "the multihome daemon is shutting down",
        "retry: the runtime retries, and the next daemon on this node answers",
    )


def _late(request: Request, timeout: float, *, rolled_back: bool) -> CNIError:
    what = f"{request.command} of pod {_pod_of(request) or request.container_id}"
    if request.command != "ADD":
        done = "it was cancelled; retrying it is safe"
    elif rolled_back:
        done = "it was cancelled and what it had attached was removed"
    else:
        done = (
            "it was cancelled and what it had attached is being removed; the next request "
            "for this container waits for that"
        )
    return CNIError(
        Code.TRY_AGAIN_LATER,
        f"{what} did not finish within {timeout:g} s (requestTimeoutSeconds)",
        f"{done}; a plugin may be waiting for a lock or a remote service",
    )


def _pod_of(request: Request) -> str:
    k8s = request.k8s
    return f"{k8s.namespace or 'default'}/{k8s.name}" if k8s.name else ""


def _status_of(err: CNIError) -> int:
    if err.code == Code.TRY_AGAIN_LATER:
        return 503
    if err.code == Code.INTERNAL:
        return 500
    return 400


def _shim_answer(body: str, *, code: int, status: int) -> web.Response:
    response = web.Response(status=status, text=body, content_type="application/json")
    response.headers[EXIT_CODE_HEADER] = str(code)
    return response


def _multus_result(result: Result) -> web.Response:
    # As Go's json.Marshal(&api.Response{Result: ...}) writes it: no spaces.
    body = json.dumps({"Result": result.to_dict("1.0.0")}, separators=(",", ":"))
    return web.Response(status=200, text=body, content_type="application/json")


def _multus_error(err: CNIError, version: str, *, status: int) -> web.Response:
    return web.Response(status=status, text=err.to_json(version), content_type="application/json")


def _describe(record: CacheRecord, directory: str) -> dict[str, Any]:
    networks = []
    for attachment in record.attachments:
        ips: list[str] = []
        mac = ""
        result = attachment.result or {}
        interfaces = result.get("interfaces") or []
        for ip in result.get("ips") or []:
            if isinstance(ip, dict) and isinstance(ip.get("address"), str):
                ips.append(ip["address"])
        for intf in interfaces:
            if isinstance(intf, dict) and intf.get("name") == attachment.ifname:
                mac = str(intf.get("mac") or "")
        networks.append(
            {
                "network": attachment.network,
                "interface": attachment.ifname,
                "ips": ips,
                "mac": mac,
                "default": attachment.primary,
                "state": attachment.state,
            }
        )
    return {
        "containerId": record.container_id,
        "pod": record.pod if record.pod_name else "",
        "podUid": record.pod_uid,
        "netns": record.netns,
        "cacheDir": directory,
        "networks": networks,
    }


def _remove_stale_socket(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse when one still listens."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(
            f"{path} exists and is not a socket; remove it or choose another socketDir/socketName"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise DaemonError(f"another multihome daemon is listening on {path}")


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


async def serve(config: DaemonConfig, *, allow_non_root: bool = False) -> int:
    """Run the daemon until SIGTERM or SIGINT; the process exit code."""
    # One ``_created`` series per series doubles a scrape for nothing a dashboard uses.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
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
