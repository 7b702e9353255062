"""The status model: what the attachment caches hold, as ``GET /shim/v1/attachments``
answers it, and `multihome status` as a table (the daemon in one line, then one
line per attachment)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from multihome.engine.cache import AttachmentCache, CacheRecord

_COLUMNS = ("CONTAINER", "POD", "NETWORK", "INTERFACE", "IPS", "MAC")


def render_table(info: dict[str, Any], attachments: Sequence[dict[str, Any]]) -> str:
    rss = info.get("residentMemoryBytes") or 0
    lines = [
        f"daemon {info.get('version', '?')} (pid {info.get('pid', '?')}): "
        f"{info.get('state', '?')}; "
        f"source {info.get('source', '?')}; {rss / 2**20:.1f} MiB resident; "
        f"{info.get('inFlight', 0)} requests in flight",
        "",
    ]
    rows: list[tuple[str, ...]] = [_COLUMNS]
    for entry in attachments:
        container = str(entry.get("containerId", ""))[:12]
        pod = str(entry.get("pod") or "-")
        for network in entry.get("networks") or []:
            name = str(network.get("network", ""))
            if network.get("default"):
                name += " (default)"
            if network.get("state") != "added":
                name += f" [{network.get('state')}]"
            rows.append(
                (
                    container,
                    pod,
                    name,
                    str(network.get("interface", "")),
                    ",".join(network.get("ips") or []) or "-",
                    str(network.get("mac") or "-"),
                )
            )
    if len(rows) == 1:
        lines.append("nothing is attached on this node")
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines) + "\n"


def list_attachments(cache_dirs: Iterable[str]) -> list[dict[str, Any]]:
    """What the attachment caches hold: one entry per container."""
    out = []
    for directory in sorted(cache_dirs):
        cache = AttachmentCache(directory)
        for container_id in cache.container_ids():
            record = cache.load(container_id)
            if record is not None:
                out.append(describe(record, directory))
    return out


def describe(record: CacheRecord, directory: str) -> dict[str, Any]:
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
