"""Requests checked against networks and against each other; results against requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multihome.cni.config import NetConfList, parse_network
from multihome.cni.result import Result
from multihome.networks.selection import NetworkSelection, parse_selection
from multihome.networks.validation import (
    check_against_network,
    check_pod_requests,
    compare_requested,
    ipam_subnets,
    result_states_applied,
)

from .helpers import by_code, codes


def conf(value: dict[str, Any]) -> NetConfList:
    return parse_network(json.dumps({"cniVersion": "1.0.0", "name": "net", **value}))


def select(element: dict[str, Any], index: int = 0) -> NetworkSelection:
    selections, _ = parse_selection(json.dumps([{"name": "net", **element}]), namespace="ns")
    selection = selections[0]
    if index:
        from dataclasses import replace

        selection = replace(selection, path=f"networks[{index}]")
    return selection


BARE = conf({"type": "macvlan"})


@pytest.mark.parametrize(
    ("element", "path", "capability"),
    [
        ({"mac": "02:00:00:00:00:01"}, "networks[0].mac", "mac"),
        ({"ips": ["10.1.1.5/24"]}, "networks[0].ips", "ips"),
        (
            {"portMappings": [{"hostPort": 1, "containerPort": 1}]},
            "networks[0].portMappings",
            "portMappings",
        ),
        (
            {"bandwidth": {"ingressRate": 1, "ingressBurst": 1}},
            "networks[0].bandwidth",
            "bandwidth",
        ),
        (
            {"infiniband-guid": "00:00:00:00:00:00:00:01"},
            "networks[0].infiniband-guid",
            "infinibandGUID",
        ),
    ],
)
def test_capability_missing(element: dict[str, Any], path: str, capability: str) -> None:
    findings = check_against_network(select(element), BARE, network="ns/net")
    finding = by_code(findings, "capability-missing")
    assert finding.severity == "warning"
    assert finding.path == path
    assert "ns/net" in finding.message and repr(capability) in finding.message
    declared = conf({"type": "macvlan", "capabilities": {capability: True}})
    assert check_against_network(select(element), declared, network="ns/net") == []


def test_capability_declared_by_any_plugin_of_the_chain_is_enough() -> None:
    chain = conf(
        {"plugins": [{"type": "macvlan"}, {"type": "tuning", "capabilities": {"mac": True}}]}
    )
    assert check_against_network(select({"mac": "02:00:00:00:00:01"}), chain, network="n") == []


def test_static_ipam_needs_a_prefix_length() -> None:
    static = conf({"type": "macvlan", "ipam": {"type": "static"}, "capabilities": {"ips": True}})
    findings = check_against_network(
        select({"ips": ["10.1.1.5", "10.1.1.6/24"]}), static, network="n"
    )
    assert codes(findings) == ["ip-prefix-required"]
    assert findings[0].path == "networks[0].ips[0]"
    assert findings[0].severity == "error"
    host_local = conf(
        {"type": "macvlan", "ipam": {"type": "host-local"}, "capabilities": {"ips": True}}
    )
    assert check_against_network(select({"ips": ["10.1.1.5"]}), host_local, network="n") == []


def test_default_route_family_from_requested_ips() -> None:
    findings = check_against_network(
        select({"ips": ["10.1.1.5/24"], "default-route": ["fd00::1"]}),
        conf({"type": "macvlan", "capabilities": {"ips": True}}),
        network="ns/net",
    )
    finding = by_code(findings, "default-route-family")
    assert finding.path == "networks[0].default-route[0]"
    assert "IPv6" in finding.message


def test_default_route_family_from_ipam_subnets() -> None:
    host_local = conf(
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.10.0.0/16"}]]}}
    )
    findings = check_against_network(
        select({"default-route": ["fd00::1"]}), host_local, network="n"
    )
    assert codes(findings) == ["default-route-family"]
    assert (
        check_against_network(select({"default-route": ["10.10.0.1"]}), host_local, network="n")
        == []
    )


def test_unknown_ipam_skips_the_family_check() -> None:
    dhcp = conf({"type": "macvlan", "ipam": {"type": "dhcp"}})
    assert check_against_network(select({"default-route": ["fd00::1"]}), dhcp, network="n") == []


def test_default_route_off_subnet_is_a_warning() -> None:
    findings = check_against_network(
        select({"ips": ["10.1.1.5/24"], "default-route": ["10.9.9.1"]}),
        conf({"type": "macvlan", "capabilities": {"ips": True}}),
        network="n",
    )
    finding = by_code(findings, "default-route-off-subnet")
    assert finding.severity == "warning"
    assert "10.1.1.0/24" in finding.message


def test_ipam_subnets_reads_static_host_local_and_whereabouts() -> None:
    value = conf(
        {
            "plugins": [
                {
                    "type": "a",
                    "ipam": {"type": "static", "addresses": [{"address": "10.1.1.5/24"}]},
                },
                {
                    "type": "b",
                    "ipam": {
                        "type": "host-local",
                        "subnet": "10.2.0.0/16",
                        "ranges": [[{"subnet": "fd00::/64"}]],
                    },
                },
                {
                    "type": "c",
                    "ipam": {
                        "type": "whereabouts",
                        "range": "10.3.0.0/24",
                        "ipRanges": [{"range": "10.4.0.0/24"}],
                    },
                },
                {"type": "d", "ipam": {"type": "whereabouts", "range": "10.5.0.10-10.5.0.20/24"}},
            ]
        }
    )
    assert [str(n) for n in ipam_subnets(value)] == [
        "10.1.1.0/24",
        "10.2.0.0/16",
        "fd00::/64",
        "10.3.0.0/24",
        "10.4.0.0/24",
        "10.5.0.0/24",
    ]


# -- across the pod --------------------------------------------------------------------------


def test_duplicate_ips_across_attachments() -> None:
    findings = check_pod_requests(
        [select({"ips": ["10.1.1.5/24"]}), select({"ips": ["10.1.1.5/16"]}, index=1)]
    )
    finding = by_code(findings, "ip-duplicate")
    assert finding.path == "networks[1].ips[0]"
    assert "networks[0].ips[0]" in finding.message


def test_one_default_route_per_family() -> None:
    v4, v6, v4b = (
        select({"default-route": ["10.1.1.1"]}),
        select({"default-route": ["fd00::1"]}, index=1),
        select({"default-route": ["10.2.2.1"]}, index=2),
    )
    assert check_pod_requests([v4, v6]) == []
    findings = check_pod_requests([v4, v6, v4b])
    finding = by_code(findings, "default-route-multiple")
    assert finding.path == "networks[2].default-route[0]"
    assert "ECMP" in finding.message


# -- results -----------------------------------------------------------------------------------


def result(mac: str = "02:00:00:00:00:01", ips: tuple[str, ...] = ("10.1.1.5/24",)) -> Result:
    return Result.parse(
        {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "0a:00:00:00:00:01"},
                {"name": "net1", "mac": mac, "sandbox": "/var/run/netns/x"},
            ],
            "ips": [{"address": ip, "interface": 1} for ip in ips]
            + [{"address": "10.99.0.1/24", "interface": 0}],
        }
    )


def test_compare_requested_when_everything_applied() -> None:
    selection = select({"mac": "02:00:00:00:00:01", "ips": ["10.1.1.5/24"]})
    assert compare_requested(selection, result(), ifname="net1") == []
    # Different spelling, same MAC; address without prefix.
    selection = select({"mac": "02-00-00-00-00-01", "ips": ["10.1.1.5"]})
    assert compare_requested(selection, result(mac="02:00:00:00:00:01"), ifname="net1") == []


def test_a_result_that_states_the_request_in_full() -> None:
    selection = select({"mac": "02-00-00-00-00-01", "ips": ["10.1.1.5"]})
    states = result_states_applied(selection, result(), ifname="net1", netns="/var/run/netns/x")
    assert states


@pytest.mark.parametrize(
    ("change", "ifname", "netns"),
    [
        ({}, "net1", "/var/run/netns/other"),  # another sandbox
        ({}, "net2", "/var/run/netns/x"),  # another interface
        ({"mac": "02:00:00:00:00:09"}, "net1", "/var/run/netns/x"),
        ({"untie": True}, "net1", "/var/run/netns/x"),  # the address names no interface
        ({"tie": 0}, "net1", "/var/run/netns/x"),  # the address is the host side's
        ({"no_sandbox": True}, "net1", "/var/run/netns/x"),
    ],
)
def test_a_result_that_says_less_leaves_it_to_the_namespace(
    change: dict[str, Any], ifname: str, netns: str
) -> None:
    data = result(mac=change.get("mac", "02:00:00:00:00:01")).to_dict()
    if change.get("untie"):
        del data["ips"][0]["interface"]
    if "tie" in change:
        data["ips"][0]["interface"] = change["tie"]
    if change.get("no_sandbox"):
        del data["interfaces"][1]["sandbox"]
    selection = select({"mac": "02:00:00:00:00:01", "ips": ["10.1.1.5/24"]})
    assert not result_states_applied(selection, Result.parse(data), ifname=ifname, netns=netns)


def test_compare_requested_names_what_was_not_applied() -> None:
    selection = select({"mac": "02:00:00:00:00:09", "ips": ["10.1.1.6/24", "10.1.1.5/24"]})
    findings = compare_requested(selection, result(), ifname="net1")
    assert codes(findings) == ["mac-not-applied", "ip-not-applied"]
    assert findings[0].path == "networks[0].mac"
    assert "02:00:00:00:00:01" in findings[0].message
    assert findings[1].path == "networks[0].ips[0]"
    assert "10.1.1.5" in findings[1].message


def test_host_side_addresses_do_not_count() -> None:
    selection = select({"ips": ["10.99.0.1/24"]})
    assert codes(compare_requested(selection, result(), ifname="net1")) == ["ip-not-applied"]


def test_result_without_interfaces_cannot_confirm_a_mac() -> None:
    old = Result.parse({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.5/24"}})
    findings = compare_requested(
        select({"mac": "02:00:00:00:00:01", "ips": ["10.1.1.5/24"]}), old, ifname="net1"
    )
    assert codes(findings) == ["request-unverifiable"]
    assert findings[0].severity == "warning"


def test_without_ifname_the_first_sandbox_interface_is_compared() -> None:
    assert compare_requested(select({"mac": "02:00:00:00:00:01"}), result()) == []
