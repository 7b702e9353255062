"""The daemon's two wire APIs over HTTP/1.1: multihome's shim API and upstream Multus' thick API.

* multihome's own, for ``multihome-shim``: ``POST /shim/v1/cni`` with
  ``{"env": {CNI_*}, "config": "<base64 stdin>"}``; the answer's body is
  exactly what the shim prints (the result in the runtime's cniVersion, or
  the CNI error JSON) and ``X-CNI-Exit-Code`` its exit code.  Plus ``GET
  /shim/v1/attachments`` and ``GET /shim/v1/info`` for ``multihome status``.
* upstream Multus' thick API, unchanged, so that the upstream Go shim and
  tools built on it work: ``POST /cni`` answered by ``{"Result": <1.0.0
  result>}`` (errors: 400 with a CNI error JSON body), ``POST /delegate``
  (hot-plug, `multihome.daemon.delegate`), ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multihome import __version__, afteranswer
from multihome.cni.config import cni_version_of
from multihome.cni.errors import CNIError, Code
from multihome.cni.request import Request
from multihome.cni.result import Result
from multihome.engine.cache import AttachmentCache

from . import logs
from .delegate import hot_plug
from .httpserver import BodyError, BodyTimeout, BodyTooLarge, Handler, Response, Routes, Server
from .httpserver import Request as HTTPRequest
from .metrics import resident_memory

if TYPE_CHECKING:
    from .server import Daemon

log = logging.getLogger(__name__)

SHIM_CNI_PATH = "/shim/v1/cni"
REQUEST_ID_HEADER = "X-Multihome-Request-Id"
EXIT_CODE_HEADER = "X-CNI-Exit-Code"


def server(daemon: Daemon) -> Server:
    """The HTTP server of both APIs for ``daemon``'s socket."""
    api = _Api(daemon)
    routes = Routes()
    routes.post(SHIM_CNI_PATH, _answer_first(api.shim_cni))
    routes.get("/shim/v1/attachments", api.attachments)
    routes.get("/shim/v1/info", api.info)
    routes.post("/cni", _answer_first(api.multus_cni))
    routes.post("/delegate", _answer_first(api.multus_delegate))
    add_health_routes(routes, daemon)
    return Server(
        routes,
        deadlines=daemon.deadlines,
        max_body=daemon.config.max_request_bytes,
        on_error=api.on_error,
        on_answer=api.count_request,
    )


def _answer_first(handler: Handler) -> Handler:
    """``handler``, with the work its request defers (`multihome.afteranswer`) run once
    the answer is sent: the runtime's answer does not wait behind the status
    write and the events its ADD left."""

    async def answer(http: HTTPRequest) -> Response:
        with afteranswer.collecting() as later:
            try:
                response = await handler(http)
            except BaseException:
                later.run()
                raise
        response.after = later.run
        return response

    return answer


def add_health_routes(routes: Routes, daemon: Daemon) -> None:
    """``/healthz`` and ``/readyz``: on the socket (upstream's shim) and on the metrics port
    (the kubelet's probes speak HTTP over TCP)."""
    api = _Api(daemon)
    for method in ("GET", "POST"):
        routes.add(method, "/healthz", api.healthz)
        routes.add(method, "/readyz", api.readyz)


