"""NADs and cluster-level references turned into delegate networks; confDir lookups."""

from __future__ import annotations

import json

import pytest

from multihome.networks.confdir import FileSnapshot, find_by_name
from multihome.networks.nad import (
    isolation_problem,
    network_for,
    network_from_nad,
    parse_config_text,
    resolve_network,
)

from .helpers import Nads, by_code, codes, nad

NO_FILES = FileSnapshot()


def load(obj: dict, files: FileSnapshot = NO_FILES, conf_dir: str = "/etc/cni/multus/net.d"):
    return network_from_nad(obj, files=files, conf_dir=conf_dir)


# -- spec.config ----------------------------------------------------------------------


def test_single_config_keeps_its_bytes() -> None:
    text = '{"cniVersion": "0.3.1", "name": "n", "type": "macvlan", "big": 12345678901234567890}'
    network, findings = load(nad("ns", "mynad", text))
    assert findings == []
    assert network is not None
    assert (network.name, network.is_list, network.source) == ("ns/mynad", False, "nad[ns/mynad]")
    assert network.conf.plugins[0].text == text
    assert network.conf.name == "n"


def test_missing_name_is_filled_in_without_touching_other_bytes() -> None:
    # NPWG spec 3.4.2.1 "Name" injection example, plus fields a re-marshal would alter.
    text = '{\n    "cniVersion": "0.3.0",\n    "type": "awesome-plugin",\n    "x": 1.0e2\n}'
    network, findings = load(nad("default", "a-bridge-network", text))
    assert findings == []
    assert network is not None
    plugin = network.conf.plugins[0].text
    assert plugin.startswith('{"cniVersion":"0.3.0","type":"awesome-plugin","x":1.0e2,')
    assert json.loads(plugin) == {
        "cniVersion": "0.3.0",
        "type": "awesome-plugin",
        "x": 100.0,
        "name": "a-bridge-network",
    }
    assert network.conf.name == "a-bridge-network"


def test_a_config_without_cni_version_is_loaded_with_a_warning() -> None:
    for text in ('{"type": "x"}', '{"name": "n", "plugins": [{"type": "x"}]}'):
        network, findings = load(nad("ns", "n", text))
        assert network is not None, text
        assert (network.conf.cni_version, network.conf.declared_version) == ("0.1.0", "")
        finding = by_code(findings, "cni-version-assumed")
        assert finding.path == "nad[ns/n].spec.config.cniVersion"
        assert finding.severity == "warning" and "0.1.0" in finding.message
    _, findings = load(nad("ns", "n", '{"cniVersion": "1.0.0", "type": "x"}'))
    assert findings == []


def test_empty_name_is_replaced_in_place() -> None:
    network, _ = load(nad("ns", "nad", '{"name": "", "cniVersion": "1.0.0", "type": "x"}'))
    assert network is not None
    assert network.conf.plugins[0].text == '{"name":"nad","cniVersion":"1.0.0","type":"x"}'


def test_conflist_name_is_filled_in_and_plugins_keep_their_bytes() -> None:
    # NPWG spec 3.2.2 example, without its name.
    text = """{
  "cniVersion": "0.3.0",
  "plugins": [
    {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local", "subnet": "192.168.5.0/24"}},
    {"type": "port-forwarding"},
    {"type": "tuning", "sysctl": {"net.ipv4.conf.all.log_martians": "1"}}
  ]
}"""
    network, findings = load(nad("ns", "another-bridge-network", text))
    assert findings == []
    assert network is not None
    assert network.is_list
    assert network.conf.name == "another-bridge-network"
    assert [p.type for p in network.conf.plugins] == ["bridge", "port-forwarding", "tuning"]
    assert (
        network.conf.plugins[2].text
        == '{"type": "tuning", "sysctl": {"net.ipv4.conf.all.log_martians": "1"}}'
    )


def test_resource_name_annotation() -> None:
    obj = nad(
        "ns",
        "sriov",
        {"cniVersion": "1.0.0", "type": "sriov"},
        **{"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov_net"},
    )
    network, _ = load(obj)
    assert network is not None
    assert network.resource_name == "intel.com/sriov_net"


