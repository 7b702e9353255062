"""What lint and the admission webhook check of one object: an ADD's checks and more.

An ADD checks a pod's requests against its networks and stops at the first
error finding.  Ahead of time there is more to say: a NAD's IPAM gateways
and routes against its subnets (`addressing`), a pod's requested addresses
against them.  Both `check_nad` and `check_pod` start from exactly the
ADD's checks (`nad.network_from_nad`, `attachment.dry_plan`), so a finding
has the same code, path, message and hint in lint, in the webhook and at
ADD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import addressing
from .addressing import IPNetwork
from .attachment import PodPlan, dry_plan
from .confdir import NO_FILES, ConfFiles
from .config import MultusConfig
from .findings import Finding
from .nad import NadLookup, Network, network_from_nad


def check_nad(
    nad: Mapping[str, Any],
    *,
    files: ConfFiles = NO_FILES,
    conf_dir: str = "",
    cluster_cidrs: Sequence[IPNetwork] = (),
) -> tuple[Network | None, list[Finding]]:
    """A NAD on its own: what an ADD would find, then its IPAM ranges, gateways and routes."""
    network, findings = network_from_nad(nad, files=files, conf_dir=conf_dir)
    if network is not None:
        findings = [*findings, *addressing.check_network(network, cluster_cidrs=cluster_cidrs)]
    return network, findings


def check_pod(
    *,
    config: MultusConfig,
    pod: Mapping[str, Any],
    nads: NadLookup,
    files: ConfFiles = NO_FILES,
    namespace: str = "",
    container_id: str = "dry-run",
) -> tuple[PodPlan, list[Finding]]:
    """A pod's networks as an ADD plans them, then its requests against their subnets."""
    plan, findings = dry_plan(
        config=config,
        pod=pod,
        nads=nads,
        files=files,
        namespace=namespace,
        container_id=container_id,
    )
    return plan, [*findings, *ahead_of_time(plan)]


def ahead_of_time(plan: PodPlan) -> list[Finding]:
    """What a plan's requests break that the ADD itself does not check (subnets, routes)."""
    findings: list[Finding] = []
    selected = [a for a in plan.attachments if a.selection is not None]
    asking = {id(a) for a in selected if a.selection is not None and a.selection.default_route}
    for attachment in selected:
        assert attachment.selection is not None
        elsewhere = bool(asking - {id(attachment)})
        findings.extend(
            addressing.check_requests(
                attachment.selection, attachment.network, default_route_elsewhere=elsewhere
            )
        )
    return findings
