"""The API double's HTTP side: routing, auth, fault knobs, and ways to run it.

Tests, benchmarks and the demo need a Kubernetes API that is real enough to
catch client bugs (resourceVersions, watch resumption, 409 and 410, bearer
tokens) and controllable enough to provoke them on demand.  The knobs are a
Python API for in-process use (`ApiServerDouble`, or `run_in_thread` for
synchronous code) and the same knobs over HTTP under ``/_double/`` for a
double in another process (``python -m multihome.testing.apiserver``).

Every request to the API is recorded with its Kubernetes audit verb (get,
list, watch, create, update, patch, delete) and resource (``pods``,
``pods/status``, ``network-attachment-definitions``, ``events``): that
record is how tests and benchmarks count what a client costs the API
server, and how they see injected latency without timing anything.

All state lives on the double's event loop; the Python knobs may be called
from any thread and run there.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from multihome.testing.apiserver import status
from multihome.testing.apiserver.resources import (
    EVENT,
    EVENT_V1,
    Kind,
    Target,
    discovery,
    kind_named,
    kind_of,
    parse_path,
)
from multihome.testing.apiserver.roles import ROLES, SERVICE_ACCOUNT_USER, Role
from multihome.testing.apiserver.selectors import field_selector, label_selector
from multihome.testing.apiserver.status import ApiError
from multihome.testing.apiserver.store import Event, Store, Watcher, parse_rv

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The file `--state DIR` saves to; when present it is loaded instead of the manifests.
STATE_FILE = "apiserver-state.json"
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-multihome-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_HEALTH = ("/healthz", "/readyz", "/livez")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass
class RequestRecord:
    """One API request, as an audit log would list it."""

    verb: str
    resource: str  # "pods", "pods/status", ...; the path for /version, /api, ...
    namespace: str | None
    name: str | None
    query: dict[str, str]
    delay_ms: float  # latency the double added
    code: int = 0  # 0 until the answer is known; 200 once a watch streams


@dataclass
class _Fault:
    remaining: int
    code: int
    verb: str | None
    resource: str | None

    def matches(self, record: RequestRecord) -> bool:
        return self.verb in (None, record.verb) and self.resource in (None, record.resource)


class ApiServerDouble:
    """A Kubernetes API server for tests: ``async with ApiServerDouble() as api``.

    `tokens`: the accepted bearer tokens; none means no authentication.
    `history_size`: how many changes a watch can resume across.
    `state_dir`: manifests to start from, and where the state is saved
    (unless `save_state` is false).
    `bookmark_interval`: seconds between BOOKMARKs on watches that allow them.
    `role`: authorize every API request against this RBAC role (`roles`) as `user`,
    answering what it does not grant with the real server's 403; None allows everything.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = (),
        latency_ms: float = 0.0,
        history_size: int = 1000,
        state_dir: str | os.PathLike[str] | None = None,
        save_state: bool = True,
        bookmark_interval: float = 60.0,
        log_size: int = 100_000,
        role: Role | None = None,
        user: str = SERVICE_ACCOUNT_USER,
    ) -> None:
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.save_state = save_state
        self.bookmark_interval = bookmark_interval
        self.url = ""
        self._store = Store(history_size=history_size, on_write=self._written)
        self._tokens = frozenset(tokens)
        self.role = role
        self.user = user
        self._faults: list[_Fault] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._log: deque[RequestRecord] = deque(maxlen=log_size)
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._save_handle: asyncio.TimerHandle | None = None

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.state_dir is not None:
            self._load(self.state_dir)
        app = web.Application(client_max_size=4 * 1024 * 1024)
        self._admin_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self._store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._save_handle is not None:
            self._save_handle.cancel()
        if self.state_dir is not None and self.save_state:
            self._save()

    async def __aenter__(self) -> ApiServerDouble:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- knobs (any thread) -----------------------------------------------

    def set_latency(self, ms: float) -> None:
        """Delay every API request by `ms` before answering it."""
        self._call(setattr, self, "latency_ms", float(ms))

    def fail_next(
        self,
        count: int = 1,
        *,
        code: int = 500,
        verb: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Answer the next `count` API requests (matching `verb`/`resource`) with `code`."""
        self._call(self._faults.append, _Fault(count, code, verb, resource))

    def set_tokens(self, *tokens: str) -> None:
        """Accept exactly these bearer tokens from now on; none turns auth off."""
        self._call(setattr, self, "_tokens", frozenset(tokens))

    def set_role(self, role: Role | None) -> None:
        """Authorize requests against `role` from now on; None allows everything."""
        self._call(setattr, self, "role", role)

    def close_watches(self) -> int:
        """End every open watch stream, as an API server restart would."""
        return self._call(self._store.close_watches)

    def compact(self) -> int:
        """Forget the watch history: resuming from an older version gets 410."""
        self._call(self._store.compact)
        return self.resource_version

    def send_bookmarks(self) -> int:
        """A BOOKMARK now on every watch that allowed them."""
        return self._call(self._store.send_bookmarks)

    def reset_requests(self) -> None:
        self._call(self._reset_requests)

    def requests(self) -> Counter[tuple[str, str]]:
        """Requests so far by (verb, resource)."""
        return self._call(lambda: Counter(self._counts))

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        return self._call(
            lambda: sum(
                n
                for (v, r), n in self._counts.items()
                if verb in (None, v) and resource in (None, r)
            )
        )

    def request_log(self) -> list[RequestRecord]:
        return self._call(lambda: list(self._log))

    @property
    def open_watches(self) -> int:
        return self._call(lambda: self._store.watch_count)

    @property
    def resource_version(self) -> int:
        return self._call(lambda: self._store.rv)

    # -- objects (any thread) ---------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add an object from its manifest, status included (the HTTP POST drops it)."""
        kind = kind_of(obj)
        namespace = _namespace_of(kind, obj.get("metadata", {}))
        return self._copy(lambda: self._store.create(kind, namespace, obj, keep_status=True))

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object, status included; its resourceVersion, if any, must be current."""
        kind = kind_of(obj)
        meta = obj.get("metadata", {})
        namespace, name = _namespace_of(kind, meta), meta.get("name", "")

        def update() -> dict[str, Any]:
            new = obj
            if not meta.get("resourceVersion"):  # unconditional, for every kind
                current = self._store.get(kind, namespace, name)["metadata"]["resourceVersion"]
                new = {**obj, "metadata": {**meta, "resourceVersion": current}}
            return self._store.update(kind, namespace, name, new, whole=True)

        return self._copy(update)

    def delete(self, resource: str, *, namespace: str, name: str) -> dict[str, Any]:
        kind = kind_named(resource)
        return self._copy(lambda: self._store.delete(kind, namespace, name))

    def get(self, resource: str, *, namespace: str, name: str) -> dict[str, Any] | None:
        kind = kind_named(resource)

        def get() -> dict[str, Any] | None:
            with contextlib.suppress(ApiError):
                return self._store.get(kind, namespace, name)
            return None

        return self._copy(get)

    def objects(self, resource: str, *, namespace: str | None = None) -> list[dict[str, Any]]:
        kind = kind_named(resource)
        return self._copy(lambda: self._store.objects(kind, namespace))

    def events(self) -> list[dict[str, Any]]:
        """Events of both APIs (core/v1 and events.k8s.io/v1), oldest first."""

        def events() -> list[dict[str, Any]]:
            both = self._store.objects(EVENT, None) + self._store.objects(EVENT_V1, None)
            return sorted(both, key=lambda e: int(e["metadata"]["resourceVersion"]))

        return self._copy(events)

    def save(self) -> Path | None:
        return self._call(self._save)

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """A kubeconfig for this double, with one of its tokens if it has any."""
        token = min(self._tokens) if self._tokens else None
        return write_kubeconfig(path, url=self.url, token=token)

    # -- waiting without sleeping -----------------------------------------

    async def until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Return once `predicate()` holds; it is re-checked after every request,
        watch change and write.  On the double's loop."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter

    def wait(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """`until` for a thread other than the double's (`run_in_thread`)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            raise RuntimeError("wait() blocks: use `await api.until(...)` on the double's loop")
        asyncio.run_coroutine_threadsafe(
            self.until(predicate, timeout=timeout), self._loop
        ).result()

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- plumbing ---------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the double's loop and return its result."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or loop.is_closed():
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the calling thread
                future.set_exception(e)

        loop.call_soon_threadsafe(run)
        return future.result()

    def _copy(self, fn: Callable[[], T]) -> T:
        # Tests get their own copies: mutating one must not change the store.
        return json.loads(json.dumps(self._call(fn)))  # type: ignore[no-any-return]

    def _reset_requests(self) -> None:
        self._counts.clear()
        self._log.clear()

    def _written(self, _: Kind) -> None:
        self._changed()
        saving = self.state_dir is not None and self.save_state and self._loop is not None
        if saving and self._save_handle is None and self._loop is not None:
            self._save_handle = self._loop.call_later(0.5, self._save)

    def _load(self, directory: Path) -> None:
        snapshot = directory / STATE_FILE
        if snapshot.exists():
            log.info("loading %s (delete it to start again from the manifests)", snapshot)
            docs: list[Any] = [json.loads(snapshot.read_text())]
        else:
            docs = []
            for path in sorted(directory.rglob("*")):
                if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                    docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        objects: list[dict[str, Any]] = []
        for doc in docs:
            if not isinstance(doc, dict):
                log.warning("skipping a document that is not an object in %s", directory)
                continue
            for obj in doc.get("items", []) if str(doc.get("kind", "")).endswith("List") else [doc]:
                try:
                    kind_of(obj)
                except KeyError as e:
                    log.warning("skipping a manifest: %s", e.args[0])
                    continue
                objects.append(obj)
        count = self._store.load(objects)
        log.info("loaded %d objects from %s", count, directory)

    def _save(self) -> Path | None:
        self._save_handle = None
        if self.state_dir is None:
            return None
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._store.snapshot(), indent=1) + "\n")
        tmp.replace(path)
        return path

    # -- the API ----------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path in _HEALTH:
            return web.Response(text="ok")
        if request.path.startswith("/_double/"):
            return _json({"error": f"no knob at {request.path}"}, code=404)
        target = parse_path(request.path)
        record = _classify(request, target)
        self._counts[(record.verb, record.resource)] += 1
        self._log.append(record)
        self._changed()
        try:
            if self.latency_ms > 0:
                record.delay_ms = self.latency_ms
                await asyncio.sleep(self.latency_ms / 1000)
            self._authenticate(request)
            self._authorize(target, record)
            self._inject_fault(record)
            response = await self._serve(request, target, record)
        except ApiError as e:
            response = _status_response(e)
        if record.code == 0:
            record.code = response.status
            self._changed()
        return response

    def _authenticate(self, request: web.Request) -> None:
        if not self._tokens:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self._tokens:
            raise status.unauthorized()

    def _authorize(self, target: Target | None, record: RequestRecord) -> None:
        # Discovery, /version and health are open to every user on a real
        # cluster (system:discovery, system:public-info-viewer).
        if self.role is None or target is None:
            return
        kind = target.kind
        if not self.role.allows(
            verb=record.verb,
            group=kind.group,
            resource=kind.plural,
            subresource=target.subresource or "",
            name=target.name or "",
        ):
            raise status.forbidden(
                kind,
                user=self.user,
                verb=record.verb,
                subresource=target.subresource,
                namespace=target.namespace,
                name=target.name,
            )

    def _inject_fault(self, record: RequestRecord) -> None:
        for fault in self._faults:
            if fault.matches(record):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                raise status.injected(fault.code)

    async def _serve(
        self, request: web.Request, target: Target | None, record: RequestRecord
    ) -> web.StreamResponse:
        method = request.method
        if target is None:
            if method != "GET":
                raise status.method_not_allowed(method)
            if request.path == "/version":
                return _json(VERSION)
            doc = discovery(request.path, server_address=f"{self.host}:{self.port}")
            if doc is None:
                raise status.path_not_found()
            return _json(doc)
        kind, ns, name, sub = target.kind, target.namespace, target.name, target.subresource
        store = self._store
        if record.verb == "watch":
            return await self._watch(request, target, record)
        if name is None:
            if method == "GET":
                return _json(self._list(kind, ns, request.query))
            if method == "POST" and ns is not None:
                return _json(store.create(kind, ns, await _body(request)), code=201)
            raise status.method_not_allowed(method)
        assert ns is not None  # parse_path gives named objects a namespace
        if method == "GET":
            return _json(store.get(kind, ns, name))
        if method == "PUT":
            return _json(store.update(kind, ns, name, await _body(request), subresource=sub))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            body = await request.read()
            return _json(
                store.patch(kind, ns, name, body=body, content_type=content_type, subresource=sub)
            )
        if method == "DELETE" and sub is None:
            options = await _body(request) if request.can_read_body else {}
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            deleted = store.delete(kind, ns, name, preconditions=preconditions)
            if kind.delete_returns_object:
                return _json(deleted)
            details = {
                "name": name,
                "group": kind.group,
                "kind": kind.plural,
                "uid": deleted["metadata"]["uid"],
            }
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            )
        raise status.method_not_allowed(method)

    def _list(self, kind: Kind, namespace: str | None, query: Any) -> dict[str, Any]:
        # Any resourceVersion at or below the current one is served from now:
        # newer than what was asked, which "NotOlderThan" allows.
        if query.get("resourceVersion", "") not in ("", "0"):
            wanted = parse_rv(query["resourceVersion"])
            if wanted > self._store.rv:
                raise status.too_large_resource_version(wanted, self._store.rv)
        select = _selector(kind, query, name=None)
        items = self._store.objects(kind, namespace, select)
        meta: dict[str, Any] = {"resourceVersion": str(self._store.rv)}
        if query.get("continue"):
            after = _decode_continue(query["continue"])
            items = [o for o in items if _key(o) > after]
        limit = int(query.get("limit") or 0)
        if 0 < limit < len(items):
            meta["continue"] = _encode_continue(_key(items[limit - 1]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if kind.builtin:  # the real server leaves kind and apiVersion off built-in items
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return {
            "kind": kind.list_kind,
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": items,
        }

    async def _watch(
        self, request: web.Request, target: Target, record: RequestRecord
    ) -> web.StreamResponse:
        query = request.query
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        watcher = Watcher(
            kind=target.kind,
            namespace=target.namespace,
            select=_selector(target.kind, query, name=target.name),
            sink=queue.put_nowait,
            bookmarks=query.get("allowWatchBookmarks", "") in _TRUE,
        )
        initial_events = query.get("sendInitialEvents", "") in _TRUE
        since = None if initial_events else query.get("resourceVersion")
        try:
            first = self._store.watch(watcher, since=since, initial_bookmark=initial_events)
        except ApiError as e:
            if e.code != 410:
                raise
            # Past the point of parsing the request, the real server reports
            # errors inside the stream, not as the HTTP status.
            first = [{"type": "ERROR", "object": e.status()}]
            queue.put_nowait(None)
        self._changed()
        timeout = float(query.get("timeoutSeconds") or 0)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        record.code = 200
        try:
            await response.prepare(request)
            for initial in first:
                await response.write(_line(initial))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout > 0 else None
            while True:
                wait = self.bookmark_interval if watcher.bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = left if wait is None else min(wait, left)
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    # A bookmark every interval and one as timeoutSeconds ends
                    # the watch, so the client resumes from the latest version,
                    # as the real watch cache arranges.
                    if watcher.bookmarks:
                        await response.write(_line(self._store.bookmark_event(target.kind)))
                    continue
                if event is None:
                    break
                await response.write(_line(event))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._store.unwatch(watcher)
            self._changed()
        return response

    # -- the knobs over HTTP ----------------------------------------------

    def _admin_routes(self, app: web.Application) -> None:
        async def requests(request: web.Request) -> web.Response:
            if request.method == "DELETE":
                self._reset_requests()
                return _json({})
            body: dict[str, Any] = {
                "total": sum(self._counts.values()),
                "counts": {f"{v} {r}": n for (v, r), n in sorted(self._counts.items())},
            }
            if request.query.get("log", "") in _TRUE:
                body["log"] = [asdict(r) for r in self._log]
            return _json(body)

        async def state(_: web.Request) -> web.Response:
            return _json(
                {
                    "resourceVersion": self._store.rv,
                    "horizon": {k.qualified: rv for k, rv in self._store.horizon.items()},
                    "openWatches": self._store.watch_count,
                    "latencyMs": self.latency_ms,
                    "pendingFaults": [asdict(f) for f in self._faults],
                    "authentication": bool(self._tokens),
                    "role": self.role.name if self.role is not None else None,
                }
            )

        async def knob(request: web.Request) -> web.Response:
            try:
                body = await request.json() if request.can_read_body else {}
                result = self._admin(request.match_info["knob"], body)
            except (ValueError, TypeError, KeyError) as e:
                return _json({"error": f"failed to set knob: {e}"}, code=400)
            return (
                _json(result) if result is not None else _json({"error": "no such knob"}, code=404)
            )

        app.router.add_route("*", "/_double/requests", requests)
        app.router.add_get("/_double/state", state)
        app.router.add_post("/_double/{knob}", knob)

    def _admin(self, knob: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if knob == "latency":
            self.set_latency(float(body["ms"]))
            return {"latencyMs": self.latency_ms}
        if knob == "fail":
            self.fail_next(
                int(body.get("count", 1)),
                code=int(body.get("code", 500)),
                verb=body.get("verb"),
                resource=body.get("resource"),
            )
            return {"pendingFaults": len(self._faults)}
        if knob == "tokens":
            tokens = body["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise TypeError("tokens must be a list of strings")
            self.set_tokens(*tokens)
            return {"tokens": len(tokens)}
        if knob == "role":
            name = body.get("role")
            self.set_role(None if name is None else ROLES[name])
            return {"role": name}
        actions: dict[str, Callable[[], dict[str, Any]]] = {
            "close-watches": lambda: {"closed": self.close_watches()},
            "compact": lambda: {"horizon": self.compact()},
            "bookmarks": lambda: {"sent": self.send_bookmarks()},
            "reset-requests": lambda: _done(self._reset_requests),
            "save": lambda: {"path": str(self.save() or "")},
        }
        return actions[knob]() if knob in actions else None


def _done(action: Callable[[], None]) -> dict[str, Any]:
    action()
    return {}


def _classify(request: web.Request, target: Target | None) -> RequestRecord:
    query = dict(request.query)
    if target is None:
        return RequestRecord(request.method.lower(), request.path, None, None, query, 0.0)
    if request.method == "GET":
        if target.watch_path or query.get("watch", "") in _TRUE:
            verb = "watch"
        else:
            verb = "get" if target.name else "list"
    else:
        verb = _VERBS.get(request.method, request.method.lower())
        if verb == "delete" and target.name is None:
            verb = "deletecollection"
    resource = target.kind.plural + (f"/{target.subresource}" if target.subresource else "")
    return RequestRecord(verb, resource, target.namespace, target.name, query, 0.0)


def _selector(kind: Kind, query: Any, *, name: str | None) -> Callable[[dict[str, Any]], bool]:
    fields = field_selector(query.get("fieldSelector", ""), kind)
    labels = label_selector(query.get("labelSelector", ""))
    if name is not None:
        return lambda o: o["metadata"]["name"] == name and fields(o) and labels(o)
    return lambda o: fields(o) and labels(o)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _namespace_of(kind: Kind, meta: dict[str, Any]) -> str:
    return (meta.get("namespace") or "default") if kind.namespaced else ""


def _encode_continue(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, TypeError, binascii.Error) as e:
        raise status.bad_request("continue key is not valid") from e
    return (str(namespace), str(name))


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as e:
        raise status.bad_request(f"couldn't get version/kind; json parse error: {e}") from e


def _line(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _json(body: Any, *, code: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=code, content_type="application/json"
    )


def _status_response(error: ApiError) -> web.Response:
    response = _json(error.status(), code=error.code)
    if error.details and "retryAfterSeconds" in error.details:
        response.headers["Retry-After"] = str(error.details["retryAfterSeconds"])
    return response


def write_kubeconfig(
    path: str | os.PathLike[str], *, url: str, token: str | None = None, namespace: str = "default"
) -> Path:
    """A kubeconfig with one context for the double; readable by the owner only."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "double", "cluster": {"server": url}}],
        "users": [{"name": "double", "user": {"token": token} if token else {}}],
        "contexts": [
            {
                "name": "double",
                "context": {"cluster": "double", "user": "double", "namespace": namespace},
            }
        ],
        "current-context": "double",
        "preferences": {},
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return out


@contextlib.contextmanager
def run_in_thread(**options: Any) -> Iterator[ApiServerDouble]:
    """The double on its own thread and loop, for synchronous tests and benchmarks."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="apiserver-double", daemon=True)
    thread.start()
    api = ApiServerDouble(**options)
    try:
        asyncio.run_coroutine_threadsafe(api.start(), loop).result()
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """``multihome testing apiserver``: the double as a process.

    Prints its URL as the first line on stdout, then serves until SIGTERM or
    SIGINT; with --state, saves its objects there on changes and on exit.
    """
    parser = argparse.ArgumentParser(
        prog="multihome testing apiserver",
        description="A Kubernetes API server double for tests, benchmarks and the demo.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--state", metavar="DIR", help="manifests to load; state saved here")
    parser.add_argument("--no-save", action="store_true", help="never write into --state")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        help="accepted bearer token (repeatable); none: no auth",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--role", choices=sorted(ROLES), help="authorize requests against this RBAC role"
    )
    parser.add_argument(
        "--history", type=int, default=1000, help="changes a watch can resume across (default 1000)"
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="write a kubeconfig for clients")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with ApiServerDouble(
            host=args.host,
            port=args.port,
            tokens=args.token,
            latency_ms=args.latency_ms,
            history_size=args.history,
            state_dir=args.state,
            save_state=not args.no_save,
            role=ROLES[args.role] if args.role else None,
        ) as api:
            if args.kubeconfig:
                api.write_kubeconfig(args.kubeconfig)
            print(api.url, flush=True)
            await stop.wait()

    asyncio.run(serve())
    return 0