def test_config_given_as_an_object_is_read_with_a_warning() -> None:
    obj = nad("ns", "n")
    obj["spec"] = {"config": {"cniVersion": "0.3.0", "type": "awesome-plugin"}}
    network, findings = load(obj)
    assert network is not None
    assert network.conf.name == "n"
    assert codes(findings) == ["nad-config-not-string"]


@pytest.mark.parametrize(
    ("config", "code", "path"),
    [
        ("{", "nad-config-invalid", "nad[ns/n].spec.config"),
        ("[1, 2]", "nad-config-invalid", "nad[ns/n].spec.config"),
        ('{"cniVersion": "1.0.0"}', "nad-config-invalid", "nad[ns/n].spec.config"),
        ('{"cniVersion": "1.0.0", "plugins": []}', "nad-config-invalid", "nad[ns/n].spec.config"),
        ('{"cniVersion": "1.0.0", "plugins": [{}]}', "nad-config-invalid", "nad[ns/n].spec.config"),
        ('{"cniVersion": "one", "type": "x"}', "nad-config-invalid", "nad[ns/n].spec.config"),
        (
            '{"cniVersion": "1.0.0", "type": "x", "args": 5}',
            "nad-config-invalid",
            "nad[ns/n].spec.config",
        ),
        (
            '{"cniVersion": "1.0.0", "type": "x", "name": 5}',
            "nad-config-invalid",
            "nad[ns/n].spec.config",
        ),
        ("[" * 100000, "nad-config-invalid", "nad[ns/n].spec.config"),
        (
            '{"cniVersion": "2.0.0", "type": "x"}',
            "cni-version-unsupported",
            "nad[ns/n].spec.config.cniVersion",
        ),
        (
            '{"cniVersion": "1.0.0", "type": "/bin/sh"}',
            "plugin-type-invalid",
            "nad[ns/n].spec.config.type",
        ),
        (
            '{"cniVersion": "1.0.0", "type": ".."}',
            "plugin-type-invalid",
            "nad[ns/n].spec.config.type",
        ),
        (
            '{"cniVersion": "1.0.0", "plugins": [{"type": "ok"}, {"type": "../../x"}]}',
            "plugin-type-invalid",
            "nad[ns/n].spec.config.plugins[1].type",
        ),
        (
            '{"cniVersion": "1.0.0", "type": "bridge", "ipam": {"type": "a/b"}}',
            "plugin-type-invalid",
            "nad[ns/n].spec.config.ipam.type",
        ),
        (
            '{"cniVersion": "1.0.0", "type": "bridge", "ipam": {"type": 5}}',
            "plugin-type-invalid",
            "nad[ns/n].spec.config.ipam.type",
        ),
    ],
)
def test_malformed_configs(config: str, code: str, path: str) -> None:
    _, findings = load(nad("ns", "n", config))
    finding = by_code(findings, code)
    assert finding.path == path
    assert finding.severity == "error"


def test_unsupported_version_maps_to_cni_code_1() -> None:
    from multihome.networks.findings import to_cni_error

    _, findings = load(nad("ns", "n", '{"cniVersion": "2.0.0", "type": "x"}'))
    error = to_cni_error(findings)
    assert error is not None
    assert error.code == 1


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": {}},
        {"metadata": {"name": ""}},
        {"metadata": {"name": "n"}, "spec": "x"},
        {"metadata": {"name": "n"}, "spec": {"config": 5}},
    ],
)
def test_malformed_nad_objects(obj: dict) -> None:
    network, findings = load(obj)
    assert network is None
    assert codes(findings) == ["nad-invalid"]


# -- empty spec.config: the file in confDir ---------------------------------------------

CONF_DIR = "/etc/cni/multus/net.d"


def files(**named: object) -> FileSnapshot:
    return FileSnapshot(
        {
            f"{CONF_DIR}/{name}": v if isinstance(v, str) else json.dumps(v)
            for name, v in named.items()
        }
    )


