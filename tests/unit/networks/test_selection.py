"""The selection annotation, both forms: every field, the spec's and Multus' examples, findings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multihome.networks.selection import (
    MAX_NETWORKS_PER_POD,
    Bandwidth,
    NetworkSelection,
    PortMapping,
    parse_selection,
)

from .helpers import by_code, codes


def parse(value: Any, namespace: str = "pod-ns") -> tuple[list[NetworkSelection], list[str]]:
    text = value if isinstance(value, str) else json.dumps(value)
    selections, findings = parse_selection(text, namespace=namespace)
    return selections, codes(findings)


def triples(selections: list[NetworkSelection]) -> list[tuple[str, str, str]]:
    return [(s.namespace, s.name, s.interface) for s in selections]


# -- text form -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("net-a", [("pod-ns", "net-a", "")]),
        # NPWG spec 4.1.1
        (
            "net-a,net-b,other-ns/net-c",
            [("pod-ns", "net-a", ""), ("pod-ns", "net-b", ""), ("other-ns", "net-c", "")],
        ),
        # Multus how-to-use.md, pod-case-01 .. 03
        (
            "macvlan-conf-1, macvlan-conf-2",
            [("pod-ns", "macvlan-conf-1", ""), ("pod-ns", "macvlan-conf-2", "")],
        ),
        ("testns1/macvlan-conf-3", [("testns1", "macvlan-conf-3", "")]),
        ("macvlan-conf-1@macvlan1", [("pod-ns", "macvlan-conf-1", "macvlan1")]),
        # whitespace around every part is ignored
        ("  ns-1 / net-a @ eth5 ,net-b ", [("ns-1", "net-a", "eth5"), ("pod-ns", "net-b", "")]),
        # spec 4.2.2: the same network twice is two attachments
        ("net-a,net-a", [("pod-ns", "net-a", ""), ("pod-ns", "net-a", "")]),
        # interface names Multus v4.0.2 refused (not DNS-1123) but the kernel accepts
        ("net-a@net_1", [("pod-ns", "net-a", "net_1")]),
        ("net-a@Eth.5", [("pod-ns", "net-a", "Eth.5")]),
        # NAD names are DNS-1123 subdomains
        ("my.net", [("pod-ns", "my.net", "")]),
        # an empty namespace part means the pod's namespace
        ("/net-a", [("pod-ns", "net-a", "")]),
        ("", []),
        ("   ", []),
    ],
)
def test_text_form(value: str, expected: list[tuple[str, str, str]]) -> None:
    selections, found = parse(value)
    assert triples(selections) == expected
    assert found == []


def test_text_form_paths_count_items() -> None:
    selections, _ = parse_selection("a, b", namespace="ns")
    assert [s.path for s in selections] == ["networks[0]", "networks[1]"]
    assert selections[1].ref == "ns/b"


@pytest.mark.parametrize(
    ("value", "code", "path"),
    [
        ("a/b/c", "selection-text-invalid", "networks[0]"),
        ("ok,a@b@c", "selection-text-invalid", "networks[1]"),
        ("Net-A", "selection-name-invalid", "networks[0].name"),
        ("-net", "selection-name-invalid", "networks[0].name"),
        ("NS/net", "selection-namespace-invalid", "networks[0].namespace"),
        ("a.b/net", "selection-namespace-invalid", "networks[0].namespace"),
        ("net@waytoolonginterfacename", "interface-invalid", "networks[0].interface"),
        ("net@a:b", "interface-invalid", "networks[0].interface"),
        ("net@..", "interface-invalid", "networks[0].interface"),
    ],
)
def test_text_form_errors(value: str, code: str, path: str) -> None:
    _, findings = parse_selection(value, namespace="ns")
    finding = by_code(findings, code)
    assert finding.path == path
    assert finding.severity == "error"


def test_text_form_empty_item_is_a_warning_and_ignored() -> None:
    selections, findings = parse_selection("net-a,,net-b,", namespace="ns")
    assert [s.name for s in selections] == ["net-a", "net-b"]
    assert codes(findings) == ["selection-empty-item", "selection-empty-item"]
    assert {f.severity for f in findings} == {"warning"}
    assert [f.path for f in findings] == ["networks[1]", "networks[3]"]


def test_label_length_limit() -> None:
    _, found = parse("a" * 64 + "/net")
    assert found == ["selection-namespace-invalid"]
    _, found = parse("a" * 63 + "/net")
    assert found == []


# -- JSON form: examples -----------------------------------------------------------


def test_spec_v1_json_example() -> None:
    selections, findings = parse_selection(
        """[
        {"name":"net-a"},
        {
          "name":"net-b",
          "ips": ["1.2.3.4"],
          "mac": "aa:bb:cc:dd:ee:ff"
        },
        {
          "name":"net-c",
          "namespace":"other-ns"
        }
      ]""",
        namespace="my-namespace",
    )
    assert triples(selections) == [
        ("my-namespace", "net-a", ""),
        ("my-namespace", "net-b", ""),
        ("other-ns", "net-c", ""),
    ]
    assert selections[1].ips == ("1.2.3.4",)
    assert selections[1].mac == "aa:bb:cc:dd:ee:ff"
    # The spec's example address has no prefix length: accepted, with a warning.
    assert codes(findings) == ["ip-no-prefix"]
    assert findings[0].path == "networks[1].ips[0]"


def test_spec_ips_and_mac_examples() -> None:
    selections, found = parse([{"name": "net-b", "ips": ["10.2.2.42", "2001:db8::5"]}])
    assert selections[0].ips == ("10.2.2.42", "2001:db8::5")
    assert found == ["ip-no-prefix", "ip-no-prefix"]
    selections, found = parse([{"name": "net-b", "mac": "02:23:45:67:89:01"}])
    assert selections[0].mac == "02:23:45:67:89:01"
    assert found == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Multus how-to-use.md pod-case-04 .. 06
        (
            '[ { "name" : "macvlan-conf-1" }, { "name" : "macvlan-conf-2" } ]',
            [("pod-ns", "macvlan-conf-1", ""), ("pod-ns", "macvlan-conf-2", "")],
        ),
        (
            '[ { "name" : "macvlan-conf-1", "namespace": "testns1" } ]',
            [("testns1", "macvlan-conf-1", "")],
        ),
        (
            '[ { "name" : "macvlan-conf-1", "interface": "macvlan1" },'
            ' { "name" : "macvlan-conf-2" } ]',
            [("pod-ns", "macvlan-conf-1", "macvlan1"), ("pod-ns", "macvlan-conf-2", "")],
        ),
        ("[]", []),
    ],
)
def test_multus_docs_json_examples(value: str, expected: list[tuple[str, str, str]]) -> None:
    selections, found = parse(value)
    assert triples(selections) == expected
    assert found == []


def test_multus_docs_default_route_example() -> None:
    selections, found = parse('[{"name": "macvlan-conf", "default-route": ["192.168.2.1"]}]')
    assert selections[0].default_route == ("192.168.2.1",)
    assert found == []


# -- JSON form: every field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "attribute", "value"),
    [
        ({"namespace": "other"}, "namespace", "other"),
        ({"interface": "eth9"}, "interface", "eth9"),
        ({"interfaceRequest": "eth8"}, "interface", "eth8"),
        ({"interface": "eth9", "interfaceRequest": "eth8"}, "interface", "eth9"),
        ({"ips": ["10.1.1.5/24", "fd00::5/64"]}, "ips", ("10.1.1.5/24", "fd00::5/64")),
        ({"mac": "02:00:00:00:00:01"}, "mac", "02:00:00:00:00:01"),
        ({"mac": "02-00-00-00-00-01"}, "mac", "02-00-00-00-00-01"),
        ({"mac": "0200.0000.0001"}, "mac", "0200.0000.0001"),
        (
            {"mac": "80:00:02:08:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"},
            "mac",
            "80:00:02:08:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
        ),
        ({"default-route": ["10.1.1.1", "fd00::1"]}, "default_route", ("10.1.1.1", "fd00::1")),
        (
            {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
            "port_mappings",
            (PortMapping(8080, 80, "tcp"),),
        ),
        (
            {"portMappings": [{"hostPort": 53, "containerPort": 53, "hostIP": "10.0.0.1"}]},
            "port_mappings",
            (PortMapping(53, 53, "", "10.0.0.1"),),
        ),
        (
            {"bandwidth": {"ingressRate": 1000, "ingressBurst": 100}},
            "bandwidth",
            Bandwidth(1000, 100, 0, 0),
        ),
        ({"cni-args": {"foo": "bar", "n": 1}}, "cni_args", {"foo": "bar", "n": 1}),
        ({"cni-args": {}}, "cni_args", {}),
        (
            {"infiniband-guid": "c2:11:22:33:44:55:66:77"},
            "infiniband_guid",
            "c2:11:22:33:44:55:66:77",
        ),
        ({"ipam-claim-reference": "claim-1"}, "ipam_claim_reference", "claim-1"),
        ({"deviceID": "0000:03:00.1"}, "device_id", "0000:03:00.1"),
        # Go ignores null for plain fields
        ({"mac": None, "ips": None}, "mac", ""),
        ({}, "default_route", None),
    ],
)
def test_json_fields(element: dict[str, Any], attribute: str, value: Any) -> None:
    selections, found = parse([{"name": "net", **element}])
    assert getattr(selections[0], attribute) == value
    assert found == []


def test_capability_values_are_written_as_multus_writes_them() -> None:
    assert PortMapping(8080, 80, "tcp", "10.0.0.1").to_dict() == {
        "hostPort": 8080,
        "containerPort": 80,
        "protocol": "tcp",
        "hostIP": "10.0.0.1",
    }
    assert PortMapping(1, 2).to_dict() == {"hostPort": 1, "containerPort": 2}
    # Multus always sends all four bandwidth keys.
    assert Bandwidth(1, 2).to_dict() == {
        "ingressRate": 1,
        "ingressBurst": 2,
        "egressRate": 0,
        "egressBurst": 0,
    }


def test_keys_match_with_any_letter_case_as_in_go() -> None:
    selections, findings = parse_selection(
        '[{"Name": "net", "IPS": ["10.1.1.5/24"], "Interface": "eth3"}]', namespace="ns"
    )
    assert (selections[0].name, selections[0].ips, selections[0].interface) == (
        "net",
        ("10.1.1.5/24",),
        "eth3",
    )
    assert codes(findings) == ["selection-key-case"] * 3
    assert findings[0].severity == "warning"


def test_later_duplicate_key_wins_as_in_go() -> None:
    selections, _ = parse_selection('[{"name": "a", "name": "b"}]', namespace="ns")
    assert selections[0].name == "b"


def test_unknown_keys_warn_unless_they_are_extensions() -> None:
    selections, findings = parse_selection(
        '[{"name": "net", "macc": "x", "org.example.key": 1}]', namespace="ns"
    )
    assert selections[0].name == "net"
    assert codes(findings) == ["selection-key-unknown"]
    assert findings[0].path == "networks[0].macc"


# -- JSON form: errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code", "path"),
    [
        ("[", "selection-json-invalid", "networks"),
        ('[{"name": NaN}]', "selection-json-invalid", "networks"),
        ('{"name": "net-a"}', "selection-not-list", "networks"),
        ('"net-a"', "selection-not-list", "networks"),
        ('["net-a"]', "selection-element-invalid", "networks[0]"),
        ("[{}]", "selection-name-missing", "networks[0].name"),
        ('[{"name": ""}]', "selection-name-missing", "networks[0].name"),
        ('[{"name": "Net_A"}]', "selection-name-invalid", "networks[0].name"),
        (
            '[{"name": "a", "namespace": "Bad"}]',
            "selection-namespace-invalid",
            "networks[0].namespace",
        ),
        ('[{"name": 5}]', "selection-field-invalid", "networks[0].name"),
        ('[{"name": "a", "ips": "10.1.1.1/24"}]', "selection-field-invalid", "networks[0].ips"),
        ('[{"name": "a", "ips": [5]}]', "selection-field-invalid", "networks[0].ips"),
        ('[{"name": "a", "mac": 5}]', "selection-field-invalid", "networks[0].mac"),
        ('[{"name": "a", "interface": "eth 0"}]', "interface-invalid", "networks[0].interface"),
        (
            '[{"name": "a", "interfaceRequest": "a/b"}]',
            "interface-invalid",
            "networks[0].interfaceRequest",
        ),
        (
            '[{"name": "a", "interface": "sixteen-bytes-xx"}]',
            "interface-invalid",
            "networks[0].interface",
        ),
        ('[{"name": "a", "interface": "\\u00e0bc"}]', "interface-invalid", "networks[0].interface"),
        ('[{"name": "a", "mac": "zz:zz"}]', "mac-invalid", "networks[0].mac"),
        ('[{"name": "a", "mac": "02:00:00:00:00"}]', "mac-invalid", "networks[0].mac"),
        ('[{"name": "a", "mac": "02:00-00:00:00:01"}]', "mac-invalid", "networks[0].mac"),
        (
            '[{"name": "a", "infiniband-guid": "nope"}]',
            "infiniband-guid-invalid",
            "networks[0].infiniband-guid",
        ),
        ('[{"name": "a", "ips": ["300.1.1.1/24"]}]', "ip-invalid", "networks[0].ips[0]"),
        ('[{"name": "a", "ips": ["10.1.1.1/33"]}]', "ip-invalid", "networks[0].ips[0]"),
        ('[{"name": "a", "ips": ["fe80::1%eth0"]}]', "ip-invalid", "networks[0].ips[0]"),
        ('[{"name": "a", "ips": ["ok", "10.1.1.1/24"]}]', "ip-invalid", "networks[0].ips[0]"),
        (
            '[{"name": "a", "default-route": ["gw"]}]',
            "default-route-invalid",
            "networks[0].default-route[0]",
        ),
        (
            '[{"name": "a", "default-route": [""]}]',
            "default-route-invalid",
            "networks[0].default-route[0]",
        ),
        (
            '[{"name": "a", "default-route": "10.0.0.1"}]',
            "selection-field-invalid",
            "networks[0].default-route",
        ),
        (
            '[{"name": "a", "portMappings": {}}]',
            "selection-field-invalid",
            "networks[0].portMappings",
        ),
        (
            '[{"name": "a", "portMappings": [5]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        (
            '[{"name": "a", "portMappings": [{"hostPort": 0, "containerPort": 80}]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        (
            '[{"name": "a", "portMappings": [{"hostPort": 80, "containerPort": 70000}]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        (
            '[{"name": "a", "portMappings": [{"hostPort": "80", "containerPort": 80}]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        (
            '[{"name": "a", "portMappings": [{"hostPort": 80, "containerPort": 80, '
            '"protocol": "icmp"}]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        (
            '[{"name": "a", "portMappings": [{"hostPort": 80, "containerPort": 80, '
            '"hostIP": "x"}]}]',
            "port-mapping-invalid",
            "networks[0].portMappings[0]",
        ),
        ('[{"name": "a", "bandwidth": 5}]', "bandwidth-invalid", "networks[0].bandwidth"),
        (
            '[{"name": "a", "bandwidth": {"egressRate": -1, "egressBurst": 1}}]',
            "bandwidth-invalid",
            "networks[0].bandwidth",
        ),
        (
            '[{"name": "a", "bandwidth": {"ingressRate": 1000}}]',
            "bandwidth-invalid",
            "networks[0].bandwidth",
        ),
        (
            '[{"name": "a", "bandwidth": {"ingressRate": 1.5, "ingressBurst": 1}}]',
            "bandwidth-invalid",
            "networks[0].bandwidth",
        ),
        ('[{"name": "a", "cni-args": ["x"]}]', "cni-args-invalid", "networks[0].cni-args"),
        ('[{"name": "a", "deviceID": 5}]', "selection-field-invalid", "networks[0].deviceID"),
        (
            '[{"name": "a", "ips": ["10.1.1.1/24"], "ipam-claim-reference": "c"}]',
            "ipam-claim-with-ips",
            "networks[0]",
        ),
    ],
)
def test_json_errors(value: str, code: str, path: str) -> None:
    _, findings = parse_selection(value, namespace="ns")
    finding = by_code(findings, code)
    assert finding.path == path
    assert finding.severity == "error"
    assert finding.hint


def test_all_errors_are_reported_not_just_the_first() -> None:
    _, findings = parse_selection(
        '[{"name": "a", "mac": "ff:ff:ff:ff:ff:ff", "ips": ["x"]}, {"name": "B"}]',
        namespace="ns",
    )
    assert codes(findings) == ["mac-broadcast", "ip-invalid", "selection-name-invalid"]


def test_a_bad_field_drops_only_that_field() -> None:
    selections, _ = parse_selection(
        '[{"name": "a", "mac": "01:00:5e:00:00:01", "ips": ["10.1.1.1/24"]}]', namespace="ns"
    )
    assert selections[0].mac == ""
    assert selections[0].ips == ("10.1.1.1/24",)


# -- MAC findings ------------------------------------------------------------------------


def test_multicast_mac_is_an_error_naming_it_and_suggesting_a_fix() -> None:
    _, findings = parse_selection('[{"name": "a", "mac": "f1:fd:59:0b:bd:2b"}]', namespace="ns")
    finding = by_code(findings, "mac-multicast")
    assert finding.severity == "error"
    assert finding.path == "networks[0].mac"
    assert "f1:fd:59:0b:bd:2b" in finding.message
    assert "multicast" in finding.message
    assert "02:fd:59:0b:bd:2b" in finding.hint
    assert "locally administered unicast" in finding.hint


@pytest.mark.parametrize(
    ("mac", "code", "severity"),
    [
        ("ff:ff:ff:ff:ff:ff", "mac-broadcast", "error"),
        ("00:00:00:00:00:00", "mac-zero", "error"),
        ("01:00:5e:00:00:fb", "mac-multicast", "error"),
        ("33:33:00:00:00:01", "mac-multicast", "error"),
        ("00:1b:21:3c:4d:5e", "mac-universal", "info"),
        ("02:00:5e:10:00:00:00:01", "mac-length", "warning"),
    ],
)
def test_mac_findings(mac: str, code: str, severity: str) -> None:
    _, findings = parse_selection(json.dumps([{"name": "a", "mac": mac}]), namespace="ns")
    assert codes(findings) == [code]
    assert findings[0].severity == severity
    assert mac in findings[0].message


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01", "0A:58:0A:F4:02:06", "aa:bb:cc:dd:ee:ff"])
def test_locally_administered_unicast_macs_are_fine(mac: str) -> None:
    _, found = parse([{"name": "a", "mac": mac}])
    assert found == []


def test_default_route_empty_list_is_info_and_kept_distinct_from_absent() -> None:
    selections, findings = parse_selection('[{"name": "a", "default-route": []}]', namespace="n")
    assert selections[0].default_route == ()
    assert codes(findings) == ["default-route-empty"]
    assert findings[0].severity == "info"


def test_ip_without_prefix_hint_shows_the_address_with_one() -> None:
    _, findings = parse_selection('[{"name": "a", "ips": ["fd00::5"]}]', namespace="n")
    assert findings[0].hint.endswith("fd00::5/64")


def test_non_string_value_is_a_pod_finding() -> None:
    selections, findings = parse_selection(5, namespace="n")  # type: ignore[arg-type]
    assert selections == []
    assert codes(findings) == ["pod-invalid"]


def test_root_names_the_annotation_in_paths() -> None:
    _, findings = parse_selection("Bad", namespace="n", root="default-network")
    assert findings[0].path == "default-network[0].name"


@pytest.mark.parametrize("form", ["text", "json"])
def test_more_networks_than_a_pod_may_have_is_one_error(form: str) -> None:
    names = [f"net-{i}" for i in range(MAX_NETWORKS_PER_POD + 1)]
    value = ",".join(names) if form == "text" else json.dumps([{"name": n} for n in names])

    selections, findings = parse_selection(value, namespace="default")

    assert len(selections) == MAX_NETWORKS_PER_POD + 1
    [finding] = findings
    assert (finding.code, finding.severity, finding.path) == (
        "selection-too-many",
        "error",
        "networks",
    )
    assert f"{MAX_NETWORKS_PER_POD + 1} networks" in finding.message
    _, at_most = parse_selection(",".join(names[:-1]), namespace="default")
    assert at_most == []
