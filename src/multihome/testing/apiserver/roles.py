"""RBAC roles for the API double: rules as a ClusterRole lists them, and how RBAC matches them.

An operator who swaps Multus for multihome keeps the ClusterRole Multus
shipped, so tests must play that role exactly: the double authorizes each
request against a `Role`'s rules the way the RBAC authorizer does (API
group, resource with subresource as ``pods/status``, ``*`` and
``*/subresource`` wildcards, verb, resourceNames) and answers a denial with
the real server's 403 (`status.forbidden`).

The three roles here are data copied from their sources: Multus v4.0.2's
and Multus HEAD's ClusterRole ``multus`` (deployments/multus-daemonset*.yml
of k8snetworkplumbingwg/multus-cni, identical in the thin, thick and CRI-O
manifests) and multihome's own least-privilege role (deploy/kubernetes/base/rbac.yaml
ships it, docs/configuration-kube.md shows it; tests keep the three equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The user the double's requests run as while a role is set (the Multus DaemonSet's).
SERVICE_ACCOUNT_USER = "system:serviceaccount:kube-system:multus"

Rule = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Role:
    """A ClusterRole: its name and its rules (``apiGroups``, ``resources``, ``verbs``, ...)."""

    name: str
    rules: tuple[Rule, ...]

    def allows(
        self, *, verb: str, group: str, resource: str, subresource: str = "", name: str = ""
    ) -> bool:
        """Whether any rule grants the request (RBAC's ``RuleAllows``)."""
        combined = f"{resource}/{subresource}" if subresource else resource
        return any(
            _verb_matches(rule, verb)
            and _group_matches(rule, group)
            and _resource_matches(rule, combined, subresource)
            and _name_matches(rule, name)
            for rule in self.rules
        )

    def manifest(self) -> dict[str, Any]:
        """The role as a ClusterRole object."""
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": self.name},
            "rules": [{k: list(v) for k, v in rule.items()} for rule in self.rules],
        }


def _verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs", ()))


def _group_matches(rule: Rule, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups", ()))


def _resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for wanted in rule.get("resources", ()):
        if wanted in ("*", combined):
            return True
        if subresource and wanted == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: Rule, name: str) -> bool:
    names = rule.get("resourceNames", ())
    return not names or name in names


_CORE_EVENTS: Rule = {
    "apiGroups": ["", "events.k8s.io"],
    "resources": ["events"],
    "verbs": ["create", "patch", "update"],
}

#: Multus v4.0.2's ClusterRole: pods may be read one by one and updated, not listed or watched.
MULTUS_V4_0_2 = Role(
    "multus",
    (
        {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "update"]},
        _CORE_EVENTS,
    ),
)

#: Multus HEAD's ClusterRole: pods also listed and watched (its informer), DRA objects read.
MULTUS_HEAD = Role(
    "multus",
    (
        {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["*"], "verbs": ["*"]},
        {
            "apiGroups": [""],
            "resources": ["pods", "pods/status"],
            "verbs": ["get", "list", "update", "watch"],
        },
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceclaims", "resourceclaims/status", "resourceslices"],
            "verbs": ["get", "list"],
        },
        _CORE_EVENTS,
    ),
)

#: multihome's least privilege: what its daemon and thin plugin send, nothing more.
MULTIHOME = Role(
    "multihome",
    (
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
        {
            "apiGroups": ["k8s.cni.cncf.io"],
            "resources": ["network-attachment-definitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]},
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceslices"],
            "verbs": ["list", "watch"],
        },
    ),
)

ROLES = {"multus-v4.0.2": MULTUS_V4_0_2, "multus-head": MULTUS_HEAD, "multihome": MULTIHOME}
