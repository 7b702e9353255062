"""The multus configuration: defaults, types, Go decoding rules, dead keys, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multihome.cni.errors import CNIError
from multihome.networks.config import LogOptions, MultusConfig

BASE = {"cniVersion": "0.3.1", "name": "multus-cni-network", "clusterNetwork": "calico"}


def parse(**keys: Any) -> MultusConfig:
    return MultusConfig.parse(json.dumps({**BASE, **keys}))


def test_defaults() -> None:
    config = parse()
    assert config.conf_dir == "/etc/cni/multus/net.d"
    assert config.cni_dir == "/var/lib/cni/multus"
    assert config.bin_dir == "/opt/cni/bin"
    assert config.multus_namespace == "kube-system"
    assert config.system_namespaces == ("kube-system",)
    assert config.global_namespaces == ("default",)
    assert config.namespace_isolation is False
    assert config.log_level == "panic"
    assert config.log_to_stderr is True
    assert config.default_networks == ()
    assert config.runtime_config == {}
    assert (
        config.parallel_delegates is True
    )  # on by default: secondary networks attach side by side
    assert config.max_parallel_delegates == 8  # bounded: one pod must not fork thousands
    assert config.notices == ()


def test_upstream_documentation_example() -> None:
    # docs/configuration.md in multus-cni, as research §1 quotes it.
    text = (
        '{"cniVersion":"0.3.1","name":"node-cni-network","type":"multus",'
        '"kubeconfig":"/etc/kubernetes/node-kubeconfig.yaml","confDir":"/etc/cni/multus/net.d",'
        '"cniDir":"/var/lib/cni/multus","binDir":"/opt/cni/bin","logFile":"/var/log/multus.log",'
        '"logLevel":"debug","capabilities":{"portMappings":true},'
        '"clusterNetwork":"/etc/cni/net.d/99-flannel.conf","defaultNetworks":["sidecarCRD"],'
        '"systemNamespaces":["kube-system","admin"],"multusNamespace":"kube-system"}'
    )
    config = MultusConfig.parse(text)
    assert config.name == "node-cni-network"
    assert config.type == "multus"
    assert config.kubeconfig == "/etc/kubernetes/node-kubeconfig.yaml"
    assert config.cluster_network == "/etc/cni/net.d/99-flannel.conf"
    assert config.default_networks == ("sidecarCRD",)
    assert config.system_namespaces == ("kube-system", "admin")
    assert config.capabilities == {"portMappings": True}
    assert config.log_file == "/var/log/multus.log"
    assert config.log_level == "debug"
    assert config.raw is not None and config.raw.text == text


def test_every_key() -> None:
    config = parse(
        type="multus-shim",
        namespaceIsolation=True,
        globalNamespaces="default, tenants ,shared",
        readinessindicatorfile="/run/flannel/subnet.env",
        retryDeleteOnError=True,
        auxiliaryCNIChainName="aux",
        logToStderr=False,
        logOptions={"maxAge": 5, "maxSize": 100, "maxBackups": 3, "compress": True},
        runtimeConfig={"portMappings": [{"hostPort": 80, "containerPort": 8080}]},
        prevResult={"cniVersion": "0.3.1"},
        manifestDir="/etc/multihome/manifests",
        parallelDelegates=True,
        maxParallelDelegates=4,
    )
    assert config.namespace_isolation is True
    assert config.global_namespaces == ("default", "tenants", "shared")
    assert config.readiness_indicator_file == "/run/flannel/subnet.env"
    assert config.retry_delete_on_error is True
    assert config.auxiliary_cni_chain_name == "aux"
    assert config.log_to_stderr is False
    assert config.log_options == LogOptions(5, 100, 3, True)
    assert config.runtime_config == {"portMappings": [{"hostPort": 80, "containerPort": 8080}]}
    assert config.manifest_dir == "/etc/multihome/manifests"
    assert (config.parallel_delegates, config.max_parallel_delegates) == (True, 4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ("default",)), ("a", ("a",)), (["a", "b"], ("a", "b")), (" a , ,b ", ("a", "b"))],
)
def test_global_namespaces(value: Any, expected: tuple[str, ...]) -> None:
    assert parse(globalNamespaces=value).global_namespaces == expected


def test_keys_match_with_any_letter_case_and_null_keeps_the_default() -> None:
    text = json.dumps({**BASE, "ConfDir": "/x", "MULTUSNAMESPACE": "infra", "binDir": None})
    config = MultusConfig.parse(text)
    assert (config.conf_dir, config.multus_namespace, config.bin_dir) == (
        "/x",
        "infra",
        "/opt/cni/bin",
    )


def test_unknown_and_daemon_keys_are_ignored() -> None:
    config = parse(socketDir="/run/multus", chrootDir="/hostroot", fancy=1)
    assert config.unknown_keys == ("socketDir", "chrootDir", "fancy")


def test_dead_keys_are_accepted_and_reported() -> None:
    config = parse(allowTryDeleteOnErr=True, cniConf="/host/etc/cni/multus/net.d")
    assert [n.code for n in config.notices] == ["config-key-ignored", "config-key-ignored"]
    assert [n.path for n in config.notices] == ["allowTryDeleteOnErr", "cniConf"]


def test_unknown_log_level_is_a_notice_not_an_error() -> None:
    config = parse(logLevel="loud")
    assert [n.code for n in config.notices] == ["config-log-level-unknown"]
    assert parse(logLevel="VERBOSE").notices == ()
    # The daemon's levels too: it copies its own logLevel into the generated file.
    assert parse(logLevel="info").notices == ()


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("namespaceIsolation", "true", "true or false"),
        ("confDir", 5, "a string"),
        ("defaultNetworks", "net-a", "a list of strings"),
        ("systemNamespaces", [1], "a list of strings"),
        ("globalNamespaces", 5, "comma-separated"),
        ("logOptions", [], "an object"),
        ("capabilities", {"portMappings": "yes"}, "true or false"),
        ("runtimeConfig", [], "an object"),
        ("maxParallelDelegates", -1, ">= 0"),
        ("maxParallelDelegates", True, ">= 0"),
        ("delegates", {}, "a list"),
    ],
)
def test_wrong_types_name_key_value_and_what_is_valid(key: str, value: Any, valid: str) -> None:
    with pytest.raises(CNIError) as err:
        parse(**{key: value})
    assert err.value.code == 7
    assert key in err.value.msg
    assert json.dumps(value) in err.value.msg
    assert valid in err.value.details


def test_log_option_types() -> None:
    with pytest.raises(CNIError) as err:
        parse(logOptions={"maxAge": "5"})
    assert "logOptions.maxAge" in err.value.msg


def test_required_keys() -> None:
    with pytest.raises(CNIError) as err:
        MultusConfig.parse('{"cniVersion": "0.3.1", "clusterNetwork": "x"}')
    assert err.value.code == 7 and "name" in err.value.msg
    with pytest.raises(CNIError) as err:
        MultusConfig.parse('{"cniVersion": "9.9.9", "name": "n", "clusterNetwork": "x"}')
    assert err.value.code == 1
    # No cniVersion: skel (and so Multus) reads it as 0.1.0.
    config = MultusConfig.parse('{"name": "n", "clusterNetwork": "x"}')
    assert config.cni_version == "0.1.0"
    assert [n.code for n in config.notices] == ["cni-version-assumed"]
    with pytest.raises(CNIError) as err:
        MultusConfig.parse('{"cniVersion": "0.3.1", "name": "n"}')
    assert err.value.code == 7 and "delegate/clusterNetwork" in err.value.msg
    with pytest.raises(CNIError) as err:
        MultusConfig.parse("{")
    assert err.value.code == 6


def test_inline_delegates_without_cni_version_load_with_a_notice() -> None:
    config = MultusConfig.parse(
        '{"cniVersion": "0.3.1", "name": "m", "delegates": [{"name": "d", "type": "bridge"}]}'
    )
    assert config.delegates[0].conf.declared_version == ""
    [notice] = config.notices
    assert (notice.code, notice.path) == ("cni-version-assumed", "delegates[0].cniVersion")


def test_a_delegate_without_name_is_refused_when_read() -> None:
    # Upstream loads it and then fails every ADD in libcni ("missing network name", 7).
    with pytest.raises(CNIError) as err:
        MultusConfig.parse('{"cniVersion": "0.3.1", "name": "m", "delegates": [{"type": "b"}]}')
    assert err.value.code == 7
    assert "delegate 0" in err.value.msg and "'name'" in err.value.msg


def test_inline_delegates_keep_their_bytes() -> None:
    text = (
        '{"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus", "delegates": ['
        '{"type": "flannel", "name": "flannel.1", "cniVersion": "0.3.1",'
        ' "delegate": {"isDefaultGateway": true}, "n": 1.50},'
        '{"cniVersion": "0.3.1", "name": "list", "plugins": [{"type": "a"}, {"type": "b"}]}]}'
    )
    config = MultusConfig.parse(text)
    first, second = config.delegates
    assert (first.name, first.is_list, first.source) == ("flannel.1", False, "delegates[0]")
    assert first.conf.plugins[0].text.endswith('"n": 1.50}')
    assert (second.name, second.is_list) == ("list", True)


def test_bad_delegate_is_an_error_naming_its_index() -> None:
    with pytest.raises(CNIError) as err:
        parse(clusterNetwork="", delegates=[{"type": "flannel", "cniVersion": "0.3.1"}])
    assert "delegate 0" in err.value.msg
    with pytest.raises(CNIError) as err:
        parse(
            clusterNetwork="",
            delegates=[{"type": "/bin/sh", "name": "x", "cniVersion": "0.3.1"}],
        )
    assert "not a plain file name" in err.value.msg
