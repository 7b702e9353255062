"""The attach engine against real namespaces and Debian's reference plugins.

Each scenario plays the container runtime through a `World` and asserts on
the pod's namespace, the host-local store and the attachment cache.  Every
scenario runs three ways: through the engine in-process, through the thin
plugin binary, and through the static shim and the daemon.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator

import pytest

from multihome.cni.errors import CNIError
from multihome.testing.daemon import DaemonProcess, shim_binary
from multihome.testing.lab import Lab
from multihome.testing.world import Mode, World

pytestmark = pytest.mark.netns


@pytest.fixture(scope="session")
def shim_daemon() -> Iterator[DaemonProcess]:
    """One daemon for the shim runs of every scenario (each world has its own dirs)."""
    if not shim_binary().exists():
        pytest.skip("the shim is not built: make -C shim")
    with DaemonProcess() as daemon:
        yield daemon


@pytest.fixture(params=["engine", "thin", "shim"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Mode:
    if request.param == "shim":
        daemon = request.getfixturevalue("shim_daemon")
        monkeypatch.setenv("MULTIHOME_SOCKET_DIR", daemon.socket_dir)
    return request.param  # type: ignore[no-any-return]


def _two_macvlans(world: World) -> str:
    lan = world.lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    world.macvlan_nad("nad-b", master=lan, subnet=world.lan_subnet(2))
    return lan


def test_cluster_network_and_two_macvlans(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    _two_macvlans(world)
    pod = world.pod("web", "nad-a,nad-b")

    result = world.add(pod)

    links = lab.links(pod.netns)
    assert {"eth0", "net1", "net2"} <= set(links)
    assert links["net1"].kind == links["net2"].kind == "macvlan"
    assert links["eth0"].addresses[0] == world.host(world.cluster_subnet, 2) + "/24"
    assert links["net1"].addresses == [world.host(world.lan_subnet(1), 2) + "/24"]
    assert links["net2"].addresses == [world.host(world.lan_subnet(2), 2) + "/24"]
    # The runtime gets the cluster network's result, in the version it asked for.
    assert [i.name for i in result.interfaces if i.sandbox] == ["eth0"]
    status = world.network_status(pod)
    assert status is not None
    assert [(s["name"], s["interface"], s.get("default", False)) for s in status] == [
        ("cluster", "eth0", True),
        ("default/nad-a", "net1", False),
        ("default/nad-b", "net2", False),
    ]
    assert status[1]["mac"] == links["net1"].mac
    assert set(world.allocations()) == {"cluster", "nad-a", "nad-b"}
    [event] = world.events()
    assert event["reason"] == "AddedInterface"
    assert (
        f"Add net1 [{world.host(world.lan_subnet(1), 2)}/24] from default/nad-a" in event["message"]
    )

    world.delete(pod)

    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
    assert world.cached_containers() == []
    assert world.network_status(pod) is None


def test_static_ip_and_mac_through_the_annotation(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("iot-vlan", master=lan, static=True, tuning=True)
    subnet = world.lan_subnet(5)
    pod = world.pod(
        "sensor",
        [{"name": "iot-vlan", "ips": [world.host(subnet, 8) + "/24"], "mac": "02:00:00:00:50:08"}],
    )

    world.add(pod)

    net1 = lab.links(pod.netns)["net1"]
    assert net1.mac == "02:00:00:00:50:08"
    assert net1.addresses == [world.host(subnet, 8) + "/24"]
    world.delete(pod)
    assert set(lab.links(pod.netns)) == {"lo"}


def test_multicast_mac_is_refused_before_any_plugin_runs(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("iot-vlan", master=lan, static=True, tuning=True)
    pod = world.pod(
        "sensor", [{"name": "iot-vlan", "ips": ["192.168.50.8/24"], "mac": "f1:fd:59:0b:bd:2b"}]
    )

    with pytest.raises(CNIError) as err:
        world.add(pod)

    assert err.value.code == 7
    assert "f1:fd:59:0b:bd:2b" in err.value.msg
    assert "multicast" in str(err.value)
    assert set(lab.links(pod.netns)) == {"lo"}  # not even the cluster network ran
    assert world.allocations() == {}
    assert world.cached_containers() == []
    assert [e["type"] for e in world.events()] == ["Warning"]


def test_a_failing_network_rolls_everything_back(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode, parallel=False)
    lan = _two_macvlans(world)
    world.macvlan_nad("broken", master=lab.name("nolink"), subnet=world.lan_subnet(3))
    pod = world.pod("web", "nad-a,broken,nad-b")
    before = world.allocations()
    assert lan

    with pytest.raises(CNIError) as err:
        world.add(pod)

    assert "default/broken" in err.value.msg
    assert "net2" in err.value.msg
    assert "macvlan" in str(err.value)  # the plugin's own message is kept
    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == before
    assert world.cached_containers() == []


def test_default_route_moves_to_net1(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    lan = lab.macvlan_parent("lan")
    subnet = world.lan_subnet(1)
    world.macvlan_nad("nad-a", master=lan, subnet=subnet)
    gateway = world.host(subnet, 1)
    pod = world.pod("web", [{"name": "nad-a", "default-route": [gateway]}])

    world.add(pod)

    defaults = lab.default_routes(pod.netns, 4)
    assert [(r["gateway"], r["dev"]) for r in defaults] == [(gateway, "net1")]
    # IPv6 was not asked for: eth0 keeps its IPv6 default, if the plugin gave one.
    world.delete(pod)


def test_empty_default_route_leaves_eth0_alone(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("nad-a", master=lan, subnet=world.lan_subnet(1))
    pod = world.pod("web", [{"name": "nad-a", "default-route": []}])

    world.add(pod)

    defaults = lab.default_routes(pod.netns, 4)
    assert [r["dev"] for r in defaults] == ["eth0"]
    world.delete(pod)


@pytest.mark.parametrize("gone", ["nad", "pod", "netns", "nothing"])
def test_del_works_whatever_is_gone_and_twice(lab: Lab, gone: str, mode: Mode) -> None:
    world = World(lab, mode=mode)
    _two_macvlans(world)
    pod = world.pod("web", "nad-a,nad-b")
    world.add(pod)
    if gone == "nad":
        world.delete_nad("nad-a")
        world.delete_nad("nad-b")
    elif gone == "pod":
        world.delete_pod(pod)
    elif gone == "netns":
        subprocess.run(["ip", "netns", "del", pod.netns.name], check=True)

    world.delete(pod)
    world.delete(pod)

    if gone != "netns":
        assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
    assert world.cached_containers() == []


def test_check_names_the_broken_attachment(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    _two_macvlans(world)
    pod = world.pod("web", "nad-a,nad-b")
    world.add(pod)
    world.check(pod)

    lab.run(pod.netns, "ip", "link", "del", "net2")

    with pytest.raises(CNIError) as err:
        world.check(pod)
    assert "net2" in err.value.msg
    assert "default/nad-b" in err.value.msg
    world.delete(pod)
    assert world.allocations() == {}


def test_gc_deletes_attachments_the_runtime_no_longer_has(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    _two_macvlans(world)
    keep = world.pod("keep", "nad-a")
    stale = world.pod("stale", "nad-b")
    world.add(keep)
    world.add(stale)

    world.gc(valid=[keep])

    assert world.cached_containers() == [keep.container_id]
    assert set(lab.links(stale.netns)) == {"lo"}
    assert {"eth0", "net1"} <= set(lab.links(keep.netns))
    assert set(world.allocations()) == {"cluster", "nad-a"}
    world.delete(keep)


def test_parallel_and_sequential_give_the_same_pod(lab: Lab, mode: Mode) -> None:
    states = []
    results = []
    for parallel in (True, False):
        world = World(lab, mode=mode, parallel=parallel)
        lan = lab.macvlan_parent(f"l{int(parallel)}")
        for index in range(1, 5):
            world.macvlan_nad(f"nad-{index}", master=lan, subnet=world.lan_subnet(index))
        pod = world.pod("web", "nad-1,nad-2,nad-3,nad-4")
        results.append(json.loads(world.call("ADD", pod)))
        status = world.network_status(pod)
        assert status is not None
        states.append(([(s["name"], s["interface"], s["ips"]) for s in status], world.state(pod)))
        world.delete(pod)
    # Both worlds share the lab's prefix, hence the same subnets and addresses.
    assert states[0] == states[1]
    assert results[0]["ips"] == results[1]["ips"]


def test_default_route_moves_to_net1_for_ipv4_and_ipv6(lab: Lab, mode: Mode) -> None:
    world = World(lab, mode=mode)
    lan = lab.macvlan_parent("lan")
    subnet = world.lan_subnet(1)
    subnet6 = f"fd{world.octets[1]:02x}:{world.octets[2]:02x}::/64"
    world.nad(
        "dual",
        {
            "cniVersion": "1.0.0",
            "name": "dual",
            "type": "macvlan",
            "master": lan,
            "ipam": {
                "type": "host-local",
                "dataDir": str(world.ipam_dir),
                "ranges": [[{"subnet": subnet}], [{"subnet": subnet6}]],
            },
        },
    )
    gateways = [world.host(subnet, 1), str(ipaddress.ip_network(subnet6)[1])]
    pod = world.pod("web", [{"name": "dual", "default-route": gateways}])

    world.add(pod)

    assert [(r["gateway"], r["dev"]) for r in lab.default_routes(pod.netns, 4)] == [
        (gateways[0], "net1")
    ]
    assert [(r["gateway"], r["dev"]) for r in lab.default_routes(pod.netns, 6)] == [
        (gateways[1], "net1")
    ]
    world.delete(pod)
    assert world.allocations() == {}


def test_a_nad_without_cni_version_runs_as_libcni_runs_it(lab: Lab) -> None:
    # Real clusters have such NADs: libcni and Multus load them and the plugins
    # get "cniVersion": "", which they read as 0.1.0.
    world = World(lab, mode="engine")
    lan = lab.macvlan_parent("lan")
    world.macvlan_nad("old", master=lan, subnet=world.lan_subnet(7))
    conf = json.loads(
        json.loads((world.manifests / "nad-default-old.json").read_text())["spec"]["config"]
    )
    del conf["cniVersion"]
    world.nad("old", conf)
    pod = world.pod("legacy", "old")

    world.add(pod)

    assert lab.links(pod.netns)["net1"].addresses == [world.host(world.lan_subnet(7), 2) + "/24"]
    status = world.network_status(pod)
    assert status is not None and status[1]["name"] == "default/old"
    assert status[1]["ips"] == [world.host(world.lan_subnet(7), 2)]
    world.delete(pod)
    assert set(lab.links(pod.netns)) == {"lo"}
    assert world.allocations() == {}