def test_empty_spec_finds_the_file_whose_name_matches() -> None:
    # Multus how-to-use.md, "NetworkAttachmentDefinition with CNI config file".
    snapshot = files(
        **{
            "macvlan2.conf": {"cniVersion": "0.3.0", "type": "macvlan", "name": "macvlan-conf-2"},
            "other.conf": {"cniVersion": "0.3.0", "type": "bridge", "name": "other"},
        }
    )
    network, findings = load(nad("default", "macvlan-conf-2"), snapshot)
    assert findings == []
    assert network is not None
    assert (network.name, network.is_list, network.source) == (
        "default/macvlan-conf-2",
        False,
        f"{CONF_DIR}/macvlan2.conf",
    )
    network, _ = load(nad("default", "macvlan-conf-2", ""), snapshot)
    assert network is not None


def test_lists_come_before_single_configs_as_the_spec_says() -> None:
    snapshot = files(
        **{
            "10-net.conf": {"cniVersion": "0.3.0", "type": "bridge", "name": "net"},
            "20-net.conflist": {
                "cniVersion": "0.3.0",
                "name": "net",
                "plugins": [{"type": "bridge"}],
            },
        }
    )
    network, _ = load(nad("ns", "net"), snapshot)
    assert network is not None
    assert network.is_list
    assert network.source.endswith("20-net.conflist")


def test_broken_files_are_skipped_with_a_warning() -> None:
    snapshot = files(
        **{
            "00-broken.conf": "{",
            "10-net.json": {"cniVersion": "0.3.0", "type": "x", "name": "net"},
        }
    )
    network, findings = load(nad("ns", "net"), snapshot)
    assert network is not None
    assert codes(findings) == ["conf-file-invalid"]
    assert findings[0].severity == "warning"
    assert "00-broken.conf" in findings[0].message


def test_no_matching_file_is_an_error() -> None:
    network, findings = load(
        nad("ns", "ghost"), files(**{"a.conf": {"cniVersion": "0.3.0", "type": "x", "name": "a"}})
    )
    assert network is None
    finding = by_code(findings, "nad-config-not-found")
    assert "ghost" in finding.message and CONF_DIR in finding.message


def test_files_with_other_extensions_are_not_candidates() -> None:
    snapshot = files(**{"net.txt": {"cniVersion": "0.3.0", "type": "x", "name": "net"}})
    found, _ = find_by_name(snapshot, CONF_DIR, name="net", path="p")
    assert found is None


def test_conflist_file_gets_the_plugins_of_its_subdirectory() -> None:
    snapshot = FileSnapshot(
        {
            f"{CONF_DIR}/net.conflist": json.dumps(
                {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}]}
            ),
            f"{CONF_DIR}/net/20-tuning.conf": '{"type": "tuning", "mtu": 9000}',
            f"{CONF_DIR}/net/10-portmap.conf": '{"type": "portmap"}',
            f"{CONF_DIR}/net/ignored.json": '{"type": "nope"}',
        }
    )
    network, _ = load(nad("ns", "net"), snapshot)
    assert network is not None
    assert [p.type for p in network.conf.plugins] == ["bridge", "portmap", "tuning"]
    assert network.conf.plugins[2].text == '{"type": "tuning", "mtu": 9000}'


def test_load_only_inlined_plugins_stops_subdirectory_loading() -> None:
    snapshot = FileSnapshot(
        {
            f"{CONF_DIR}/net.conflist": json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "net",
                    "loadOnlyInlinedPlugins": True,
                    "plugins": [{"type": "bridge"}],
                }
            ),
            f"{CONF_DIR}/net/10-portmap.conf": '{"type": "portmap"}',
        }
    )
    network, _ = load(nad("ns", "net"), snapshot)
    assert network is not None
    assert [p.type for p in network.conf.plugins] == ["bridge"]


# -- lookups and cluster-level references ------------------------------------------------


def test_network_for_unknown_nad_uses_multus_wording() -> None:
    network, findings = network_for(
        "ns", "ghost", nads=Nads(), files=NO_FILES, conf_dir=CONF_DIR, path="networks[0]"
    )
    assert network is None
    finding = by_code(findings, "nad-not-found")
    assert finding.path == "networks[0]"
    assert (
        finding.message == "cannot find a network-attachment-definition (ghost) in namespace (ns)"
    )


CLUSTER_CONF = {"cniVersion": "0.4.0", "name": "k8s-pod-network", "type": "calico"}


