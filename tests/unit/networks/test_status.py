"""network-status entries from results, serialised as Multus writes them."""

from __future__ import annotations

import json

from multihome.cni.result import Result
from multihome.networks.status import (
    NetworkStatus,
    network_statuses,
    parse_statuses,
    serialise,
)

MACVLAN = Result.parse(
    {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 1500, "sandbox": "/run/netns/p"}
        ],
        "ips": [{"address": "10.1.1.5/24", "gateway": "10.1.1.1", "interface": 0}],
        "routes": [{"dst": "10.20.0.0/16", "gw": "10.1.1.1"}],
        "dns": {"nameservers": ["10.1.1.53"], "search": ["lab"]},
    }
)

BRIDGE = Result.parse(
    {
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cni0", "mac": "0a:00:00:00:00:01"},
            {"name": "veth1234", "mac": "0a:00:00:00:00:02"},
            {"name": "eth0", "mac": "0a:58:0a:f4:02:06", "sandbox": "/run/netns/p"},
        ],
        "ips": [
            {"version": "4", "address": "10.244.2.6/24", "gateway": "10.244.2.1", "interface": 2},
            {"version": "6", "address": "fd00::6/64", "interface": 2},
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.2.1"}, {"dst": "::/0", "gw": "fd00::1"}],
    }
)


def test_single_sandbox_interface() -> None:
    (entry,) = network_statuses(MACVLAN, name="default/net-a", ifname="net1")
    assert entry == NetworkStatus(
        name="default/net-a",
        interface="net1",
        ips=("10.1.1.5",),
        mac="02:00:00:00:00:01",
        mtu=1500,
        default=False,
        dns={"nameservers": ["10.1.1.53"], "search": ["lab"]},
    )


def test_host_side_interfaces_are_left_out_and_default_routes_give_gateways() -> None:
    (entry,) = network_statuses(BRIDGE, name="k8s-pod-network", default=True, ifname="eth0")
    assert (entry.interface, entry.ips, entry.mac, entry.default) == (
        "eth0",
        ("10.244.2.6", "fd00::6"),
        "0a:58:0a:f4:02:06",
        True,
    )
    assert entry.gateway == ("10.244.2.1", "fd00::1")
    assert entry.dns == {}


def test_several_sandbox_interfaces_get_one_entry_each() -> None:
    result = Result.parse(
        {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/p"},
                {"name": "net1-vf", "mac": "02:00:00:00:00:02", "sandbox": "/p"},
            ],
            "ips": [
                {"address": "10.1.1.5/24", "interface": 0},
                {"address": "10.2.2.5/24", "gateway": "10.2.2.1", "interface": 1},
                {"address": "10.3.3.5/24"},
            ],
        }
    )
    first, second = network_statuses(result, name="n", default=True, ifname="net1")
    assert (first.interface, first.ips, first.default) == ("net1", ("10.1.1.5", "10.3.3.5"), False)
    # The default entry is the one whose address has a gateway.
    assert (second.interface, second.ips, second.default) == ("net1-vf", ("10.2.2.5",), True)


def test_result_without_interfaces_still_gets_an_entry() -> None:
    old = Result.parse({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.5/24"}})
    (entry,) = network_statuses(old, name="k8s-pod-network", default=True, ifname="eth0")
    assert (entry.interface, entry.ips, entry.default) == ("eth0", ("10.1.1.5",), True)


def test_device_info_is_passed_through() -> None:
    info = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}}
    (entry,) = network_statuses(MACVLAN, name="n", device_info=info)
    assert entry.to_dict()["device-info"] == info


def test_serialisation_matches_multus_layout() -> None:
    entries = network_statuses(BRIDGE, name="k8s-pod-network", default=True, ifname="eth0")
    entries += network_statuses(MACVLAN, name="default/net-a", ifname="net1")
    text = serialise(entries)
    assert text == (
        "[{\n"
        '    "name": "k8s-pod-network",\n'
        '    "interface": "eth0",\n'
        '    "ips": [\n'
        '        "10.244.2.6",\n'
        '        "fd00::6"\n'
        "    ],\n"
        '    "mac": "0a:58:0a:f4:02:06",\n'
        '    "default": true,\n'
        '    "dns": {},\n'
        '    "gateway": [\n'
        '        "10.244.2.1",\n'
        '        "fd00::1"\n'
        "    ],\n"
        '    "default-route": [\n'
        '        "10.244.2.1",\n'
        '        "fd00::1"\n'
        "    ]\n"
        "},{\n"
        '    "name": "default/net-a",\n'
        '    "interface": "net1",\n'
        '    "ips": [\n'
        '        "10.1.1.5"\n'
        "    ],\n"
        '    "mac": "02:00:00:00:00:01",\n'
        '    "mtu": 1500,\n'
        '    "default": false,\n'
        '    "dns": {\n'
        '        "nameservers": [\n'
        '            "10.1.1.53"\n'
        "        ],\n"
        '        "search": [\n'
        '            "lab"\n'
        "        ]\n"
        "    }\n"
        "}]"
    )
    # What a reader of Multus' output (the NAD client's NetworkStatus) looks at:
    decoded = json.loads(text)
    assert [e["name"] for e in decoded] == ["k8s-pod-network", "default/net-a"]
    assert decoded[0]["gateway"] == ["10.244.2.1", "fd00::1"]


def test_go_escapes_html_characters() -> None:
    text = serialise([NetworkStatus(name="a<b>&c")])
    assert '"a\\u003cb\\u003e\\u0026c"' in text
    assert json.loads(text)[0]["name"] == "a<b>&c"


def test_round_trip_and_reading_multus_output() -> None:
    entries = network_statuses(BRIDGE, name="k8s-pod-network", default=True, ifname="eth0")
    assert parse_statuses(serialise(entries)) == entries
    multus = (
        '[{"name": "kindnet", "interface": "eth0", "ips": ["10.244.1.4"],'
        ' "mac": "aa:bb:cc:dd:ee:ff", "default": true, "dns": {}, "gateway": ["10.244.1.1"]}]'
    )
    (entry,) = parse_statuses(multus)
    assert (entry.name, entry.default, entry.gateway) == ("kindnet", True, ("10.244.1.1",))
