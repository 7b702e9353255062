"""After ADD, a MAC or IP request is looked for in the pod unless the result states it in full.

The reference chain (macvlan + static IPAM + tuning) reports the interface
in the sandbox with its MAC and each address tied to it: the engine takes
that result at its word and runs no ``nsenter``.  A result that names the
address but ties it to no interface (the ``untie`` plugin below) is checked
in the namespace: passed when the address is really there, the ADD failed
and rolled back when it is not (the plugin removed it).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator

import pytest

from multihome.cni.errors import CNIError, Code
from multihome.engine import podnet
from multihome.testing.lab import Lab
from multihome.testing.world import World

pytestmark = pytest.mark.netns

# Prints the previous result with the requested addresses in place of its
# own, tied to no interface: a plugin that says less than the reference ones.
# With "flush", it first removes them from the interface: it says what it undid.
UNTIE = """\
import json, os, subprocess, sys
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
elif os.environ["CNI_COMMAND"] == "ADD":
    if conf.get("flush"):
        netns, ifname = os.environ["CNI_NETNS"], os.environ["CNI_IFNAME"]
        flush = ["ip", "addr", "flush", "dev", ifname, "scope", "global"]
        subprocess.run(["nsenter", f"--net={netns}", *flush], check=True)
    prev = conf["prevResult"]
    prev["ips"] = [{"address": a} for a in conf.get("runtimeConfig", {}).get("ips", [])]
    print(json.dumps(prev))
"""


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The namespaces the engine read (`podnet.read_links`), in this process."""
    seen: list[str] = []
    read = podnet.read_links

    async def counting(netns: str) -> dict[str, podnet.LinkState]:
        seen.append(netns)
        return await read(netns)

    monkeypatch.setattr(podnet, "read_links", counting)
    yield seen


def untie_world(lab: Lab) -> World:
    world = World(lab, mode="engine")
    bin_dir = lab.tmpdir()
    script = bin_dir / "untie"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(UNTIE))
    script.chmod(0o755)
    world.config["binDir"] = str(bin_dir)  # untie there, the reference plugins via CNI_PATH
    return world


def test_a_result_that_states_it_is_not_looked_for(lab: Lab, looks: list[str]) -> None:
    world = World(lab, mode="engine")
    world.macvlan_nad("iot", master=lab.macvlan_parent("lan"), static=True, tuning=True)
    address = world.host(world.lan_subnet(5), 8) + "/24"
    pod = world.pod("sensor", [{"name": "iot", "ips": [address], "mac": "02:00:00:00:50:08"}])

    world.add(pod)

    assert looks == []
    net1 = lab.links(pod.netns)["net1"]
    assert (net1.mac, net1.addresses) == ("02:00:00:00:50:08", [address])
    world.delete(pod)
    assert set(lab.links(pod.netns)) == {"lo"}


def static_untie_nad(world: World, *, flush: bool) -> None:
    macvlan = {"type": "macvlan", "master": world.lab.macvlan_parent("lan"), "mode": "bridge"}
    macvlan["ipam"] = {"type": "static"}
    macvlan["capabilities"] = {"ips": True}
    untie = {"type": "untie", "capabilities": {"ips": True}, "flush": flush}
    world.nad("iot", {"cniVersion": "1.0.0", "name": "iot", "plugins": [macvlan, untie]})


def test_an_address_tied_to_no_interface_is_looked_for(lab: Lab, looks: list[str]) -> None:
    world = untie_world(lab)
    static_untie_nad(world, flush=False)
    address = world.host(world.lan_subnet(5), 8) + "/24"
    pod = world.pod("sensor", [{"name": "iot", "ips": [address]}])

    world.add(pod)

    assert looks == [pod.netns.path]
    assert lab.links(pod.netns)["net1"].addresses == [address]
    world.delete(pod)
    assert set(lab.links(pod.netns)) == {"lo"}


def test_an_address_the_pod_does_not_have_fails_the_add(lab: Lab, looks: list[str]) -> None:
    world = untie_world(lab)
    static_untie_nad(world, flush=True)
    address = world.host(world.lan_subnet(5), 8) + "/24"
    pod = world.pod("sensor", [{"name": "iot", "ips": [address]}])

    with pytest.raises(CNIError) as caught:
        world.add(pod)

    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert f"net1 of default/iot did not get {address} (it got no address)" in caught.value.msg
    assert looks == [pod.netns.path]
    assert set(lab.links(pod.netns)) == {"lo"}  # rolled back, eth0 too
    assert world.allocations() == {}
    assert world.cached_containers() == []
