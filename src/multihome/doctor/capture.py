"""The probe's hands inside one namespace: capture frames, send ARP and echo requests.

`multihome diagnose` runs this module as a child process, inside the pod's
namespace (``role=pod``) and inside the node's (``role=node``), through
``nsenter --net``: setns is per thread, and a child process keeps the
caller's threads and event loop out of any other namespace.  It uses only
the standard library (``AF_PACKET`` and a raw ICMP socket), so it needs no
tcpdump in the daemon's image.

In the pod it sends, from the pod's own interface only: an ARP probe for the
pod's address (RFC 5227, sender 0.0.0.0; any answer is a duplicate), an ARP
request from the pod's MAC for the next hop, and a few echo requests from the
interface's address to the target the operator named.  On the node it listens
on the parent and sends one ARP probe from the parent's MAC for the next
hop, to tell "the LAN drops the pod's MAC" from "nothing answers at all".

The parameters come as one JSON argument; the frames seen (only those of the
pod's MAC, its address, the target and the next hop) go to stdout as JSON.
The node side prints ``ready`` first and captures until its stdin closes, so
the caller starts the pod side only once the node side listens.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_BINDTODEVICE = 25
BROADCAST = b"\xff" * 6
#: A hard bound on the node side, in case its stdin never closes.
NODE_LIMIT = 120.0


@dataclass(frozen=True)
class Spec:
    role: str  # "pod" or "node"
    ifname: str
    mac: str
    address: str  # the pod interface's IPv4 address (no prefix)
    target: str
    nexthop: str  # the target, or the gateway toward it
    ident: int  # ICMP echo identifier of this probe
    count: int = 3
    seconds: float = 2.0

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_frame(src_mac: str, sender_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP request (sender 0.0.0.0 makes it an RFC 5227 probe)."""
    sha = mac_bytes(src_mac)
    body = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1)
    body += sha + socket.inet_aton(sender_ip) + b"\0" * 6 + socket.inet_aton(target_ip)
    return BROADCAST + sha + struct.pack("!H", ETH_P_ARP) + body


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"multihome-diagnose"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def parse_frame(frame: bytes, outgoing: bool) -> dict[str, Any] | None:
    """The fields the verdict needs of an ARP or ICMP echo frame; None for others."""
    if len(frame) < 14:
        return None
    dst, src = mac_text(frame[0:6]), mac_text(frame[6:12])
    (ethertype,) = struct.unpack("!H", frame[12:14])
    out: dict[str, Any] = {"dir": "out" if outgoing else "in", "src": src, "dst": dst}
    body = frame[14:]
    if ethertype == ETH_P_ARP and len(body) >= 28:
        op = struct.unpack("!H", body[6:8])[0]
        out.update(
            kind="arp-request" if op == 1 else "arp-reply",
            sha=mac_text(body[8:14]),
            spa=socket.inet_ntoa(body[14:18]),
            tpa=socket.inet_ntoa(body[24:28]),
        )
        return out
    if ethertype == ETH_P_IP and len(body) >= 20 and body[9] == 1:
        ihl = (body[0] & 0x0F) * 4
        icmp = body[ihl : ihl + 8]
        if len(icmp) < 8 or icmp[0] not in (0, 8):
            return None
        ident, seq = struct.unpack("!HH", icmp[4:8])
        out.update(
            kind="echo-reply" if icmp[0] == 0 else "echo-request",
            ip_src=socket.inet_ntoa(body[12:16]),
            ip_dst=socket.inet_ntoa(body[16:20]),
            ident=ident,
            seq=seq,
        )
        return out
    return None


def relevant(spec: Spec, seen: dict[str, Any]) -> bool:
    """Frames of this probe: our echoes, and ARP about the pod, the target or the next hop."""
    if seen["kind"].startswith("echo"):
        return bool(seen["ident"] == spec.ident)
    return bool({seen["spa"], seen["tpa"]} & {spec.address, spec.target, spec.nexthop})


class Capture:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((spec.ifname, ETH_P_ALL))
        self.sock.setblocking(False)
        self.frames: list[dict[str, Any]] = []

    def drain(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            seen = parse_frame(data, addr[2] == PACKET_OUTGOING)
            if seen is not None and relevant(self.spec, seen):
                self.frames.append(seen)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)


def run_node(spec: Spec) -> dict[str, Any]:
    capture = Capture(spec)
    print("ready", flush=True)
    # From the socket: /sys is the caller's, not this namespace's, under nsenter --net.
    parent_mac = mac_text(capture.sock.getsockname()[4])
    capture.send(arp_frame(parent_mac, "0.0.0.0", spec.nexthop))
    deadline = time.monotonic() + NODE_LIMIT
    stdin = sys.stdin.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([capture.sock, stdin], [], [], 1.0)
        capture.drain()
        if stdin in ready and not os.read(stdin, 4096):
            break
    capture.drain()
    return {"frames": capture.frames, "parentMac": parent_mac}


def _echo_socket(spec: Spec) -> socket.socket:
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    # Bound to the interface and its address: the probe leaves through the
    # pod's own interface, whatever the routes say (they are checked apart).
    icmp.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, spec.ifname.encode())
    icmp.bind((spec.address, 0))
    icmp.setblocking(False)
    return icmp


def _echo_replies(spec: Spec, icmp: socket.socket) -> set[int]:
    got: set[int] = set()
    while True:
        try:
            data, (source, _) = icmp.recvfrom(65535)
        except BlockingIOError:
            return got
        ihl = (data[0] & 0x0F) * 4
        if len(data) >= ihl + 8 and data[ihl] == 0 and source == spec.target:
            ident, seq = struct.unpack("!HH", data[ihl + 4 : ihl + 8])
            if ident == spec.ident:
                got.add(seq)


def run_pod(spec: Spec) -> dict[str, Any]:
    capture = Capture(spec)
    icmp = _echo_socket(spec)
    capture.send(arp_frame(spec.mac, "0.0.0.0", spec.address))
    capture.send(arp_frame(spec.mac, spec.address, spec.nexthop))
    start = time.monotonic()
    deadline = start + spec.seconds
    replies: set[int] = set()
    sent = 0
    while time.monotonic() < deadline:
        capture.drain()
        answered = any(
            f["kind"] == "arp-reply" and f["spa"] == spec.nexthop for f in capture.frames
        )
        # Echoes go once the next hop answered ARP (or after a third of the
        # window), so that a duplicate's answer to the earlier probe is in.
        if sent < spec.count and (answered or time.monotonic() > start + spec.seconds / 3):
            sent += 1
            icmp.sendto(echo_request(spec.ident, sent), (spec.target, 0))
        replies |= _echo_replies(spec, icmp)
        if sent == spec.count and len(replies) == spec.count:
            break  # everything came back: no reason to wait out the window
        select.select([capture.sock, icmp], [], [], 0.05)
    capture.drain()
    replies |= _echo_replies(spec, icmp)
    return {"frames": capture.frames, "sent": sent, "received": len(replies)}


def main(argv: list[str]) -> int:
    try:
        spec = Spec.from_json(argv[0])
        ipaddress.IPv4Address(spec.address)
        ipaddress.IPv4Address(spec.target)
        out = run_node(spec) if spec.role == "node" else run_pod(spec)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as err:
        out = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
