"""Netlink in a pod's namespace: what it reads and changes, and that it leaves the caller alone."""

from __future__ import annotations

import os

import pytest

from multihome.engine import netlink
from multihome.testing.lab import Lab

pytestmark = pytest.mark.netns


def _pod_with_two_links(lab: Lab) -> str:
    ns = lab.netns("pod")
    lab.run(ns, "ip", "link", "add", "name", "va", "type", "veth", "peer", "name", "vb")
    for link, cidr in (("va", "10.9.9.1/24"), ("vb", "10.8.8.1/24")):
        lab.run(ns, "ip", "link", "set", link, "up")
        lab.address(ns, link, cidr)
    lab.address(ns, "va", "fd00::1/64")
    lab.run(ns, "ip", "route", "add", "default", "via", "10.9.9.254", "dev", "va")
    lab.run(ns, "ip", "-6", "route", "add", "default", "via", "fd00::fe", "dev", "va")
    return ns.path


def test_default_routes_move_and_clear(lab: Lab) -> None:
    path = _pod_with_two_links(lab)
    assert sorted(r.gateway for r in netlink.default_routes(path)) == ["10.9.9.254", "fd00::fe"]

    netlink.apply_default_routes(
        path, take=[netlink.DefaultRoute("vb", "10.8.8.254")], clear=[("va", 6)]
    )

    assert netlink.default_routes(path) == [netlink.DefaultRoute("vb", "10.8.8.254")]
    links = netlink.read_links(path)
    assert links["va"].addresses == ["10.9.9.1/24", "fd00::1/64"]


def test_the_calling_thread_stays_home_and_nothing_forks(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _pod_with_two_links(lab)
    home = os.readlink("/proc/thread-self/ns/net")

    def no_fork() -> int:
        raise AssertionError("netlink must not fork: a child inherits the daemon's signal fd")

    monkeypatch.setattr(os, "fork", no_fork)
    assert "va" in netlink.read_links(path)
    assert os.readlink("/proc/thread-self/ns/net") == home
    with pytest.raises(OSError):
        netlink.read_links("/nonexistent/netns")
    assert os.readlink("/proc/thread-self/ns/net") == home
