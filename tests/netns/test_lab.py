"""The lab builds real topologies and leaves nothing behind, even after a failure."""

from __future__ import annotations

import subprocess

import pytest

from multihome.testing.lab import Lab, supports

pytestmark = pytest.mark.netns


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_hosts_on_a_bridge_reach_each_other(lab: Lab) -> None:
    lan = lab.bridge("lan")
    hosts = []
    for index in (1, 2):
        ns = lab.netns(f"h{index}")
        lab.veth(a=None, b=ns, b_name="eth0", bridge=lan)
        lab.address(ns, "eth0", f"192.168.77.{index}/24")
        lab.address(ns, "eth0", f"fd77::{index}/64")
        hosts.append(ns)
    links = lab.links(hosts[0])
    assert links["eth0"].addresses == ["192.168.77.1/24", "fd77::1/64"]
    assert links["eth0"].kind == "veth"
    assert lab.ping(hosts[0], "192.168.77.2")
    assert lab.ping(hosts[0], "fd77::2")
    assert not lab.ping(hosts[0], "192.168.77.3")


def test_names_are_unique_and_fit_ifnamsiz() -> None:
    first, second = Lab(), Lab()
    assert first.prefix != second.prefix
    name = first.name("averyverylongsuffix")
    assert len(name) <= 15
    assert name.startswith(first.prefix)


def test_cleanup_after_a_test_that_raises() -> None:
    the_lab = Lab()
    with pytest.raises(ZeroDivisionError), the_lab:
        ns = the_lab.netns("x")
        the_lab.bridge("lan")
        the_lab.veth(a=None, b=ns, b_name="eth0")
        tmp = the_lab.tmpdir()
        # A link a plugin would make in the root namespace with a lab name:
        subprocess.run(["ip", "link", "add", the_lab.name("plug"), "type", "bridge"], check=True)
        assert ns.name in _netns_names()
        assert len(the_lab.root_links()) == 3
        1 / 0  # noqa: B018
    assert ns.name not in _netns_names()
    assert the_lab.root_links() == []
    assert not tmp.exists()


def test_kernel_link_kinds_are_probed() -> None:
    assert supports("bridge")
    assert supports("macvlan")
    assert supports("veth")
    # vlan and ipvlan are missing on these machines; the probe must say so, not crash.
    assert isinstance(supports("vlan"), bool)
    assert not supports("no-such-kind")
