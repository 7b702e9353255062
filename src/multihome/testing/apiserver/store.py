"""The double's storage: objects, one resourceVersion counter, watch history.

It plays etcd plus the API server's registry, without I/O: one global
counter stamps every write, as etcd's revision does; a bounded window of
past changes per resource type lets a watch resume from an old
resourceVersion, and a resume from before the window fails with 410 Expired,
as from the real watch cache.
The per-type rules that clients trip over are kept: pods' main resource
cannot change ``status`` and ``pods/status`` cannot change ``spec`` (but can
change annotations, which is how network-status gets written); custom
resources refuse a PUT without a resourceVersion; a write that changes
nothing keeps the old resourceVersion and sends no watch event.

Objects held here are never mutated in place: every write stores a new
dict, so watch events and list answers can share them safely.
"""

from __future__ import annotations

import copy
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multihome.testing.apiserver import patching, status
from multihome.testing.apiserver.resources import KINDS, POD, Kind, kind_of
from multihome.testing.apiserver.selectors import Selector, everything
from multihome.testing.apiserver.status import ApiError

Event = dict[str, Any]
#: Receives each watch event; None means "the server closed this watch".
Sink = Callable[[Event | None], None]

_ANNOTATIONS_MAX = 256 * 1024
_DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True)
class Change:
    rv: int
    kind: Kind
    type: str  # ADDED, MODIFIED or DELETED
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # the state before a MODIFIED


@dataclass(eq=False)
class Watcher:
    """One open watch: which objects it sees, and where its events go."""

    kind: Kind
    namespace: str | None
    select: Selector
    sink: Sink
    bookmarks: bool = False

    def event_for(self, change: Change) -> Event | None:
        """The event this watch sees for `change`, if any.

        As in the real watch cache, an object that starts matching the
        selector is ADDED for this watch and one that stops matching is
        DELETED (a pod bound to this node appears as ADDED).
        """
        if change.kind is not self.kind:
            return None
        namespace = change.obj["metadata"].get("namespace", "")
        if self.namespace is not None and namespace != self.namespace:
            return None
        now = self.select(change.obj)
        if change.type != "MODIFIED":
            return {"type": change.type, "object": change.obj} if now else None
        before = change.prev is not None and self.select(change.prev)
        if now:
            return {"type": "MODIFIED" if before else "ADDED", "object": change.obj}
        if before and change.prev is not None:
            return {"type": "DELETED", "object": _with_rv(change.prev, change.rv)}
        return None


