"""Reading and changing a pod's namespace: what it sees, what it moves, what it leaves alone."""

from __future__ import annotations

import asyncio
import os

import pytest

from multihome.engine import podnet
from multihome.testing.lab import Lab, Netns

pytestmark = pytest.mark.netns


def _pod_with_two_links(lab: Lab) -> Netns:
    ns = lab.netns("pod")
    lab.run(ns, "ip", "link", "add", "name", "va", "type", "veth", "peer", "name", "vb")
    for link, cidr in (("va", "10.9.9.1/24"), ("vb", "10.8.8.1/24")):
        lab.run(ns, "ip", "link", "set", link, "up")
        lab.address(ns, link, cidr)
    lab.address(ns, "va", "fd00::1/64")
    lab.run(ns, "ip", "route", "add", "default", "via", "10.9.9.254", "dev", "va")
    lab.run(ns, "ip", "-6", "route", "add", "default", "via", "fd00::fe", "dev", "va")
    return ns


def test_links_with_macs_and_global_addresses(lab: Lab) -> None:
    ns = _pod_with_two_links(lab)
    links = asyncio.run(podnet.read_links(ns.path))
    assert set(links) == {"lo", "va", "vb"}
    assert links["va"].addresses == ["10.9.9.1/24", "fd00::1/64"]  # no fe80::, no 127.0.0.1
    assert links["va"].mac == lab.links(ns)["va"].mac
    assert links["va"].mtu == 1500


def test_default_routes_move_and_clear(lab: Lab) -> None:
    path = _pod_with_two_links(lab).path
    routes = asyncio.run(podnet.default_routes(path))
    assert sorted(r.gateway for r in routes) == ["10.9.9.254", "fd00::fe"]

    asyncio.run(
        podnet.apply_default_routes(
            path, take=[podnet.DefaultRoute("vb", "10.8.8.254")], clear=[("va", 6)]
        )
    )

    assert asyncio.run(podnet.default_routes(path)) == [podnet.DefaultRoute("vb", "10.8.8.254")]


def test_a_missing_namespace_is_an_os_error_and_the_caller_stays_home() -> None:
    home = os.readlink("/proc/thread-self/ns/net")
    with pytest.raises(OSError, match="/nonexistent/netns"):
        asyncio.run(podnet.read_links("/nonexistent/netns"))
    assert os.readlink("/proc/thread-self/ns/net") == home


def test_a_nul_byte_in_a_path_or_a_name_is_an_os_error() -> None:
    with pytest.raises(podnet.NamespaceError, match="NUL"):
        asyncio.run(podnet.read_links("/run/netns/a\0b"))
    assert asyncio.run(podnet.delete_link("/run/netns/none", "a\0b")) is False
