"""What changes when a running pod's networks annotation changes: the hot-plug diff.

The attachment record is what the pod has, the plan of its current
annotation (`multihome.networks.attachment.plan_pod`) what it wants.  Only
the annotation's networks take part: the cluster network, ``defaultNetworks``,
the auxiliary chain and what the ``/delegate`` API added stay as they are.

An attachment stays when the record holds one of the same network with the
same wish (`wish_of`: the selection element without its position: interface,
ips, mac, cni-args, default-route, ...), and it keeps its interface name.
Everything else the annotation asks for is added; everything the record
holds for the annotation and the annotation no longer asks for is removed.
A changed wish (another IP) is a removal and an addition.  A NAD's
configuration is not part of the wish: editing a NAD does not re-plug
running pods, as at upstream.

Added attachments with no interface name asked for get the plan's
``net<N>`` when it is free, else the next free number: never a name the
record, the namespace or another wish holds.  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass

from multihome.networks.attachment import Attachment, PodPlan
from multihome.networks.names import free_ifname
from multihome.networks.selection import NetworkSelection

from .cache import CachedAttachment, CacheRecord

#: `CachedAttachment.origin` of what the ``/delegate`` API added: not the annotation's.
DELEGATE = "delegate"
#: `CachedAttachment.origin` of what this controller added.
HOTPLUG = "hotplug"


@dataclass(frozen=True, eq=False)
class Change:
    """The difference between a record and its pod's annotation."""

    keep: tuple[CachedAttachment, ...] = ()
    remove: tuple[CachedAttachment, ...] = ()
    #: In annotation order, each with its final interface name.
    add: tuple[Attachment, ...] = ()
    #: Why the wish cannot be met as it stands (nothing of it runs).
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.remove or self.add or self.problems)


def wish_of(selection: NetworkSelection | None) -> str:
    """A selection as a comparable text: everything it asks, not where it was written."""
    if selection is None:
        return ""
    fields = dataclasses.asdict(dataclasses.replace(selection, path=""))
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def is_wished(attachment: Attachment) -> bool:
    """The annotation named it (not the cluster network nor the configuration's)."""
    return attachment.selection is not None and not attachment.is_default


def diff(record: CacheRecord, plan: PodPlan, *, taken: Iterable[str] = ()) -> Change:
    """What to remove from and add to ``record`` so that it holds what ``plan`` wishes.

    ``taken``: interface names in use in the pod's namespace besides the record's.
    """
    configured = [a for a in plan.attachments if not is_wished(a) and not a.is_default]
    ours = _annotation_owned(record, configured)
    wished = [a for a in plan.attachments if is_wished(a)]

    keep: list[CachedAttachment] = []
    pending: list[Attachment] = []
    left = list(ours)
    for attachment in wished:
        match = next((c for c in left if _same(c, attachment)), None)
        if match is None:
            pending.append(attachment)
        else:
            left.remove(match)
            keep.append(match)
    remove = left

    problems: list[str] = []
    gone = {id(c) for c in remove}
    held = {c.ifname: c.network for c in record.attachments if id(c) not in gone}
    # Names of removed attachments are not reused for generated names: a DEL
    # that fails keeps its interface.
    used = set(held) | set(taken) | {c.ifname for c in remove}
    explicit = {a.selection.interface for a in pending if a.selection and a.selection.interface}
    add: list[Attachment] = []
    for attachment in pending:
        selection = attachment.selection
        assert selection is not None
        if attachment.device_id or attachment.resource_name or attachment.network.resource_name:
            problems.append(
                f"network {attachment.name} needs a device (resourceName or deviceID): "
                "devices are given to a pod when it starts, so it cannot be added to a running one"
            )
            continue
        if selection.interface:
            owner = held.get(selection.interface)
            if owner is not None:
                problems.append(
                    f"interface {selection.interface} asked for {attachment.name} is in use "
                    f"by network {owner}"
                )
                continue
            if selection.interface in taken:
                problems.append(
                    f"interface {selection.interface} asked for {attachment.name} already "
                    "exists in the pod's namespace"
                )
                continue
            name = selection.interface
        else:
            name = free_ifname(attachment.ifname, used | explicit)
        used.add(name)
        add.append(attachment if name == attachment.ifname else _renamed(attachment, name))
    return Change(tuple(keep), tuple(remove), tuple(add), tuple(problems))


def _annotation_owned(record: CacheRecord, configured: list[Attachment]) -> list[CachedAttachment]:
    """The record's attachments that the annotation made (and so may unmake)."""
    others = [a.name for a in configured]
    out = []
    for cached in record.attachments:
        if cached.primary or cached.origin == DELEGATE:
            continue
        if not cached.wish and cached.network in others:
            others.remove(cached.network)  # a defaultNetworks entry or the auxiliary chain
            continue
        out.append(cached)
    return out


def _same(cached: CachedAttachment, attachment: Attachment) -> bool:
    if cached.network != attachment.name:
        return False
    selection = attachment.selection
    if selection is not None and selection.interface and cached.ifname != selection.interface:
        return False
    if cached.wish:
        return cached.wish == wish_of(selection)
    # A record from before wishes were kept: what its delegate ran with says it.
    return cached.config == attachment.conf.text and [tuple(p) for p in cached.cni_args] == list(
        attachment.cni_args
    )


def _renamed(attachment: Attachment, ifname: str) -> Attachment:
    return dataclasses.replace(attachment, ifname=ifname)
