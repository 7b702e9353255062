"""From collected evidence to one verdict: why replies on a secondary interface do not return.

Pure: no I/O, so every cause can be tested from evidence alone.  The causes
are those of research/multus-issues.md §2a (R1..R7).  They are tried in an
order that puts what was observed before what is only likely: a node
address as target (R4) and a duplicate address (R5) are facts; a reply that
reached the interface and was dropped there (R2) is seen; a route that sends
requests elsewhere (R7) makes the probe's own path beside the point; then
where the probe's frames stopped (R1, R6) and conntrack (R3).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "info"]


@dataclass
class RouteLookup:
    """One ``ip route get``: the device it picked, or why it failed."""

    dev: str = ""
    gateway: str = ""
    src: str = ""
    error: str = ""


@dataclass
class Frames:
    """What one capture saw of the probe, counted by kind and direction."""

    echo_out: int = 0  # echo requests leaving from the pod's MAC
    echo_replies: int = 0  # echo replies to the pod's address and MAC
    echo_replies_elsewhere: int = 0  # echo replies to the pod's address, another MAC
    arp_replies: int = 0  # ARP replies from the next hop to the pod's MAC


@dataclass
class Probe:
    sent: int = 0
    received: int = 0  # echo replies the pod's socket got
    pod: Frames = field(default_factory=Frames)  # captured on the pod's interface
    parent: Frames = field(default_factory=Frames)  # captured on the node's parent link
    parent_arp_answered: bool = False  # the next hop answered the parent's own MAC
    duplicates: list[str] = field(default_factory=list)  # other MACs holding the pod's IP
    rp_drops: int = 0  # rise of IPReversePathFilter in the pod during the probe
    conntrack_invalid: int = 0  # rise of conntrack "invalid" (pod and node) during it
    error: str = ""


@dataclass
class Evidence:
    pod: str
    network: str
    ifname: str
    mac: str
    address: str  # "ip/prefix" of the interface
    plugin: str = ""
    parent: str = ""
    mode: str = ""
    target: str = ""
    default_dev: str = ""  # who owns the pod's IPv4 default route
    rp_filter_all: int = 0
    rp_filter_if: int = 0
    route_plain: RouteLookup | None = None  # ip route get T
    route_from: RouteLookup | None = None  # ip route get T from ADDRESS
    reverse: RouteLookup | None = None  # ip route get ADDRESS from T iif IFNAME
    node_owner: str = ""  # the node interface that holds the target address
    parent_state: str = ""
    parent_promisc: int = 0
    parent_found: bool = True
    neighbour: str = ""  # the pod's neighbour state for the next hop
    overlays: list[str] = field(default_factory=list)  # vxlan/ipip/wireguard devices on the node
    node_route: RouteLookup | None = None  # the node's route for the target
    conntrack_invalid: int | None = None  # the node's counter; None: no conntrack
    probe: Probe | None = None

    @property
    def rp_filter(self) -> int:
        """The kernel applies the larger of ``all`` and the interface's value."""
        return max(self.rp_filter_all, self.rp_filter_if)

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def subnet(self) -> str:
        return str(ipaddress.ip_interface(self.address).network) if self.address else ""


@dataclass
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class Verdict:
    cause: str  # "R1".."R7", "healthy", "static-only" or "unknown"
    summary: str
    fix: str

    @property
    def line(self) -> str:
        return f"{self.cause}: {self.summary}" + (f": {self.fix}" if self.fix else "")


def _leaves_elsewhere(route: RouteLookup | None, ifname: str) -> bool:
    return route is not None and not route.error and route.dev != ifname


