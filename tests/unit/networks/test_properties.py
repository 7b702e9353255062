"""Property tests: whatever users write, the model answers with a plan or findings.

The only exception the network model may raise is `CNIError`; for
annotations and NADs it raises none at all.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from multihome.cni.errors import CNIError
from multihome.networks import addresses, names
from multihome.networks.attachment import plan_pod
from multihome.networks.confdir import FileSnapshot
from multihome.networks.config import MultusConfig
from multihome.networks.nad import network_from_nad
from multihome.networks.selection import parse_selection

from .helpers import CLUSTER, Nads, config, nad, pod, request

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

SELECTION_KEYS = [
    "name",
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "infiniband-guid",
    "portMappings",
    "bandwidth",
    "cni-args",
    "default-route",
    "deviceID",
    "ipam-claim-reference",
    "Name",
    "IPS",
]
plausible = st.sampled_from(
    [
        "net-a",
        "other/net-a",
        "10.1.1.5/24",
        "10.1.1.5",
        "fd00::1",
        "02:00:00:00:00:01",
        "f1:fd:59:0b:bd:2b",
        "eth0",
        "net1",
        "",
        "tuned",
    ]
)
field_values = json_values | plausible | st.lists(plausible, max_size=3)
elements = st.dictionaries(st.sampled_from(SELECTION_KEYS), field_values, max_size=6)

CONF_KEYS = [
    "cniVersion",
    "name",
    "type",
    "plugins",
    "ipam",
    "args",
    "capabilities",
    "cniVersions",
    "disableCheck",
    "dns",
    "runtimeConfig",
]
conf_values = (
    json_values
    | st.sampled_from(["1.0.0", "0.3.1", "9.9.9", "macvlan", "/bin/sh", "static"])
    | st.dictionaries(st.sampled_from(["type", "mac", "ips", "cni"]), json_values, max_size=3)
)
plugin = st.dictionaries(st.sampled_from(CONF_KEYS), conf_values, max_size=5)
configs = st.dictionaries(
    st.sampled_from(CONF_KEYS), conf_values | st.lists(plugin, max_size=3), max_size=6
)

TUNED = {
    "cniVersion": "1.0.0",
    "plugins": [
        {"type": "macvlan", "ipam": {"type": "static"}},
        {"type": "tuning", "capabilities": {"mac": True, "ips": True}},
    ],
}


def plan_with(annotation: str, *extra: dict[str, Any]) -> None:
    lookup = Nads(
        nad("kube-system", "cluster", CLUSTER),
        nad("default", "net-a", TUNED),
        nad("other", "net-a", TUNED),
        nad("default", "tuned", TUNED),
        *extra,
    )
    the_pod = pod(networks=annotation, default_network=None)
    plan, findings = plan_pod(config=config(), pod=the_pod, request=request(), nads=lookup)
    assert plan.cluster_network is not None
    for attachment in plan.attachments:
        attachment.runtime_configs()
        json.loads(attachment.conf.text)
    for finding in findings:
        assert finding.path or finding.code == "selection-json-invalid"
        assert finding.message


@given(st.text())
def test_any_text_as_annotation(value: str) -> None:
    parse_selection(value, namespace="ns")
    plan_with(value)


@given(json_values)
def test_any_json_as_annotation(value: Any) -> None:
    text = json.dumps(value)
    parse_selection(text, namespace="ns")
    plan_with(text)


@given(st.lists(elements, max_size=4))
def test_any_selection_elements(value: list[dict[str, Any]]) -> None:
    plan_with(json.dumps(value))


@given(json_values | configs)
def test_any_json_as_spec_config(value: Any) -> None:
    obj = nad("default", "net-b", json.dumps(value))
    network_from_nad(obj, files=FileSnapshot(), conf_dir="/etc/cni/multus/net.d")
    plan_with('[{"name": "net-b", "mac": "02:00:00:00:00:01", "cni-args": {"k": 1}}]', obj)


@given(st.text())
def test_any_text_as_spec_config(value: str) -> None:
    obj = nad("default", "net-b", value)
    network_from_nad(obj, files=FileSnapshot(), conf_dir="/etc/cni/multus/net.d")
    plan_with("net-b", obj)


@given(json_values)
def test_any_json_as_a_nad_object(value: Any) -> None:
    network_from_nad(
        value if isinstance(value, dict) else {"spec": value},
        files=FileSnapshot(),
        conf_dir="/x",
    )


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6), json_values)
def test_any_json_in_conf_dir(files: dict[str, Any], content: Any) -> None:
    snapshot = FileSnapshot(
        {
            f"/etc/cni/multus/net.d/{k.replace('/', '_')}.conf": json.dumps(v)
            for k, v in files.items()
        }
        | {"/etc/cni/multus/net.d/x.conflist": json.dumps(content)}
    )
    network_from_nad(nad("default", "x"), files=snapshot, conf_dir="/etc/cni/multus/net.d")


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "cniVersion",
                "name",
                "clusterNetwork",
                "delegates",
                "globalNamespaces",
                "logOptions",
                "defaultNetworks",
                "namespaceIsolation",
                "runtimeConfig",
            ]
        ),
        json_values | st.sampled_from(["1.0.0", "n", "calico"]),
        max_size=6,
    )
)
def test_multus_config_raises_only_cni_errors(value: dict[str, Any]) -> None:
    with contextlib.suppress(CNIError):
        MultusConfig.parse(json.dumps(value))


@given(st.text())
def test_address_and_name_parsers_never_raise(value: str) -> None:
    addresses.parse_mac(value)
    addresses.parse_requested_ip(value)
    addresses.parse_ip(value)
    names.label_problem(value)
    names.subdomain_problem(value)
    names.interface_problem(value)


@given(st.binary(min_size=6, max_size=6))
def test_suggested_mac_is_always_usable(data: bytes) -> None:
    suggestion = addresses.parse_mac(addresses.suggest_mac(data))
    assert suggestion is not None
    assert addresses.mac_problem(suggestion) is None
    assert addresses.is_locally_administered(suggestion)
