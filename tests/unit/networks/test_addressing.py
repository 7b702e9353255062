"""Ahead-of-time address checks: what is harmless stays quiet."""

from __future__ import annotations

import ipaddress
import json

from multihome.networks.addressing import check_network, check_requests
from multihome.networks.confdir import NO_FILES
from multihome.networks.nad import network_from_nad
from multihome.networks.selection import parse_selection


def network(config: dict):
    nad = {
        "metadata": {"name": "n", "namespace": "default"},
        "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": "n", **config})},
    }
    found, problems = network_from_nad(nad, files=NO_FILES, conf_dir="")
    assert found is not None and problems == []
    return found


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_a_wider_route_and_a_default_route_do_not_shadow_the_connected_subnet() -> None:
    net = network(
        {
            "type": "macvlan",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.1.1.0/24", "gateway": "10.1.1.1"}]],
                "routes": [{"dst": "10.0.0.0/8", "gw": "10.1.1.1"}, {"dst": "0.0.0.0/0"}],
            },
        }
    )
    assert check_network(net) == []
    # ... but 10.0.0.0/8 does cover the service network.
    cidrs = [ipaddress.ip_network("10.96.0.0/12")]
    assert codes(check_network(net, cluster_cidrs=cidrs)) == ["route-shadows-cluster"]


def test_ipv6_routes_are_checked_against_ipv6_subnets_only() -> None:
    net = network(
        {
            "type": "bridge",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.1.1.0/24"}], [{"subnet": "fd00:1::/64"}]],
                "routes": [
                    {"dst": "fd00:2::/64", "gw": "fd00:1::1"},
                    {"dst": "::/0", "gw": "fe80::1"},
                ],
            },
        }
    )
    found = check_network(net)
    assert [(f.code, f.path.rsplit(".", 2)[-2:]) for f in found] == [
        ("gateway-outside-subnet", ["routes[1]", "gw"])
    ]


def test_static_ipam_without_addresses_is_checked_against_the_requested_address() -> None:
    net = network(
        {
            "type": "macvlan",
            "capabilities": {"ips": True},
            "ipam": {"type": "static", "routes": [{"dst": "10.5.0.0/16", "gw": "10.4.0.1"}]},
        }
    )
    [selection], _ = parse_selection('[{"name": "n", "ips": ["10.4.0.7/24"]}]', namespace="default")
    assert check_requests(selection, net, default_route_elsewhere=False) == []
    [selection], _ = parse_selection('[{"name": "n", "ips": ["10.9.0.7/24"]}]', namespace="default")
    [found] = check_requests(selection, net, default_route_elsewhere=False)
    assert found.code == "gateway-outside-subnet"
    assert "requested at networks[0].ips" in found.message