def decide(ev: Evidence) -> Verdict:
    """The one cause the evidence points at, with its fix."""
    t, nic, ip, subnet = ev.target, ev.ifname, ev.ip, ev.subnet
    if not t:
        return Verdict(
            "static-only",
            f"no --target given: static checks of {nic} only, no probe",
            "name the device that does not answer with --target IP",
        )
    if ev.node_owner:
        return Verdict(
            "R4",
            f"{t} is the node's own address (on {ev.node_owner}); {ev.plugin or 'macvlan'} "
            f"children cannot reach their parent's host by design",
            f"reach the node through eth0, or give the node a {ev.plugin or 'macvlan'} "
            f"shim interface on {ev.parent or 'the parent'} with a route to {subnet}",
        )
    probe = ev.probe or Probe()
    if probe.duplicates:
        macs = ", ".join(probe.duplicates)
        return Verdict(
            "R5",
            f"{ip} is also held by {macs} on the LAN (duplicate address; {nic} is {ev.mac})",
            "give each node's range its own addresses (whereabouts, or host-local with "
            "disjoint ranges per node) and free the stale holder",
        )
    reverse_fails = ev.reverse is not None and bool(ev.reverse.error)
    if probe.pod.echo_replies and not probe.received:
        via = ev.route_from.dev if ev.route_from and ev.route_from.dev else ev.default_dev
        if ev.rp_filter == 1 and (reverse_fails or probe.rp_drops):
            return Verdict(
                "R2",
                f"replies reach {nic} and are dropped by rp_filter=1 because the reply "
                f"route points at {via or 'another interface'}",
                f"set rp_filter=2 with a tuning sysctl on this NAD "
                f"(net.ipv4.conf.{nic}.rp_filter), or add a route for {t}'s subnet "
                f"(e.g. {_net(t)}) via {nic}",
            )
        if probe.conntrack_invalid:
            return _r3(ev, probe)
        return Verdict(
            "R2",
            f"replies reach {nic} but the pod's stack drops them (rp_filter="
            f"{ev.rp_filter}, netfilter in the pod?)",
            f"check the pod's firewall rules and rp_filter for {nic}",
        )
    if _leaves_elsewhere(ev.route_plain, nic):
        dev = ev.route_plain.dev if ev.route_plain else ""
        return Verdict(
            "R7",
            f"requests to {t} leave through {dev}, not {nic} (no route for {t} via {nic})",
            f"add a route for {t}'s subnet (e.g. {_net(t)}) via {nic} "
            f'("routes" in the NAD\'s IPAM), '
            f"or use source-based routing (sbr)",
        )
    if _leaves_elsewhere(ev.route_from, nic):
        dev = ev.route_from.dev if ev.route_from else ""
        return Verdict(
            "R2",
            f"the pod answers from {ip} via {dev}, not {nic}: replies sourced from {nic}'s "
            f"address take the wrong way (and {dev}'s network drops them as spoofed)",
            f"route traffic from {ip} via {nic} (a source rule/table that points at {nic}, "
            f"e.g. the sbr plugin), or remove the rule that sends it to {dev}",
        )
    if probe.error:
        return Verdict("unknown", f"the probe failed: {probe.error}", "")
    if probe.sent and probe.received:
        if probe.conntrack_invalid:
            return _r3(ev, probe)
        return Verdict("healthy", f"{t} answers {nic} ({probe.received}/{probe.sent})", "")
    if not probe.pod.arp_replies and not probe.parent.arp_replies:
        seen = (
            f"{nexthop(ev)} answers the parent's own MAC, so the LAN filters the pod's MAC"
            if probe.parent_arp_answered
            else "nothing answered the pod's MAC on the parent"
        )
        return Verdict(
            "R1",
            f"no frame to {nic}'s MAC {ev.mac} comes back from {nexthop(ev)}: {seen}",
            "allow the pod's MAC on the LAN (hypervisor: promiscuous mode, MAC changes "
            "and forged transmits; switch port security), or use ipvlan, which uses "
            f"the parent's MAC ({ev.parent or 'the parent'})",
        )
    if probe.pod.arp_replies or probe.parent.arp_replies:
        if probe.parent.echo_replies_elsewhere:
            return Verdict(
                "R5",
                f"{t} sends its replies for {ip} to another MAC than {ev.mac}",
                "find the other holder of the address (stale ARP on the target or a "
                "duplicate) and give the pod an address no one else uses",
            )
        if probe.conntrack_invalid:
            return _r3(ev, probe)
        return Verdict(
            "R6",
            f"{nexthop(ev)} answers ARP from {nic} but never answers the echo requests: "
            f"{t} has no route back to {subnet}",
            f"on {t} (or its gateway), add a route for {subnet} via the LAN, or give the "
            f"pod an address in {t}'s subnet; check the VLAN of {ev.parent or 'the parent'}",
        )
    return Verdict("unknown", "the evidence matches no known cause", "")


def _r3(ev: Evidence, probe: Probe) -> Verdict:
    return Verdict(
        "R3",
        f"conntrack counted {probe.conntrack_invalid} INVALID packets during the probe: the "
        f"flow to {ev.target} crosses a stack asymmetrically and is dropped as INVALID",
        "route the cluster and service CIDRs via eth0 in the pod, and on kube-proxy >= 1.29 "
        "set nf_conntrack_tcp_be_liberal=1",
    )


def _net(target: str) -> str:
    return str(ipaddress.ip_network(f"{target}/24", strict=False))


def nexthop(ev: Evidence) -> str:
    """Whom the pod's interface asks for the target: its gateway on that interface, or itself."""
    route = ev.route_from
    if route and route.dev == ev.ifname and route.gateway:
        return route.gateway
    return ev.target


