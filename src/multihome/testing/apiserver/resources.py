"""The resource types the double serves, their URLs and discovery documents.

Only what multihome touches: pods (with the ``status`` subresource),
NetworkAttachmentDefinitions, the two Event APIs, and DRA's ResourceClaims
and (cluster-scoped) ResourceSlices.  Each type carries the
few traits where the real server treats them differently (built-in or
custom resource, which field selectors it accepts), so the generic store
behaves per type as the real one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_OBJECT_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    #: Built-in types: PUT without metadata.resourceVersion is allowed and list
    #: items carry no kind/apiVersion.  Custom resources differ on both.
    builtin: bool = True
    #: Field selector labels beyond metadata.name/namespace; None: any path.
    field_labels: frozenset[str] | None = frozenset()
    has_generation: bool = True
    #: DELETE answers with the deleted object (pods), or else a Success Status.
    delete_returns_object: bool = False
    #: Cluster-scoped kinds (ResourceSlice) have no namespace in URL or object.
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name in messages and the key of the store: ``plural[.group]``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """The name in "is invalid" messages: ``Kind[.group]``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


POD = Kind(
    group="",
    version="v1",
    plural="pods",
    kind="Pod",
    subresources=("status",),
    short_names=("po",),
    delete_returns_object=True,
    field_labels=frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
)
NAD = Kind(
    group="k8s.cni.cncf.io",
    version="v1",
    plural="network-attachment-definitions",
    kind="NetworkAttachmentDefinition",
    short_names=("net-attach-def",),
    builtin=False,
)
EVENT = Kind(
    group="",
    version="v1",
    plural="events",
    kind="Event",
    short_names=("ev",),
    field_labels=None,
    has_generation=False,
)
EVENT_V1 = Kind(
    group="events.k8s.io",
    version="v1",
    plural="events",
    kind="Event",
    short_names=("ev",),
    field_labels=None,
    has_generation=False,
)
RESOURCE_CLAIM = Kind(
    group="resource.k8s.io",
    version="v1",
    plural="resourceclaims",
    kind="ResourceClaim",
    subresources=("status",),
)
RESOURCE_SLICE = Kind(
    group="resource.k8s.io",
    version="v1",
    plural="resourceslices",
    kind="ResourceSlice",
    namespaced=False,
    field_labels=frozenset({"spec.nodeName", "spec.driver", "spec.pool.name"}),
)
KINDS = (POD, NAD, EVENT, EVENT_V1, RESOURCE_CLAIM, RESOURCE_SLICE)


def kind_named(name: str) -> Kind:
    """A kind from a plural (core first), ``plural.group`` or a Kind name."""
    for kind in KINDS:
        if name in (kind.qualified, kind.plural, kind.kind):
            return kind
    raise KeyError(f"the API double serves no resource {name!r}")


def kind_of(obj: dict[str, Any]) -> Kind:
    """A manifest's kind, from its apiVersion and kind."""
    for kind in KINDS:
        if obj.get("apiVersion") == kind.api_version and obj.get("kind") == kind.kind:
            return kind
    raise KeyError(
        f"the API double serves no kind {obj.get('kind')!r} in {obj.get('apiVersion')!r}"
    )


@dataclass(frozen=True)
class Target:
    """What a resource URL addresses."""

    kind: Kind
    namespace: str | None  # None: across all namespaces
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # the deprecated /watch/ prefix


def parse_path(path: str) -> Target | None:
    """``/api/v1[/watch][/namespaces/NS]/PLURAL[/NAME[/SUB]]``, or /apis/GROUP/VERSION/..."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = bool(rest) and rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        return None
    kind = next(
        (k for k in KINDS if (k.group, k.version, k.plural) == (group, version, rest[0])), None
    )
    if kind is None or (namespace is not None and not kind.namespaced):
        return None
    if not kind.namespaced:
        namespace = ""  # the store keeps cluster-scoped objects under ""
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if (sub is not None and sub not in kind.subresources) or (name and namespace is None):
        return None
    return Target(kind=kind, namespace=namespace, name=name, subresource=sub, watch_path=watch)


def discovery(path: str, *, server_address: str) -> dict[str, Any] | None:
    """The discovery document at `path`, or None if `path` is not one."""
    parts = [p for p in path.split("/") if p]
    groups = sorted({k.group for k in KINDS if k.group})
    if parts == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1])}
    if parts == ["api", "v1"]:
        return _resource_list("", "v1")
    if len(parts) == 3 and parts[0] == "apis" and parts[1] in groups and parts[2] == "v1":
        return _resource_list(parts[1], "v1")
    return None


def _group(group: str) -> dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"name": group, "versions": [version], "preferredVersion": version}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for kind in KINDS:
        if (kind.group, kind.version) != (group, version):
            continue
        resources.append(
            {
                "name": kind.plural,
                "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": _OBJECT_VERBS,
                "shortNames": list(kind.short_names),
            }
        )
        resources.extend(
            {
                "name": f"{kind.plural}/{sub}",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }
            for sub in kind.subresources
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