def resolve(value: str, nads: Nads | None = None, snapshot: FileSnapshot = NO_FILES):
    return resolve_network(
        value,
        namespace="kube-system",
        nads=nads or Nads(),
        files=snapshot,
        conf_dir=CONF_DIR,
        path="clusterNetwork",
    )


def test_cluster_network_by_nad_name_in_the_multus_namespace() -> None:
    nads = Nads(nad("kube-system", "calico", CLUSTER_CONF))
    network, findings = resolve("calico", nads)
    assert findings == []
    assert network is not None
    assert network.name == "kube-system/calico"
    assert nads.calls == [("kube-system", "calico")]


def test_cluster_network_by_cni_name_in_conf_dir() -> None:
    network, _ = resolve("k8s-pod-network", snapshot=files(**{"10-calico.conf": CLUSTER_CONF}))
    assert network is not None
    assert (network.name, network.source) == ("k8s-pod-network", f"{CONF_DIR}/10-calico.conf")


def test_cluster_network_as_namespace_slash_name() -> None:
    nads = Nads(nad("infra", "calico", CLUSTER_CONF))
    network, _ = resolve("infra/calico", nads)
    assert network is not None
    assert network.name == "infra/calico"


def test_cluster_network_as_file_and_directory_paths() -> None:
    snapshot = FileSnapshot(
        {
            "/etc/cni/net.d/10-calico.conflist": json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "k8s-pod-network",
                    "plugins": [
                        {"type": "calico"},
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            ),
            "/etc/cni/net.d/99-loopback.conf": json.dumps(
                {"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}
            ),
        }
    )
    network, _ = resolve("/etc/cni/net.d/10-calico.conflist", snapshot=snapshot)
    assert network is not None
    assert (network.name, network.is_list) == ("k8s-pod-network", True)
    network, _ = resolve("/etc/cni/net.d/99-loopback.conf", snapshot=snapshot)
    assert network is not None
    assert (network.name, network.is_list) == ("lo", False)
    network, _ = resolve("/etc/cni/net.d", snapshot=snapshot)
    assert network is not None
    assert network.source == "/etc/cni/net.d/10-calico.conflist"


@pytest.mark.parametrize("value", ["ghost", "infra/ghost", "/etc/cni/net.d/ghost.conf"])
def test_cluster_network_not_found(value: str) -> None:
    network, findings = resolve(value)
    assert network is None
    finding = by_code(findings, "network-not-found")
    assert finding.path == "clusterNetwork"
    assert value in finding.message


def test_broken_nad_is_reported_not_silently_replaced_by_a_file() -> None:
    nads = Nads(nad("kube-system", "k8s-pod-network", "{"))
    network, findings = resolve("k8s-pod-network", nads, files(**{"10-calico.conf": CLUSTER_CONF}))
    assert network is None
    assert codes(findings) == ["nad-config-invalid"]


def test_isolation() -> None:
    assert (
        isolation_problem(pod_namespace="a", target_namespace="a", global_namespaces=("default",))
        is None
    )
    assert (
        isolation_problem(
            pod_namespace="a", target_namespace="default", global_namespaces=("default",)
        )
        is None
    )
    problem = isolation_problem(
        pod_namespace="a", target_namespace="b", global_namespaces=("default",)
    )
    assert problem is not None and "'a'" in problem and "'b'" in problem


def test_parse_config_text_reports_is_list() -> None:
    conf, is_list, findings = parse_config_text(
        '{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "a"}]}',
        default_name="d",
        path="p",
    )
    assert conf is not None and is_list and findings == []


def test_a_conflist_in_a_conf_file_is_read_as_a_list() -> None:
    # compatibility.md: upstream reads clusterNetwork "x.conf" as a single config and fails.
    text = '{"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge"}]}'
    files = FileSnapshot({"/etc/cni/net.d/10-pods.conf": text})
    network, findings = resolve_network(
        "/etc/cni/net.d/10-pods.conf",
        namespace="kube-system",
        nads=Nads(),
        files=files,
        conf_dir="/etc/cni/multus/net.d",
        path="clusterNetwork",
    )
    assert findings == []
    assert network is not None and network.is_list and network.conf.name == "pods"