def checks(ev: Evidence) -> list[Check]:
    """Every check with its result, in the order an operator would run them."""
    out = [
        Check(
            "attachment",
            "info",
            f"{ev.network} as {ev.ifname} {ev.address} {ev.mac} "
            f"({ev.plugin or '?'} on {ev.parent or '?'}, mode {ev.mode or 'default'})",
        ),
        Check(
            "default route",
            "info",
            f"the pod's IPv4 default route is via {ev.default_dev or 'none'}",
        ),
    ]
    if ev.rp_filter == 1:
        rp_status: Status = "warn" if ev.reverse and ev.reverse.error else "ok"
    else:
        rp_status = "ok"
    out.append(
        Check(
            "rp_filter",
            rp_status,
            f"effective {ev.rp_filter} (all={ev.rp_filter_all}, {ev.ifname}={ev.rp_filter_if})",
        )
    )
    out.append(
        Check(
            "parent",
            "fail" if not ev.parent_found or ev.parent_state not in ("UP", "UNKNOWN") else "ok",
            f"{ev.parent} {'missing on the node' if not ev.parent_found else ev.parent_state}"
            f", promiscuity {ev.parent_promisc}",
        )
    )
    if ev.overlays:
        out.append(Check("overlays", "info", "on the node: " + ", ".join(ev.overlays)))
    if not ev.target:
        return out
    for name, route in (
        (f"route to {ev.target}", ev.route_plain),
        (f"route to {ev.target} from {ev.ip}", ev.route_from),
        (f"reverse path {ev.ip} from {ev.target} iif {ev.ifname}", ev.reverse),
        (f"node route to {ev.target}", ev.node_route),
    ):
        if route is None:
            continue
        status: Status
        if route.error:
            detail, status = route.error, "warn"
            if name.startswith("reverse"):
                detail = (
                    f"fails, so rp_filter={ev.rp_filter} drops what {ev.target} sends "
                    f"to {ev.ifname} ({detail})"
                )
        else:
            via = f" via {route.gateway}" if route.gateway else ""
            detail = f"dev {route.dev}{via}" + (f" src {route.src}" if route.src else "")
            status = "ok" if route.dev == ev.ifname or name.startswith("reverse") else "warn"
        if name.startswith("node"):
            status = "info"
        out.append(Check(name, status, detail))
    out.append(
        Check(
            "node address",
            "fail" if ev.node_owner else "ok",
            f"{ev.target} is on the node's {ev.node_owner}"
            if ev.node_owner
            else f"{ev.target} is not an address of the node",
        )
    )
    if ev.neighbour:
        out.append(Check("neighbour", "info", f"{nexthop(ev)} is {ev.neighbour} on {ev.ifname}"))
    if ev.conntrack_invalid is None:
        out.append(Check("conntrack", "info", "no conntrack in the node's kernel"))
    probe = ev.probe
    if probe is None:
        return out
    if probe.error:
        out.append(Check("probe", "fail", probe.error))
        return out
    out += [
        Check(
            "probe",
            "ok" if probe.received == probe.sent and probe.sent else "fail",
            f"{probe.sent} echo requests from {ev.ip} bound to {ev.ifname}, "
            f"{probe.received} replies",
        ),
        Check(
            f"capture on {ev.ifname}",
            "ok" if probe.pod.echo_replies else "warn",
            _frames(probe.pod),
        ),
        Check(
            f"capture on {ev.parent}",
            "ok" if probe.parent.echo_replies else "warn",
            _frames(probe.parent)
            + ("; the next hop answers the parent's own MAC" if probe.parent_arp_answered else ""),
        ),
        Check(
            "duplicate address",
            "fail" if probe.duplicates else "ok",
            f"{ev.ip} also answered by {', '.join(probe.duplicates)}"
            if probe.duplicates
            else f"no other MAC answers for {ev.ip}",
        ),
        Check(
            "drop counters",
            "warn" if probe.rp_drops or probe.conntrack_invalid else "ok",
            f"during the probe: IPReversePathFilter +{probe.rp_drops}, "
            f"conntrack invalid +{probe.conntrack_invalid}",
        ),
    ]
    return out


def _frames(f: Frames) -> str:
    text = (
        f"{f.echo_out} requests out, {f.echo_replies} replies in, "
        f"{f.arp_replies} ARP replies to the pod's MAC"
    )
    if f.echo_replies_elsewhere:
        text += f", {f.echo_replies_elsewhere} replies to another MAC"
    return text


def to_dict(ev: Evidence, verdict: Verdict, found: list[Check]) -> dict[str, Any]:
    return {
        "verdict": {"cause": verdict.cause, "summary": verdict.summary, "fix": verdict.fix},
        "checks": [asdict(c) for c in found],
        "evidence": asdict(ev),
    }