class _Api:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    # -- multihome's shim ----------------------------------------------------------------

    async def shim_cni(self, http: HTTPRequest) -> Response:
        request_id = http.headers.get(REQUEST_ID_HEADER) or new_id()
        version = "1.0.0"
        try:
            env, stdin, _ = _decode_call(await self._body(http))
            version = _version_of(stdin) or version
            text = await self.daemon.cni(env, stdin, request_id=request_id)
        except CNIError as err:
            return _shim_answer(err.to_json(version) + "\n", code=1, status=_status_of(err))
        except _TooLarge as err:
            return _shim_answer(err.error.to_json(version) + "\n", code=1, status=413)
        except Exception as err:
            error = unexpected(err)
            return _shim_answer(error.to_json(version) + "\n", code=1, status=_status_of(error))
        return _shim_answer(text + "\n" if text else "", code=0, status=200)

    async def attachments(self, _: HTTPRequest) -> Response:
        listing = await asyncio.to_thread(self.daemon.attachments)
        return Response.json({"attachments": listing})

    async def info(self, _: HTTPRequest) -> Response:
        daemon = self.daemon
        info: dict[str, Any] = {
            "version": __version__,
            "pid": os.getpid(),
            "socket": daemon.config.socket_path,
            "state": daemon.state(),
            "uptimeSeconds": round(time.monotonic() - daemon.started, 3),
            "residentMemoryBytes": resident_memory(),
            "source": daemon.source_name(),
            "inFlight": daemon.jobs.in_flight,
            "queued": daemon.jobs.queued,
            "maxConcurrentRequests": daemon.config.max_concurrent_requests,
            "metrics": daemon.metrics_address or None,
            "cacheDirs": sorted(daemon.cache_dirs),
        }
        if daemon.kube is not None:
            info["kube"] = {
                "ready": daemon.kube.ready(),
                "pods": len(daemon.kube.pods.objects),
                "nads": len(daemon.kube.nads.objects),
                "apiRequests": dict(daemon.kube.requests),
            }
        if daemon.confgen is not None:
            status = daemon.confgen.status
            info["config"] = {
                "path": daemon.confgen.path,
                "ready": status.ready,
                "primary": status.source,
                "problem": status.reason,
            }
        return Response.json(info)

    # -- upstream Multus' thick API --------------------------------------------------------

    async def multus_cni(self, http: HTTPRequest) -> Response:
        version = "1.0.0"
        try:
            env, stdin, _ = _decode_call(await self._body(http))
            version = _version_of(stdin) or version
            text = await self.daemon.cni(
                self._multus_env(env),
                stdin,
                request_id=http.headers.get(REQUEST_ID_HEADER) or new_id(),
            )
        except CNIError as err:
            return _multus_error(err, version, status=400)
        except _TooLarge as err:
            return _multus_error(err.error, version, status=413)
        except Exception as err:
            return _multus_error(unexpected(err), version, status=400)
        if env.get("CNI_COMMAND") != "ADD":
            return Response(200)
        return _multus_result(Result.parse(text))

    async def multus_delegate(self, http: HTTPRequest) -> Response:
        daemon = self.daemon
        version = "1.0.0"
        started = time.monotonic()
        request_id = http.headers.get(REQUEST_ID_HEADER) or new_id()
        try:
            env, stdin, attributes = _decode_call(await self._body(http))
            version = _version_of(stdin) or version
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
                            source=daemon.delegate_source(),
                            cache=AttachmentCache(daemon.config.cache_dir),
                            bin_dir=daemon.config.bin_dir,
                            executor=daemon.executor,
                        )
                    )
                    return ""

                try:
                    await daemon.admission.admit(request, work, started=started, override=False)
                except CNIError as err:
                    log.warning("hot-plug %s failed: %s", request.command, err)
                    raise
        except CNIError as err:
            return _multus_error(err, version, status=400)
        except _TooLarge as err:
            return _multus_error(err.error, version, status=413)
        except Exception as err:
            return _multus_error(unexpected(err), version, status=400)
        if result and result[0] is not None:
            return _multus_result(result[0])
        return Response(200)

    def _multus_env(self, env: Mapping[str, str]) -> dict[str, str]:
        # Upstream defaults the interface name and finds plugins in binDir alone;
        # callers of this API (controllers) may send neither.
        out = dict(env)
        out.setdefault("CNI_IFNAME", "eth0")
        if not out.get("CNI_PATH"):
            out["CNI_PATH"] = self.daemon.config.bin_dir
        return out

    async def healthz(self, _: HTTPRequest) -> Response:
        return Response(200)

    async def readyz(self, _: HTTPRequest) -> Response:
        state = self.daemon.state()
        if state == "ready":
            return Response(200)
        # Upstream answers 500 once shutting down; "not yet" is 503.
        return Response.text(state + "\n", 500 if self.daemon.draining else 503)

    # -- plumbing --------------------------------------------------------------------------

    async def _body(self, http: HTTPRequest) -> bytes:
        try:
            return await http.read()
        except BodyTooLarge as err:
            raise _TooLarge(err.limit, err.size) from None
        except BodyTimeout as err:
            raise CNIError(
                Code.IO_FAILURE,
                f"the request's body did not arrive within {err.timeout:g} s",
                "the client sends too slowly; the daemon reads a request for a bounded time",
            ) from None
        except BodyError as err:
            raise _malformed(str(err)) from None

    def on_error(self, _: HTTPRequest, err: Exception) -> Response:
        """A handler's exception, answered as a CNI error (never a 500 with a traceback)."""
        error = unexpected(err)
        return _shim_answer(error.to_json("1.0.0") + "\n", code=1, status=_status_of(error))

    def count_request(self, http: HTTPRequest, response: Response) -> None:
        self.daemon.metrics.http_requests.labels(
            http.route, str(response.status), http.method
        ).inc()


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


def _status_of(err: CNIError) -> int:
    # Never 500: a shim (or a proxy) reads a 5xx as "retry", and most internal
    # errors are permanent; the body and X-CNI-Exit-Code say what happened.
    return 503 if err.code == Code.TRY_AGAIN_LATER else 400


def unexpected(err: Exception) -> CNIError:
    """Any exception as a CNI error with the spec's code: never an HTTP 500."""
    if isinstance(err, RecursionError):
        return CNIError(
            Code.DECODE_FAILURE,
            "the request is nested too deeply to decode",
            "a CNI configuration is a few levels of JSON objects and lists",
        )
    log.error("internal error: %s", err, exc_info=err)
    return CNIError(Code.INTERNAL, f"internal error in the multihome daemon: {err}")


def _version_of(stdin: bytes) -> str:
    try:
        return cni_version_of(stdin)
    except RecursionError:
        return ""


def _shim_answer(body: str, *, code: int, status: int) -> Response:
    response = Response.text(body, status, "application/json")
    response.headers[EXIT_CODE_HEADER] = str(code)
    return response


def _multus_result(result: Result) -> Response:
    # As Go's json.Marshal(&api.Response{Result: ...}) writes it: no spaces.
    body = json.dumps({"Result": result.to_dict("1.0.0")}, separators=(",", ":"))
    return Response.text(body, 200, "application/json")


def _multus_error(err: CNIError, version: str, *, status: int) -> Response:
    return Response.text(err.to_json(version), status, "application/json")


def new_id() -> str:
    return uuid.uuid4().hex[:16]
