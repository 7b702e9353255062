"""`multihome diagnose`: why replies on a pod's secondary interface never come back.

It finds the pod's sandbox and attachment in the attachment cache (the
records the engine writes: netns, interface, the delegate's config with its
``master`` and ``mode``, and its result), reads the static facts in the
pod's namespace and on the node (doctor/inspect.py), probes the target the
operator named from the pod's interface while capturing on it and on the
parent (doctor/probe.py), and hands the evidence to the pure verdict
(doctor/verdict.py).  The verdict comes first, then each check.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from multihome.engine.cache import AttachmentCache, CachedAttachment, CacheRecord

from . import inspect, probe, verdict
from .verdict import Check, Evidence, Probe, Verdict

#: Where the engine keeps its records unless a config names another ``cniDir``.
DEFAULT_CACHE_DIR = "/var/lib/cni/multus/multihome"


class DiagnoseError(Exception):
    """The pod, the network or its interface cannot be found; the message says which."""


@dataclass
class Report:
    evidence: Evidence
    verdict: Verdict
    checks: list[Check]
    frames: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = verdict.to_dict(self.evidence, self.verdict, self.checks)
        out["frames"] = self.frames
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        ev = self.evidence
        lines = [self.verdict.line, "", f"pod {ev.pod}, network {ev.network}, {ev.ifname}"]
        width = max(len(c.name) for c in self.checks)
        lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        return "\n".join(lines) + "\n"


def find_record(pod: str, cache_dirs: Iterable[str]) -> CacheRecord:
    """The record of ``pod`` ("namespace/name", "name" or a container ID)."""
    found: list[CacheRecord] = []
    searched = []
    for directory in cache_dirs:
        searched.append(directory)
        cache = AttachmentCache(directory)
        for container_id in cache.container_ids():
            record = cache.load(container_id)
            if record is None:
                continue
            if pod in (record.pod, record.container_id) or (
                "/" not in pod and record.pod_name == pod
            ):
                found.append(record)
    if not found:
        raise DiagnoseError(
            f"pod {pod!r}: no attachment record in {', '.join(searched) or 'no cache directory'} "
            "(give NAMESPACE/NAME or a container ID of a pod on this node, or --cache-dir)"
        )
    if len(found) > 1:
        names = ", ".join(f"{r.pod} ({r.container_id[:12]})" for r in found)
        raise DiagnoseError(f"pod {pod!r} matches several records: {names}; give NAMESPACE/NAME")
    return found[0]


def _plugin(attachment: CachedAttachment) -> dict[str, Any]:
    """The delegate plugin that owns the link: the one with a ``master``, or the first."""
    try:
        conf = json.loads(attachment.config)
    except ValueError:
        return {}
    plugins = conf.get("plugins") or [conf] if isinstance(conf, dict) else []
    plugins = [p for p in plugins if isinstance(p, dict)]
    chosen: dict[str, Any] = next(
        (p for p in plugins if "master" in p), plugins[0] if plugins else {}
    )
    return chosen


def pick(record: CacheRecord, network: str | None) -> CachedAttachment:
    secondary = [a for a in record.attachments if not a.primary]
    if network:
        for a in record.attachments:
            if network in (a.network, a.ifname) or a.network.endswith("/" + network):
                return a
        known = ", ".join(f"{a.network} ({a.ifname})" for a in record.attachments)
        raise DiagnoseError(f"--network {network!r}: pod {record.pod} has only {known}")
    with_parent = [a for a in secondary if "master" in _plugin(a)]
    if with_parent or secondary:
        return (with_parent or secondary)[0]
    raise DiagnoseError(f"pod {record.pod} has no secondary network to diagnose")


def _from_result(attachment: CachedAttachment) -> tuple[str, str]:
    result = attachment.result or {}
    interfaces = result.get("interfaces", [])
    index = next((i for i, x in enumerate(interfaces) if x.get("name") == attachment.ifname), None)
    mac = interfaces[index].get("mac", "") if index is not None else ""
    for ip in result.get("ips", []):
        if ip.get("interface") == index and ":" not in ip.get("address", ":"):
            return mac, str(ip["address"])
    return mac, ""


def evidence(
    record: CacheRecord, attachment: CachedAttachment, target: str, node: str | None
) -> Evidence:
    plugin = _plugin(attachment)
    mac, address = _from_result(attachment)
    links = {link["ifname"]: link for link in inspect.ip_json(record.netns, "-d", "addr", "show")}
    link = links.get(attachment.ifname)
    if link is None:
        raise DiagnoseError(
            f"{attachment.ifname} of {attachment.network} is not in the pod's namespace "
            f"{record.netns} (it has {', '.join(sorted(links))})"
        )
    mac = str(link.get("address", "")).lower() or mac
    live = [
        f"{a['local']}/{a['prefixlen']}"
        for a in link.get("addr_info", [])
        if a.get("scope") == "global" and a.get("family") == "inet"
    ]
    if not live:
        cached = f" (its CNI result said {address})" if address else ""
        raise DiagnoseError(
            f"{attachment.ifname} has no IPv4 address{cached}: nothing to probe from"
        )
    address = live[0]
    parent = str(plugin.get("master", ""))
    if not parent and plugin.get("type") in ("macvlan", "ipvlan"):
        # No master: the plugin took the node's default-route interface.
        parent = inspect.route_get(node, "1.1.1.1").dev
    return Evidence(
        pod=record.pod,
        network=attachment.network,
        ifname=attachment.ifname,
        mac=mac,
        address=address,
        plugin=str(plugin.get("type", "")),
        parent=parent,
        # The link's own mode wins over the config's: it is what the kernel does.
        mode=str(link.get("linkinfo", {}).get("info_data", {}).get("mode", plugin.get("mode", ""))),
        target=target,
    )


def diagnose(
    pod: str,
    *,
    cache_dirs: Iterable[str] = (DEFAULT_CACHE_DIR,),
    network: str | None = None,
    target: str | None = None,
    capture: float = 3.0,
    node_netns: str | None = None,
) -> Report:
    """Everything `multihome diagnose` prints, as a `Report`."""
    if target:
        try:
            if ipaddress.ip_address(target).version != 4:
                raise ValueError
        except ValueError:
            raise DiagnoseError(f"--target {target!r}: give an IPv4 address") from None
    if not capture > 0:
        raise DiagnoseError(f"--capture {capture}: give a number of seconds above 0")
    record = find_record(pod, cache_dirs)
    attachment = pick(record, network)
    try:
        ev = evidence(record, attachment, target or "", node_netns)
        inspect.fill(ev, record.netns, node_netns)
        frames: dict[str, Any] = {}
        if target and ev.parent_found and not ev.node_owner:
            try:
                ev.probe, frames = probe.run(ev, record.netns, node_netns, seconds=capture)
            except probe.ProbeError as err:
                ev.probe = Probe(error=str(err))
    except inspect.InspectError as err:
        raise DiagnoseError(f"cannot inspect pod {record.pod}: {err}") from None
    return Report(ev, verdict.decide(ev), verdict.checks(ev), frames)
