"""Hardware and IP addresses as users write them in annotations.

Multus checks requested addresses with Go's ``net.ParseMAC``,
``net.ParseIP`` and ``net.ParseCIDR``; these functions accept the same
spellings, so an annotation that worked with Multus parses here too, and
then say more about the address (multicast, locally administered, prefix).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_HEX2 = re.compile(r"[0-9a-fA-F]{2}")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def parse_mac(text: str) -> bytes | None:
    """The bytes of a hardware address in any form Go's ``net.ParseMAC`` takes, or None.

    That is 6, 8 or 20 bytes, written as hex pairs separated by ``:`` or
    ``-`` (``02:00:5e:10:00:01``), or as dot-separated groups of four hex
    digits (``0200.5e10.0001``).
    """
    if len(text) < 14:
        return None
    if text[2] in ":-":
        sep = text[2]
        parts = text.split(sep)
        if len(parts) not in (6, 8, 20) or not all(_HEX2.fullmatch(p) for p in parts):
            return None
        return bytes(int(p, 16) for p in parts)
    if text[4] == ".":
        groups = text.split(".")
        if len(groups) not in (3, 4, 10) or not all(_HEX4.fullmatch(g) for g in groups):
            return None
        return bytes.fromhex("".join(groups))
    return None


def format_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def mac_problem(data: bytes) -> tuple[str, str] | None:
    """``(finding code, reason)`` when a 6-byte MAC cannot be an interface's address."""
    if len(data) != 6:
        return None
    if data == b"\xff" * 6:
        return "mac-broadcast", "it is the broadcast address"
    if data == b"\0" * 6:
        return "mac-zero", "it is all zeros"
    if data[0] & 0x01:
        return (
            "mac-multicast",
            f"it is a multicast address: the lowest bit of the first octet "
            f"(0x{data[0]:02x}) is set",
        )
    return None


def is_locally_administered(data: bytes) -> bool:
    return bool(data[0] & 0x02)


def suggest_mac(data: bytes) -> str:
    """A locally administered unicast MAC like ``data``: first octet 02, the rest kept."""
    rest = data[1:6] if len(data) >= 6 else b"\0" * 5
    if rest in (b"\0" * 5, b"\xff" * 5):
        rest = b"\0\0\0\0\x01"
    return format_mac(b"\x02" + rest)


def parse_ip(text: str) -> IPAddress | None:
    """An IP address as Go's ``net.ParseIP`` takes it (no zone, no prefix), or None."""
    if not isinstance(text, str) or "%" in text or not text.isascii():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class RequestedIP:
    """One entry of a request's ``ips``: the address and, when given, its prefix."""

    text: str
    address: IPAddress
    prefix: int | None

    @property
    def family(self) -> int:
        return self.address.version

    @property
    def interface(self) -> IPInterface | None:
        if self.prefix is None:
            return None
        return ipaddress.ip_interface(f"{self.address}/{self.prefix}")


def parse_requested_ip(text: str) -> RequestedIP | None:
    """An ``ips`` entry as Multus accepts it: ``ParseCIDR`` with a ``/``, else ``ParseIP``."""
    if not isinstance(text, str):
        return None
    if "/" not in text:
        address = parse_ip(text)
        return None if address is None else RequestedIP(text, address, None)
    head, _, tail = text.partition("/")
    address = parse_ip(head)
    if address is None or not tail.isdigit() or not tail.isascii() or len(tail) > 3:
        return None
    prefix = int(tail)
    if prefix > address.max_prefixlen:
        return None
    return RequestedIP(text, address, prefix)


def address_of(cidr: str) -> IPAddress | None:
    """The address part of ``a.b.c.d/n`` (or of a bare address), or None."""
    requested = parse_requested_ip(cidr)
    return None if requested is None else requested.address