@dataclass
class Store:
    history_size: int = 1000
    rv: int = 0
    #: Per kind, as the real watch caches are: a watch may resume from this
    #: resourceVersion or later; from an older one it gets 410.
    horizon: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    _objects: dict[Kind, dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    _history: dict[Kind, deque[Change]] = field(
        default_factory=lambda: {kind: deque() for kind in KINDS}
    )
    _watchers: list[Watcher] = field(default_factory=list)
    #: Called after every write, with the kind written (for saving state).
    on_write: Callable[[Kind], None] | None = None

    # -- reads ------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects[kind].get((namespace, name))
        if obj is None:
            raise status.not_found(kind, name)
        return obj

    def objects(
        self, kind: Kind, namespace: str | None, select: Selector = everything
    ) -> list[dict[str, Any]]:
        """Matching objects in etcd's key order (namespace, then name)."""
        return [
            obj
            for (ns, _), obj in sorted(self._objects[kind].items())
            if (namespace is None or ns == namespace) and select(obj)
        ]

    # -- writes -----------------------------------------------------------

    def create(
        self, kind: Kind, namespace: str, obj: Any, *, keep_status: bool = False
    ) -> dict[str, Any]:
        """POST.  `keep_status` seeds an object as a test wants it; the real
        server resets a new pod's status, so HTTP creates do too."""
        new = _decode(kind, obj)
        meta = new["metadata"]
        _check_namespace(meta, namespace)
        if kind.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name", "")
        _validate(kind, new, name)
        if (namespace, name) in self._objects[kind]:
            raise status.already_exists(kind, name)
        for key in ("resourceVersion", "deletionTimestamp", "generation"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if kind.has_generation:
            meta["generation"] = 1
        if kind is POD and not keep_status:
            new["status"] = {"phase": "Pending"}
        return self._write(kind, "ADDED", new, prev=None)

    def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: Any,
        *,
        subresource: str | None = None,
        whole: bool = False,
    ) -> dict[str, Any]:
        """PUT, with resourceVersion as the optimistic-concurrency token.

        `whole` writes spec and status at once, as no HTTP request can (for
        tests that set up a pod's status).
        """
        new = _decode(kind, obj)
        old = self.get(kind, namespace, name)
        meta, old_meta = new["metadata"], old["metadata"]
        _check_namespace(meta, namespace)
        if meta.get("name", "") != name:
            raise status.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on "
                f"the URL ({name})"
            )
        rv = meta.get("resourceVersion", "")
        if not rv and not kind.builtin:
            raise status.invalid(
                kind,
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if rv and rv != old_meta["resourceVersion"]:
            raise status.stale(kind, name)
        uid = meta.get("uid")
        if uid and uid != old_meta["uid"]:
            raise status.conflict(
                kind,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old_meta['uid']}",
            )
        _validate(kind, new, name)
        if whole:
            pass
        elif subresource == "status":
            _carry(old, new, "spec")
            _carry(old_meta, meta, "ownerReferences")
        elif "status" in kind.subresources:
            _carry(old, new, "status")
        for key in ("namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            _carry(old_meta, meta, key)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return old  # no write, no new resourceVersion, no event
        if kind.has_generation and _spec_of(new) != _spec_of(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        return self._write(kind, "MODIFIED", new, prev=old)

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        *,
        body: bytes,
        content_type: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        old = self.get(kind, namespace, name)
        new = patching.apply(old, body, content_type)
        # A resourceVersion in the patch is a precondition, as on the real server.
        meta = new.get("metadata")
        if isinstance(meta, dict) and meta.get("resourceVersion", "") not in (
            "",
            old["metadata"]["resourceVersion"],
        ):
            raise status.stale(kind, name)
        return self.update(kind, namespace, name, new, subresource=subresource)

    def delete(
        self, kind: Kind, namespace: str, name: str, *, preconditions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """DELETE, at once: the double has no kubelet to finish a graceful one."""
        old = self.get(kind, namespace, name)
        meta = old["metadata"]
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (preconditions or {}).get(key)
            if wanted and wanted != meta[key]:
                raise status.conflict(
                    kind,
                    name,
                    f"Precondition failed: {label} in precondition: {wanted}, {label} in object "
                    f"meta: {meta[key]}",
                )
        del self._objects[kind][(namespace, name)]
        self.rv += 1
        last = _with_rv(old, self.rv)
        self._record(Change(self.rv, kind, "DELETED", last))
        return last

    def _write(
        self, kind: Kind, type_: str, new: dict[str, Any], *, prev: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.rv += 1
        new["kind"], new["apiVersion"] = kind.kind, kind.api_version
        new["metadata"]["resourceVersion"] = str(self.rv)
        meta = new["metadata"]
        self._objects[kind][(meta.get("namespace", ""), meta["name"])] = new
        self._record(Change(self.rv, kind, type_, new, prev))
        return new

    def _record(self, change: Change) -> None:
        history = self._history[change.kind]
        history.append(change)
        while len(history) > self.history_size:
            self.horizon[change.kind] = history.popleft().rv
        for watcher in list(self._watchers):
            event = watcher.event_for(change)
            if event is not None:
                watcher.sink(event)
        if self.on_write is not None:
            self.on_write(change.kind)

    # -- watches ----------------------------------------------------------

    def watch(
        self, watcher: Watcher, *, since: str | None, initial_bookmark: bool = False
    ) -> list[Event]:
        """Register `watcher`; return the events it sees first.

        `since` unset or "0": every current object as ADDED, as the real
        server does for such a watch.  A resourceVersion: the changes after
        it, from the window; before the window, 410 Expired.
        """
        if since in (None, "", "0"):
            events: list[Event] = [
                {"type": "ADDED", "object": obj}
                for obj in self.objects(watcher.kind, watcher.namespace, watcher.select)
            ]
            if initial_bookmark:
                events.append(self.bookmark_event(watcher.kind, initial_events_end=True))
        else:
            start = parse_rv(since)
            if start > self.rv:
                raise status.too_large_resource_version(start, self.rv)
            horizon = self.horizon[watcher.kind]
            if start < horizon:
                raise status.expired(f"too old resource version: {start} ({horizon})")
            events = [
                event
                for change in self._history[watcher.kind]
                if change.rv > start and (event := watcher.event_for(change)) is not None
            ]
        self._watchers.append(watcher)
        return events

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def close_watches(self) -> int:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.sink(None)
        return len(watchers)

    def bookmark_event(self, kind: Kind, *, initial_events_end: bool = False) -> Event:
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta},
        }

    def send_bookmarks(self) -> int:
        """A BOOKMARK now to each watch that asked for them."""
        sent = 0
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.sink(self.bookmark_event(watcher.kind))
                sent += 1
        return sent

    def compact(self) -> None:
        """Forget the watch history, as an etcd compaction would."""
        for kind in KINDS:
            self._history[kind].clear()
            self.horizon[kind] = self.rv

    # -- persistence ------------------------------------------------------

    def load(self, objects: Iterable[dict[str, Any]]) -> int:
        """Add manifests as they are, keeping any uid and resourceVersion."""
        count = 0
        for raw in objects:
            kind = kind_of(raw)
            obj = _decode(kind, raw)
            meta = obj["metadata"]
            if kind.namespaced:
                meta.setdefault("namespace", "default")
            _validate(kind, obj, meta.get("name", ""))
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            if kind.has_generation:
                meta.setdefault("generation", 1)
            if meta.get("resourceVersion", "").isdigit():
                self.rv = max(self.rv, int(meta["resourceVersion"]))
            else:
                self.rv += 1
                meta["resourceVersion"] = str(self.rv)
            self._objects[kind][(meta.get("namespace", ""), meta["name"])] = obj
            count += 1
        # Loaded objects have no history: a watch can only start from here.
        for kind in KINDS:
            self._history[kind].clear()
            self.horizon[kind] = self.rv
        return count

    def snapshot(self) -> dict[str, Any]:
        items = [obj for kind in KINDS for obj in self.objects(kind, None)]
        return {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }


def parse_rv(text: str) -> int:
    if not text.isdigit():
        raise status.bad_request(f'invalid resource version "{text}"')
    return int(text)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_rv(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = {**obj["metadata"], "resourceVersion": str(rv)}
    return out


def _carry(old: dict[str, Any], new: dict[str, Any], key: str) -> None:
    if key in old:
        new[key] = copy.deepcopy(old[key])
    else:
        new.pop(key, None)


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _check_namespace(meta: dict[str, Any], namespace: str) -> None:
    if meta.get("namespace") not in (None, "", namespace):
        raise status.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


def _decode(kind: Kind, obj: Any) -> dict[str, Any]:
    """A private copy of a request body with the shape Go's decoder insists on.

    Shape errors are 400s, as the real server's decoding errors are.
    """
    if not isinstance(obj, dict):
        raise status.bad_request(f"the body of the request is not a JSON object for a {kind.kind}")
    new = copy.deepcopy(obj)
    for key, want in (("apiVersion", kind.api_version), ("kind", kind.kind)):
        given = new.setdefault(key, want)
        if given != want:
            noun = "API version" if key == "apiVersion" else "kind"
            raise status.bad_request(
                f"the {noun} in the data ({given}) does not match the expected {noun} ({want})"
            )
    meta = new.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise status.bad_request(_unmarshal_error(meta, "metadata", "ObjectMeta"))
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            meta.pop(key, None)
            continue
        if not isinstance(value, dict):
            raise status.bad_request(
                _unmarshal_error(value, f"metadata.{key}", "map[string]string")
            )
        for item in value.values():
            if not isinstance(item, str):
                raise status.bad_request(_unmarshal_error(item, f"metadata.{key}", "string"))
    for key in ("name", "namespace", "resourceVersion", "uid", "generateName"):
        if key in meta and not isinstance(meta[key], str):
            raise status.bad_request(_unmarshal_error(meta[key], f"metadata.{key}", "string"))
    return new


def _unmarshal_error(value: Any, path: str, go_type: str) -> str:
    json_type = _JSON_TYPES.get(type(value), "value")
    json_type = "number" if json_type == "integer" else json_type
    return (
        f"json: cannot unmarshal {json_type} into Go struct field ObjectMeta.{path} "
        f"of type {go_type}"
    )


def _validate(kind: Kind, obj: dict[str, Any], name: str) -> None:
    """The 422 checks: a name the real server takes, and the NAD schema."""
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not re.fullmatch(_DNS1123_SUBDOMAIN, name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                f"'{_DNS1123_SUBDOMAIN}')",
            )
        )
    annotations = obj["metadata"].get("annotations") or {}
    if sum(len(k) + len(v) for k, v in annotations.items()) > _ANNOTATIONS_MAX:
        causes.append(
            ("metadata.annotations", f"Too long: must have at most {_ANNOTATIONS_MAX} bytes")
        )
    if not kind.builtin:
        spec = obj.get("spec")
        config = spec.get("config") if isinstance(spec, dict) else None
        if spec is not None and not isinstance(spec, dict):
            causes.append(("spec", _schema_type("spec", spec, "object")))
        elif config is not None and not isinstance(config, str):
            causes.append(("spec.config", _schema_type("spec.config", config, "string")))
    if causes:
        raise status.invalid(kind, name, causes)


def _schema_type(path: str, value: Any, want: str) -> str:
    got = _JSON_TYPES.get(type(value), "null")
    return f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"'


__all__ = ["ApiError", "Change", "Event", "Sink", "Store", "Watcher", "parse_rv"]
