"""The daemon configuration file: upstream's keys, clear errors, and the per-request override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multihome.daemon.config import DaemonConfig, DaemonConfigError


def parse(config: dict[str, object], **env: str) -> DaemonConfig:
    return DaemonConfig.parse(json.dumps(config), environ=env)


def test_upstream_daemonset_config_is_read() -> None:
    # deployments/multus-daemonset-thick.yml's daemon-config.json, as upstream ships it.
    config = parse(
        {
            "chrootDir": "/hostroot",
            "cniVersion": "0.3.1",
            "logLevel": "verbose",
            "logToStderr": True,
            "cniConfigDir": "/host/etc/cni/net.d",
            "multusAutoconfigDir": "/host/etc/cni/net.d",
            "multusConfigFile": "auto",
            "socketDir": "/host/run/multus/",
        },
        MULTUS_NODE_NAME="node1",
    )
    assert config.socket_path == "/host/run/multus/multihome.sock"
    assert config.cni_version == "0.3.1"
    assert config.log_level == "verbose"
    assert config.cni_config_dir == "/host/etc/cni/net.d"
    assert config.node_name == "node1"
    assert config.kube is None  # neither a kubeconfig nor in-cluster variables
    assert any("chrootDir is not supported" in n for n in config.notices)


def test_defaults() -> None:
    config = parse({})
    assert config.socket_path == "/run/multihome/multihome.sock"
    assert config.metrics_port is None
    assert config.max_concurrent_requests > 0
    assert config.cache_dir == "/var/lib/cni/multus/multihome"


def test_socket_dir_name_and_daemon_socket_dir() -> None:
    assert parse({"daemonSocketDir": "/run/x"}).socket_dir == "/run/x"
    both = parse({"daemonSocketDir": "/run/x", "socketDir": "/host/run/x"})
    assert (both.socket_dir, both.daemon_socket_dir) == ("/host/run/x", "/run/x")
    assert parse({"socketName": "multus.sock"}).socket_path == "/run/multihome/multus.sock"


def test_keys_match_in_any_letter_case_as_go_does() -> None:
    config = parse({"METRICSPORT": 9091, "socketdir": "/run/y"})
    assert (config.metrics_port, config.socket_dir) == (9091, "/run/y")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            {"metricsPort": "9091"},
            'metricsPort is "9091"; it must be a whole number from 0 to 65535',
        ),
        ({"metricsPort": 70000}, "metricsPort is 70000"),
        ({"connectionLimit": 0}, "connectionLimit is 0; it must be a whole number greater than 0"),
        ({"maxConcurrentRequests": True}, "maxConcurrentRequests is true"),
        (
            {"requestTimeoutSeconds": 0},
            "requestTimeoutSeconds is 0; it must be a number of seconds",
        ),
        ({"logLevel": "loud"}, 'logLevel is "loud"; it must be one of debug, verbose, info'),
        ({"logJSON": "yes"}, 'logJSON is "yes"; it must be true or false'),
        ({"socketName": "a/b.sock"}, 'socketName is "a/b.sock"; it must be a file name'),
        ({"socketDir": "/" + "d" * 100}, "socket path is at most 107 bytes"),
        ({"cniVersion": "2.0.0"}, 'cniVersion is "2.0.0"; it must be one of 0.1.0'),
        ({"socketDir": 5}, "socketDir is 5; it must be a string"),
        ({"kube": {"qps": -1}}, "kube setting qps: -1 is not valid"),
        ({"logOptions": {"maxSize": "big"}}, 'maxSize is "big"'),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_valid(
    config: dict[str, object], named: str
) -> None:
    with pytest.raises(DaemonConfigError) as err:
        parse(config)
    assert named in str(err.value)


def test_unknown_keys_are_ignored() -> None:
    assert parse({"someFutureKey": {"x": 1}, "confDir": "/etc/x"}).socket_dir == "/run/multihome"


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("{not json")
    with pytest.raises(DaemonConfigError, match=f"daemon configuration {path} is not a JSON"):
        DaemonConfig.load(path)
    with pytest.raises(DaemonConfigError, match="cannot read the daemon configuration"):
        DaemonConfig.load(tmp_path / "missing.json")


def test_node_name_and_kubernetes_access() -> None:
    assert parse({}, NODE_NAME="n2").node_name == "n2"
    assert parse({"nodeName": "n3"}, NODE_NAME="n2").node_name == "n3"
    kube = parse({"kubeconfig": "/etc/kube.conf", "kube": {"qps": 5}}, NODE_NAME="n2").kube
    assert kube is not None
    assert (kube.kubeconfig, kube.node_name, kube.qps) == ("/etc/kube.conf", "n2", 5.0)
    in_cluster = parse({}, KUBERNETES_SERVICE_HOST="10.0.0.1", KUBERNETES_SERVICE_PORT="443")
    assert in_cluster.kube is not None
    assert in_cluster.kube.kubeconfig == ""


def test_accepted_but_unsupported_keys_are_noted() -> None:
    config = parse({"enablePprof": True, "perNodeCertificate": {"enabled": True}})
    assert len(config.notices) == 2
    assert parse({"enablePprof": False}).notices == ()


# -- the per-request override ------------------------------------------------------------

STDIN = (
    b'{"cniVersion":"0.3.1", "name":"multus-cni-network","type":"multihome-shim",'
    b' "binDir":"/opt/cni/bin","plugin":{"x": 1.50},"logLevel":"debug"}'
)


def test_every_top_level_key_of_the_file_overrides_the_request() -> None:
    config = parse({"binDir": "/host/opt/cni/bin", "confDir": "/etc/multus", "socketDir": "/r"})
    merged = json.loads(config.override(STDIN))
    assert merged["binDir"] == "/host/opt/cni/bin"
    assert merged["confDir"] == "/etc/multus"
    assert merged["socketDir"] == "/r"


def test_the_override_keeps_every_other_byte() -> None:
    config = parse({"binDir": "/b"})
    merged = config.override(STDIN).decode()
    # Values keep their source text (1.50 is not re-encoded as 1.5), in their order.
    assert merged == (
        '{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multihome-shim",'
        '"binDir":"/b","plugin":{"x": 1.50},"logLevel":"debug"}'
    )


def test_an_override_is_kept_per_request_bytes_and_bounded() -> None:
    config = parse({"binDir": "/b"})
    first = config.override(STDIN)
    assert config.override(STDIN) is first  # the same bytes: not parsed again
    others = [STDIN.replace(b"debug", f"d{i}".encode()) for i in range(200)]
    for other in others:
        assert json.loads(config.override(other))["binDir"] == "/b"
    assert len(config._overrides) <= 64
    assert json.loads(config.override(others[0]))["logLevel"] == "d0"
    assert parse({"binDir": "/c"}).override(STDIN) != first  # per configuration


def test_cni_version_and_log_keys_are_not_overridden() -> None:
    config = parse({"cniVersion": "1.0.0", "logLevel": "error", "LOGFILE": "/x"})
    assert config.override(STDIN) == STDIN


def test_a_key_in_another_case_is_replaced() -> None:
    config = parse({"binDir": "/b"})
    merged = json.loads(config.override(b'{"cniVersion":"1.0.0","BINDIR":"/a"}'))
    assert merged == {"cniVersion": "1.0.0", "binDir": "/b"}


def test_a_request_that_is_not_json_is_left_for_the_engine_to_report() -> None:
    assert parse({"binDir": "/b"}).override(b"{broken") == b"{broken"
