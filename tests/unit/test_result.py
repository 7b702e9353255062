"""CNI results: parsing, wire forms and conversion between every pair of versions.

The expected conversions come from a small oracle written against the wire
form (dicts), independent of the model code: it states what libcni's
converters (containernetworking/cni pkg/types/{020,040,100}) keep and drop.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.cni.errors import CNIError, Code
from multihome.cni.result import DNS, Interface, IPConfig, Result, Route

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
FORM = {
    "0.1.0": 0,
    "0.2.0": 0,
    "0.3.0": 1,
    "0.3.1": 1,
    "0.4.0": 1,
    "1.0.0": 2,
    "1.1.0": 2,
}
FULL_DNS = {
    "nameservers": ["10.1.0.53", "fd00::53"],
    "domain": "cluster.local",
    "search": ["svc.cluster.local", "cluster.local"],
    "options": ["ndots:5"],
}

# Samples in 1.1.0 wire form, the richest one.
SAMPLES: dict[str, dict[str, Any]] = {
    "single": {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}],
        "ips": [{"interface": 0, "address": "10.1.1.2/24", "gateway": "10.1.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}],
    },
    "several_interfaces": {
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "veth1234", "mac": "02:00:00:00:00:aa"},
            {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"},
            {"name": "net2", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/p"},
        ],
        "ips": [
            {"interface": 1, "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
            {"interface": 2, "address": "10.2.2.2/24", "gateway": "10.2.2.1"},
        ],
        "routes": [{"dst": "10.0.0.0/8", "gw": "10.1.1.1"}, {"dst": "192.168.0.0/16"}],
    },
    "dual_stack": {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}],
        "ips": [
            {"interface": 0, "address": "fd00::2/64", "gateway": "fd00::1"},
            {"interface": 0, "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
            {"interface": 0, "address": "10.1.2.2/24"},
            {"interface": 0, "address": "fd01::2/64"},
        ],
        "routes": [
            {"dst": "::/0", "gw": "fd00::1"},
            {"dst": "0.0.0.0/0", "gw": "10.1.1.1"},
            {"dst": "192.168.0.5/16"},
        ],
    },
    "routes_110": {
        "cniVersion": "1.1.0",
        "interfaces": [
            {
                "name": "net1",
                "mac": "02:00:00:00:00:01",
                "mtu": 9000,
                "sandbox": "/var/run/netns/p",
                "socketPath": "/run/vhost/net1.sock",
                "pciID": "0000:03:00.1",
            }
        ],
        "ips": [{"interface": 0, "address": "10.1.1.2/24"}],
        "routes": [
            {
                "dst": "10.9.0.0/16",
                "gw": "10.1.1.1",
                "mtu": 1400,
                "advmss": 1360,
                "priority": 100,
                "table": 0,
                "scope": 0,
            },
            {"dst": "fd09::/64", "gw": "fd00::1", "table": 100, "scope": 253},
        ],
        "dns": FULL_DNS,
    },
    "dns": {
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.1.1.2/24"}],
        "dns": FULL_DNS,
    },
    "no_interfaces": {
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.1.1.2/24", "gateway": "10.1.1.1"}, {"address": "fd00::2/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
    },
    "zero_ips": {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
    },
}


# -- the oracle: what libcni prints -------------------------------------------


def _is6(cidr: str) -> bool:
    return ":" in cidr


def _to_020(d: dict[str, Any], version: str) -> dict[str, Any]:
    """types040.convertTo02x on a 0.3.x-1.1.0 wire dict."""
    out: dict[str, Any] = {"cniVersion": version}
    for key, six in (("ip4", False), ("ip6", True)):
        ip = next((ip for ip in d.get("ips", []) if _is6(ip["address"]) == six), None)
        if ip is None:
            continue
        entry = {"ip": ip["address"]}
        if "gateway" in ip:
            entry["gateway"] = ip["gateway"]
        routes = [
            {k: v for k, v in r.items() if k in ("dst", "gw")}
            for r in d.get("routes", [])
            if _is6(r["dst"]) == six
        ]
        if routes:
            entry["routes"] = routes
        out[key] = entry
    out["dns"] = d.get("dns", {})
    return out


def _from_020(d: dict[str, Any], version: str) -> dict[str, Any]:
    """types040.convertFrom02x (then to 1.x), as a wire dict of ``version``."""
    ips, routes = [], []
    for key in ("ip4", "ip6"):
        if key in d:
            ip = {"address": d[key]["ip"]}
            if "gateway" in d[key]:
                ip["gateway"] = d[key]["gateway"]
            ips.append(ip)
            routes.extend(d[key].get("routes", []))
    out: dict[str, Any] = {"cniVersion": "1.1.0"}
    if ips:
        out["ips"] = ips
    if routes:
        out["routes"] = routes
    if d["dns"]:
        out["dns"] = d["dns"]
    return _in_form(out, version)


def _in_form(d: dict[str, Any], version: str, *, strip: bool = False) -> dict[str, Any]:
    """A 1.x wire dict written as ``version`` (0.3.0 and later), maybe via 0.3.x/0.4.0."""
    d = copy.deepcopy(d)
    d["cniVersion"] = version
    if strip or FORM[version] == 1:
        for intf in d.get("interfaces", []):
            for key in ("mtu", "socketPath", "pciID"):
                intf.pop(key, None)
    if FORM[version] == 1:
        if "ips" in d:
            d["ips"] = [{"version": "6" if _is6(ip["address"]) else "4", **ip} for ip in d["ips"]]
        d.setdefault("dns", {})
    return d


def expected(sample: dict[str, Any], through: str, target: str) -> dict[str, Any]:
    """What libcni prints for a 1.1.0 ``sample`` converted to ``through``, then to ``target``."""
    lowest = min(FORM[through], FORM[target])
    if lowest == 0:
        d020 = _to_020(sample, target)
        return d020 if FORM[target] == 0 else _from_020(d020, target)
    return _in_form(sample, target, strip=lowest == 1)


# -- conversion between every pair ----------------------------------------------


@pytest.mark.parametrize("sample_name", sorted(SAMPLES))
@pytest.mark.parametrize(("through", "target"), list(itertools.product(VERSIONS, VERSIONS)))
def test_convert_every_pair(sample_name: str, through: str, target: str) -> None:
    sample = SAMPLES[sample_name]
    source = Result.parse(sample)
    no_address = not sample.get("ips")
    if no_address and min(FORM[through], FORM[target]) == 0:
        # types040.convertTo02x: "cannot convert: no valid IP addresses".
        with pytest.raises(CNIError) as err:
            source.convert(through).convert(target)
        assert err.value.code == Code.INCOMPATIBLE_VERSION
        assert "without IP addresses" in err.value.msg
        return
    middle = source.convert(through)
    converted = middle.convert(target)
    want = expected(sample, through, target)
    assert converted.cni_version == target
    assert converted.to_dict() == want
    assert middle.to_dict(target) == want
    # The wire form of every version reads back as the same result.
    assert Result.parse(converted.to_json()) == converted


@pytest.mark.parametrize(
    ("sample_name", "version"),
    [
        (name, version)
        for name, version in itertools.product(sorted(SAMPLES), VERSIONS)
        # A result without addresses has no 0.1.0/0.2.0 form (covered above).
        if SAMPLES[name].get("ips") or FORM[version] > 0
    ],
)
def test_parse_of_each_wire_form_reads_back(sample_name: str, version: str) -> None:
    wire = expected(SAMPLES[sample_name], version, version)
    assert Result.parse(wire).to_dict() == wire
    assert Result.parse(json.dumps(wire).encode()).to_dict() == wire


# -- lossless round trips --------------------------------------------------------

V031 = {
    "cniVersion": "0.3.1",
    "interfaces": [
        {"name": "cni0", "mac": "02:00:00:00:00:aa"},
        {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"},
    ],
    "ips": [
        {"version": "4", "interface": 1, "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
        {"version": "4", "interface": 1, "address": "10.1.2.2/24"},
        {"version": "6", "interface": 1, "address": "fd00::2/64", "gateway": "fd00::1"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.1.0.53"]},
}
V020 = {
    "cniVersion": "0.2.0",
    "ip4": {"ip": "10.1.1.2/24", "gateway": "10.1.1.1", "routes": [{"dst": "0.0.0.0/0"}]},
    "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
    "dns": {},
}


@pytest.mark.parametrize(
    ("wire", "path"),
    [
        (V031, ("1.0.0", "0.3.1")),
        (V031, ("1.1.0", "0.4.0", "0.3.0", "0.3.1")),
        (SAMPLES["routes_110"], ("1.0.0", "1.1.0")),
        ({**SAMPLES["routes_110"], "cniVersion": "1.0.0"}, ("1.1.0", "1.0.0")),
        (V020, ("0.4.0", "0.2.0")),
        (V020, ("1.1.0", "0.1.0", "0.2.0")),
        ({**V020, "cniVersion": "0.1.0"}, ("0.2.0", "0.1.0")),
    ],
    ids=[
        "0.3.1-1.0.0",
        "0.3.1-1.1.0-0.4.0-0.3.0",
        "1.1.0-1.0.0",
        "1.0.0-1.1.0",
        "0.2.0-0.4.0",
        "0.2.0-1.1.0-0.1.0",
        "0.1.0-0.2.0",
    ],
)
def test_lossless_round_trips(wire: dict[str, Any], path: tuple[str, ...]) -> None:
    original = Result.parse(wire)
    result = original
    for version in path:
        result = result.convert(version)
    assert result == original
    assert result.to_dict() == wire


# -- lossy conversions drop exactly what the spec says ----------------------------


def test_to_020_keeps_first_address_of_each_family_and_their_routes_only() -> None:
    result = Result.parse(SAMPLES["dual_stack"])
    assert result.to_dict("0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {
            "ip": "10.1.1.2/24",
            "gateway": "10.1.1.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}, {"dst": "192.168.0.5/16"}],
        },
        "ip6": {
            "ip": "fd00::2/64",
            "gateway": "fd00::1",
            "routes": [{"dst": "::/0", "gw": "fd00::1"}],
        },
        "dns": {},
    }
    down = result.convert("0.2.0")
    assert [ip.address for ip in down.ips] == ["10.1.1.2/24", "fd00::2/64"]
    assert all(ip.interface is None for ip in down.ips)
    assert down.interfaces == ()


def test_to_020_drops_routes_of_a_family_without_address() -> None:
    result = Result.parse(
        {
            "cniVersion": "1.0.0",
            "ips": [{"address": "10.1.1.2/24"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
        }
    )
    assert result.convert("0.1.0").routes == (Route("0.0.0.0/0"),)
    assert "ip6" not in result.to_dict("0.1.0")


def test_to_020_drops_route_fields_other_than_dst_and_gw() -> None:
    result = Result.parse(SAMPLES["routes_110"])
    assert result.convert("0.2.0").routes == (Route("10.9.0.0/16", "10.1.1.1"),)


def test_route_fields_survive_0_4_0_as_libcni_types_route_carries_them() -> None:
    result = Result.parse(SAMPLES["routes_110"])
    assert result.convert("0.4.0").routes == result.routes
    assert result.to_dict("0.3.0")["routes"] == SAMPLES["routes_110"]["routes"]
    assert result.routes[0] == Route(
        "10.9.0.0/16", "10.1.1.1", mtu=1400, advmss=1360, priority=100, table=0, scope=0
    )


def test_interface_extras_lost_below_1_0_0() -> None:
    result = Result.parse(SAMPLES["routes_110"])
    down = result.convert("0.4.0")
    assert down.interfaces == (Interface("net1", "02:00:00:00:00:01", sandbox="/var/run/netns/p"),)
    assert down.convert("1.1.0").interfaces == down.interfaces
    assert result.convert("1.0.0").interfaces == result.interfaces


def test_version_key_only_in_0_3_and_0_4() -> None:
    result = Result.parse(SAMPLES["dual_stack"])
    for version in VERSIONS:
        wire = result.to_dict(version)
        has_version = any("version" in ip for ip in wire.get("ips", []))
        assert has_version == (FORM[version] == 1), version
    assert [ip["version"] for ip in result.to_dict("0.4.0")["ips"]] == ["6", "4", "4", "6"]


def test_dns_written_empty_before_1_0_0_and_omitted_from_1_0_0() -> None:
    result = Result.parse(SAMPLES["single"])
    assert result.to_dict("0.1.0")["dns"] == {}
    assert result.to_dict("0.4.0")["dns"] == {}
    assert "dns" not in result.to_dict("1.0.0")
    assert "dns" not in result.to_dict("1.1.0")
    assert Result.parse(SAMPLES["dns"]).to_dict("1.0.0")["dns"] == FULL_DNS


def test_0_2_0_results_up_convert_without_interfaces_or_indexes() -> None:
    result = Result.parse(V020).convert("1.0.0")
    assert result == Result(
        "1.0.0",
        ips=(IPConfig("10.1.1.2/24", "10.1.1.1"), IPConfig("fd00::2/64")),
        routes=(Route("0.0.0.0/0"), Route("::/0", "fd00::1")),
    )


def test_0_1_0_without_addresses_converts_within_its_form() -> None:
    result = Result.parse({"cniVersion": "0.1.0", "dns": {"domain": "x"}})
    assert result.to_dict("0.2.0") == {"cniVersion": "0.2.0", "dns": {"domain": "x"}}
    assert result.to_dict("0.4.0") == {"cniVersion": "0.4.0", "dns": {"domain": "x"}}


def test_a_result_built_in_an_old_version_writes_only_what_that_version_holds() -> None:
    built = Result(
        "0.4.0",
        interfaces=(Interface("eth0", mtu=9000, socket_path="/s", pci_id="0000:03:00.1"),),
        ips=(IPConfig("10.1.1.2/24", interface=0), IPConfig("10.1.2.2/24")),
    )
    assert built.to_dict()["interfaces"] == [{"name": "eth0"}]
    assert built.convert("1.0.0").interfaces == (Interface("eth0"),)
    old = replace(built, cni_version="0.2.0")
    assert old.to_dict() == {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.2/24"}, "dns": {}}
    assert old.convert("0.3.0") == Result("0.3.0", ips=(IPConfig("10.1.1.2/24"),))


def test_convert_to_same_version_is_identity_and_unknown_version_fails() -> None:
    result = Result.parse(SAMPLES["single"])
    assert result.convert("1.1.0") is result
    with pytest.raises(CNIError) as err:
        result.convert("0.5.0")
    assert err.value.code == Code.INCOMPATIBLE_VERSION
    assert "0.5.0" in err.value.msg


# -- golden wire forms -------------------------------------------------------------

RICH = Result(
    "1.1.0",
    interfaces=(
        Interface("br0", "02:00:00:00:00:aa"),
        Interface(
            "eth0", "02:00:00:00:00:01", mtu=1450, sandbox="/var/run/netns/p", pci_id="0000:03:00.1"
        ),
    ),
    ips=(
        IPConfig("10.1.1.2/24", "10.1.1.1", interface=1),
        IPConfig("fd00::2/64", interface=1),
        IPConfig("10.1.2.2/24", interface=1),
    ),
    routes=(
        Route("0.0.0.0/0", "10.1.1.1", priority=10),
        Route("fd09::/64", table=100),
    ),
    dns=DNS(nameservers=("10.1.0.53",), search=("cluster.local",)),
)
GOLDEN_020 = {
    "ip4": {
        "ip": "10.1.1.2/24",
        "gateway": "10.1.1.1",
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}],
    },
    "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "fd09::/64"}]},
    "dns": {"nameservers": ["10.1.0.53"], "search": ["cluster.local"]},
}
GOLDEN_040 = {
    "interfaces": [
        {"name": "br0", "mac": "02:00:00:00:00:aa"},
        {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"},
    ],
    "ips": [
        {"version": "4", "interface": 1, "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
        {"version": "6", "interface": 1, "address": "fd00::2/64"},
        {"version": "4", "interface": 1, "address": "10.1.2.2/24"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.1.1.1", "priority": 10},
        {"dst": "fd09::/64", "table": 100},
    ],
    "dns": {"nameservers": ["10.1.0.53"], "search": ["cluster.local"]},
}
GOLDEN_100 = {
    "interfaces": [
        {"name": "br0", "mac": "02:00:00:00:00:aa"},
        {
            "name": "eth0",
            "mac": "02:00:00:00:00:01",
            "mtu": 1450,
            "sandbox": "/var/run/netns/p",
            "pciID": "0000:03:00.1",
        },
    ],
    "ips": [
        {"interface": 1, "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
        {"interface": 1, "address": "fd00::2/64"},
        {"interface": 1, "address": "10.1.2.2/24"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.1.1.1", "priority": 10},
        {"dst": "fd09::/64", "table": 100},
    ],
    "dns": {"nameservers": ["10.1.0.53"], "search": ["cluster.local"]},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_wire_form(version: str) -> None:
    golden = (GOLDEN_020, GOLDEN_040, GOLDEN_100)[FORM[version]]
    want = {"cniVersion": version, **golden}
    assert RICH.to_dict(version) == want
    assert json.loads(RICH.to_json(version)) == want
    assert next(iter(RICH.to_dict(version))) == "cniVersion"


def test_output_of_a_real_plugin_reads_back_byte_for_value() -> None:
    # containernetworking-plugins 1.1.1 `static` IPAM, cniVersion 0.3.1.
    text = """{
    "cniVersion": "0.3.1",
    "ips": [
        {"version": "4", "address": "10.1.1.2/24", "gateway": "10.1.1.1"},
        {"version": "4", "address": "10.1.2.2/24"},
        {"version": "6", "address": "fd00::2/64", "gateway": "fd00::1"}
    ],
    "routes": [
        {"dst": "0.0.0.0/0"}, {"dst": "192.168.0.5/16", "gw": "10.1.1.254"}, {"dst": "::/0"}
    ],
    "dns": {}
}"""
    assert Result.parse(text).to_dict() == json.loads(text)


def test_missing_cni_version_is_0_1_0() -> None:
    result = Result.parse('{"ip4": {"ip": "10.1.1.2/24"}}')
    assert result == Result("0.1.0", ips=(IPConfig("10.1.1.2/24"),))
    assert Result.parse({"cniVersion": "", "ip4": {"ip": "10.1.1.2/24"}}) == result
    assert Result.parse({"cniVersion": None, "ip4": {"ip": "10.1.1.2/24"}}) == result


def test_parse_normalises_addresses_as_go_prints_them() -> None:
    result = Result.parse(
        {
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "FD00:0:0::0002/64", "gateway": "FD00::1"},
                {"address": "::ffff:10.1.1.2/120", "gateway": "::ffff:10.1.1.1"},
            ],
            "routes": [{"dst": "192.168.0.5/16", "gw": ""}],
        }
    )
    assert result.ips == (
        IPConfig("fd00::2/64", "fd00::1"),
        IPConfig("10.1.1.2/24", "10.1.1.1"),
    )
    assert result.ips[1].family == 4
    assert result.routes == (Route("192.168.0.5/16"),)


def test_parse_ignores_keys_the_version_does_not_have() -> None:
    result = Result.parse(
        {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mtu": "not read in 0.4.0", "pciID": 7}],
            "ips": [{"version": "4", "address": "10.1.1.2/24", "extra": [1]}],
            "ip4": {"ip": "not read in 0.4.0"},
            "plugin-specific": {"anything": True},
        }
    )
    assert result == Result(
        "0.4.0", interfaces=(Interface("eth0"),), ips=(IPConfig("10.1.1.2/24"),)
    )
    assert Result.parse({"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "version": 4}]})


def test_zero_valued_go_ints_are_absent() -> None:
    result = Result.parse(
        {
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "mtu": 0}],
            "routes": [{"dst": "0.0.0.0/0", "mtu": 0, "advmss": 0, "priority": 0, "table": 0}],
        }
    )
    assert result.interfaces == (Interface("eth0"),)
    assert result.routes == (Route("0.0.0.0/0", table=0),)
    assert result.to_dict()["routes"] == [{"dst": "0.0.0.0/0", "table": 0}]


def test_helpers_pick_sandbox_interfaces_and_their_addresses() -> None:
    result = Result.parse(SAMPLES["several_interfaces"])
    assert [i.name for i in result.sandbox_interfaces()] == ["net1", "net2"]
    assert result.ips_for(2) == (IPConfig("10.2.2.2/24", "10.2.2.1", interface=2),)
    assert result.ips_for(0) == ()


# -- parse errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        ("{not json", Code.DECODE_FAILURE, "failed to decode"),
        (b"\xff\xfe", Code.DECODE_FAILURE, "failed to decode"),
        ('{"cniVersion": "1.0.0", "ips": NaN}', Code.DECODE_FAILURE, "failed to decode"),
        ("[]", Code.DECODE_FAILURE, "the result is []"),
        ({"cniVersion": 1}, Code.DECODE_FAILURE, "cniVersion is 1"),
        ({"cniVersion": "0.5.0"}, Code.INCOMPATIBLE_VERSION, "'0.5.0'"),
        ({"cniVersion": "one"}, Code.INCOMPATIBLE_VERSION, "'one'"),
        (
            {"cniVersion": "1.0.0", "ips": {"address": "10.1.1.2/24"}},
            Code.DECODE_FAILURE,
            "ips is {",
        ),
        (
            {"cniVersion": "1.0.0", "ips": ["10.1.1.2/24"]},
            Code.DECODE_FAILURE,
            'ips[0] is "10.1.1.2/24"',
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2"}]},
            Code.DECODE_FAILURE,
            'ips[0].address is "10.1.1.2"',
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/33"}]},
            Code.DECODE_FAILURE,
            "ips[0].address",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/a"}]},
            Code.DECODE_FAILURE,
            "ips[0].address",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "fe80::1%eth0/64"}]},
            Code.DECODE_FAILURE,
            "ips[0].address",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": 5}]},
            Code.DECODE_FAILURE,
            "ips[0].address is 5",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "gateway": "gw"}]},
            Code.DECODE_FAILURE,
            'ips[0].gateway is "gw"',
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "interface": "0"}]},
            Code.DECODE_FAILURE,
            "ips[0].interface",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "interface": -1}]},
            Code.DECODE_FAILURE,
            "non-negative",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "interface": 1.5}]},
            Code.DECODE_FAILURE,
            "ips[0].interface is 1.5",
        ),
        (
            {"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2/24", "interface": True}]},
            Code.DECODE_FAILURE,
            "ips[0].interface is true",
        ),
        (
            {"cniVersion": "0.4.0", "ips": [{"address": "10.1.1.2/24", "version": 4}]},
            Code.DECODE_FAILURE,
            "ips[0].version is 4",
        ),
        (
            {"cniVersion": "1.0.0", "interfaces": "eth0"},
            Code.DECODE_FAILURE,
            'interfaces is "eth0"',
        ),
        (
            {"cniVersion": "1.0.0", "interfaces": [{"name": 0}]},
            Code.DECODE_FAILURE,
            "interfaces[0].name is 0",
        ),
        (
            {"cniVersion": "1.1.0", "interfaces": [{"name": "e", "mtu": "1500"}]},
            Code.DECODE_FAILURE,
            "interfaces[0].mtu",
        ),
        (
            {"cniVersion": "1.0.0", "routes": [{"dst": "default"}]},
            Code.DECODE_FAILURE,
            'routes[0].dst is "default"',
        ),
        (
            {"cniVersion": "1.0.0", "routes": [{"dst": "::/0", "table": 2**63}]},
            Code.DECODE_FAILURE,
            "routes[0].table",
        ),
        ({"cniVersion": "1.0.0", "dns": []}, Code.DECODE_FAILURE, "dns is []"),
        (
            {"cniVersion": "1.0.0", "dns": {"nameservers": "10.0.0.1"}},
            Code.DECODE_FAILURE,
            "dns.nameservers",
        ),
        (
            {"cniVersion": "1.0.0", "dns": {"search": [1]}},
            Code.DECODE_FAILURE,
            "dns.search[0] is 1",
        ),
        ({"cniVersion": "0.2.0", "ip4": "10.1.1.2/24"}, Code.DECODE_FAILURE, "ip4 is"),
        (
            {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.2/24", "routes": [{"dst": 1}]}},
            Code.DECODE_FAILURE,
            "ip4.routes[0].dst is 1",
        ),
    ],
)
def test_parse_errors(data: Any, code: Code, fragment: str) -> None:
    with pytest.raises(CNIError) as err:
        Result.parse(data)
    assert err.value.code == code
    assert fragment in str(err.value), str(err.value)


def test_parse_is_as_lenient_as_libcni() -> None:
    # libcni decodes these (zero values); multihome drops the entries that name no
    # address and keeps the rest of the result.
    result = Result.parse(
        {
            "cniVersion": "1.0.0",
            "interfaces": [None, {"mac": "02:00:00:00:00:01"}],
            "ips": [{"gateway": "10.1.1.1"}, None, {"address": "10.1.1.2/24", "interface": 1}],
            "routes": [{"gw": "10.1.1.1"}, None, {"dst": "0.0.0.0/0", "gw": "10.1.1.1"}],
        }
    )
    assert result.interfaces == (Interface(""), Interface("", mac="02:00:00:00:00:01"))
    assert result.ips == (IPConfig("10.1.1.2/24", interface=1),)
    assert result.routes == (Route("0.0.0.0/0", "10.1.1.1"),)
    assert '"<nil>"' not in result.to_json()
    old = Result.parse({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.1.2/24"}, "ip6": {"ip": None}})
    assert old.ips == (IPConfig("10.1.1.2/24"),)
    # Still strict where a value would configure something wrong.
    for bad in ({"dst": "default"}, {"dst": "10.0.0.0/8", "gw": "x"}, {"gw": 5}):
        with pytest.raises(CNIError):
            Result.parse({"cniVersion": "1.0.0", "routes": [bad]})


def test_parse_error_says_what_would_be_valid() -> None:
    with pytest.raises(CNIError) as err:
        Result.parse({"cniVersion": "1.0.0", "ips": [{"address": "10.1.1.2"}]})
    assert "10.1.1.2/24" in err.value.details


# -- any JSON object gives a Result or a CNIError -----------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_address = st.sampled_from(
    ["10.1.1.2/24", "fd00::2/64", "::ffff:1.2.3.4/120", "10.1.1.2", "x/1", "1.2.3.4/99", ""]
)
_ip = st.fixed_dictionaries(
    {},
    optional={
        "address": _address | _json,
        "gateway": st.sampled_from(["10.1.1.1", "fd00::1", "nope"]) | _json,
        "interface": st.integers(-2, 3) | _json,
        "version": st.sampled_from(["4", "6"]) | _json,
    },
)
_route = st.fixed_dictionaries(
    {},
    optional={
        "dst": _address | _json,
        "gw": st.sampled_from(["10.1.1.1", "::1"]) | _json,
        "mtu": st.integers() | _json,
        "table": st.integers() | _json,
    },
)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.sampled_from([*VERSIONS, "", "9.9.9"]) | _json,
        "interfaces": st.lists(
            st.fixed_dictionaries({}, optional={"name": st.text(max_size=4) | _json, "mtu": _json}),
            max_size=2,
        )
        | _json,
        "ips": st.lists(_ip, max_size=3) | _json,
        "routes": st.lists(_route, max_size=3) | _json,
        "ip4": st.fixed_dictionaries(
            {}, optional={"ip": _address | _json, "routes": st.lists(_route, max_size=2)}
        )
        | _json,
        "dns": st.fixed_dictionaries(
            {}, optional={"nameservers": st.lists(st.text(max_size=4)) | _json}
        )
        | _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=_shaped | st.dictionaries(st.text(max_size=10), _json, max_size=5))
def test_any_json_object_gives_a_result_or_a_cni_error(data: dict[str, Any]) -> None:
    try:
        result = Result.parse(json.dumps(data))
    except CNIError as err:
        assert err.code in (Code.DECODE_FAILURE, Code.INCOMPATIBLE_VERSION)
        return
    assert Result.parse(data) == result
    # Whatever parsed writes out in every version (or says why not) and reads back.
    for version in VERSIONS:
        try:
            wire = result.to_dict(version)
        except CNIError as err:
            assert err.code == Code.INCOMPATIBLE_VERSION
            continue
        assert Result.parse(wire).to_dict() == wire
