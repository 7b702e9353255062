"""The active probe: capture on the pod's interface and on the parent at once, and count.

Two children of `multihome.doctor.capture`, each in its namespace through
``nsenter --net`` (setns is per thread; no thread of this process changes
namespace): the node side first, listening on the parent until told to stop;
then the pod side, which sends and listens for the capture window.  Only
frames of the pod's MAC and address, the target and the next hop are kept.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from . import inspect, verdict
from .capture import Spec
from .verdict import Evidence, Frames, Probe


class ProbeError(OSError):
    pass


def _helper(netns: str | None, spec: Spec) -> list[str]:
    argv = [sys.executable, "-m", "multihome.doctor.capture", json.dumps(asdict(spec))]
    return (["nsenter", f"--net={netns}"] if netns else []) + argv


def _result(text: str, who: str) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProbeError(f"the {who} capture gave no result: {text.strip()[:200]!r}") from None
    if "error" in out:
        raise ProbeError(f"the {who} capture failed: {out['error']}")
    return out


def count(frames: list[dict[str, Any]], ev: Evidence, nexthop: str) -> Frames:
    out = Frames()
    for f in frames:
        if f["kind"] == "echo-request" and f["dir"] == "out" and f["src"] == ev.mac:
            out.echo_out += 1
        elif f["kind"] == "echo-reply" and f["dir"] == "in" and f["ip_dst"] == ev.ip:
            if f["dst"] == ev.mac:
                out.echo_replies += 1
            else:
                out.echo_replies_elsewhere += 1
        elif f["kind"] == "arp-reply" and f["dst"] == ev.mac and f["spa"] == nexthop:
            out.arp_replies += 1
    return out


def duplicates(frames: list[dict[str, Any]], ev: Evidence) -> list[str]:
    """MACs other than the pod's that answer for the pod's address."""
    return sorted(
        {
            f["sha"]
            for f in frames
            if f["kind"] == "arp-reply" and f["spa"] == ev.ip and f["sha"] != ev.mac
        }
    )


def run(
    ev: Evidence, pod_netns: str, node: str | None, *, seconds: float, echoes: int = 3
) -> tuple[Probe, dict[str, Any]]:
    """Probe ``ev.target`` from the pod's interface; the counts and the raw frames."""
    nexthop = verdict.nexthop(ev)
    spec = Spec(
        role="pod",
        ifname=ev.ifname,
        mac=ev.mac,
        address=ev.ip,
        target=ev.target,
        nexthop=nexthop,
        ident=secrets.randbelow(0xFFFF) + 1,
        count=echoes,
        seconds=seconds,
    )
    rp_before = inspect.rp_drops(pod_netns)
    ct_before = [inspect.conntrack_invalid(ns) or 0 for ns in (pod_netns, node)]
    try:
        node_side = subprocess.Popen(
            _helper(node, Spec(**{**asdict(spec), "role": "node", "ifname": ev.parent})),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except OSError as err:
        raise ProbeError(f"cannot start the node capture: {err}") from None
    try:
        assert node_side.stdout is not None and node_side.stdin is not None
        first = node_side.stdout.readline()
        if first.strip() != "ready":
            raise ProbeError(
                f"the node capture did not start: {(first + node_side.stdout.read())[:200]!r}"
            )
        try:
            pod_side = subprocess.run(
                _helper(pod_netns, spec),
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ProbeError(f"the pod capture did not finish: {err}") from None
        node_side.stdin.close()
        node_out = _result(node_side.stdout.read(), "node")
    finally:
        if node_side.poll() is None:
            node_side.kill()
        node_side.wait()
    pod_out = _result(pod_side.stdout or pod_side.stderr, "pod")
    ct_after = [inspect.conntrack_invalid(ns) or 0 for ns in (pod_netns, node)]
    probe = Probe(
        sent=int(pod_out["sent"]),
        received=int(pod_out["received"]),
        pod=count(pod_out["frames"], ev, nexthop),
        parent=count(node_out["frames"], ev, nexthop),
        parent_arp_answered=any(
            f["kind"] == "arp-reply" and f["spa"] == nexthop and f["dst"] == node_out["parentMac"]
            for f in node_out["frames"]
        ),
        duplicates=duplicates(pod_out["frames"] + node_out["frames"], ev),
        rp_drops=inspect.rp_drops(pod_netns) - rp_before,
        conntrack_invalid=sum(ct_after) - sum(ct_before),
    )
    ev.neighbour = inspect.neighbour(pod_netns, ev.ifname, nexthop)
    return probe, {"pod": pod_out["frames"], "parent": node_out["frames"]}
