"""Config generation: the primary found, 00-multihome.conf made from it and kept current."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from multihome.cni.config import NetConfList
from multihome.cni.errors import CNIError, Code
from multihome.cni.invoking import build_plugin_conf
from multihome.daemon.confgen import (
    FILE_NAME,
    ConfigManager,
    Settings,
    candidates,
    find_primary,
    generate,
)
from multihome.networks.config import MultusConfig

CALICO = {
    "cniVersion": "1.0.0",
    "name": "k8s-pod-network",
    "plugins": [
        {"type": "calico", "ipam": {"type": "calico-ipam"}, "kubeconfig": "/etc/cni/kc"},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        {"type": "portmap", "capabilities": {"portMappings": True, "ips": False}, "snat": True},
    ],
}
FLANNEL = {
    "cniVersion": "0.4.0",
    "name": "cbr0",
    "type": "flannel",
    "capabilities": {"portMappings": True},
}


def _write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def _conf(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture
def netd(tmp_path: Path) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    return directory


def _daemon(netd: Path, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "cniConfigDir": str(netd), **extra}


# -- choosing the primary --


def test_candidates_are_lexical_and_skip_ours_and_multus() -> None:
    names = [
        "20-flannel.conflist",
        "00-multihome.conf",
        "00-multus.conf",
        "00-multus.conflist",
        "10-calico.conflist",
        "05-weird.json",
        "01-notes.txt",
        ".00-multihome.conf.x1.tmp",
        "10-calico.conf",
    ]
    assert candidates(names) == ["10-calico.conf", "10-calico.conflist", "20-flannel.conflist"]


def test_find_primary_takes_the_lexically_first(netd: Path) -> None:
    _write(netd / "20-flannel.conflist", FLANNEL)
    _write(netd / "10-calico.conflist", CALICO)
    _write(netd / FILE_NAME, {"type": "multihome-shim"})
    (netd / "05-dir.conf").mkdir()  # a directory is not a candidate
    assert find_primary(str(netd)) == str(netd / "10-calico.conflist")


def test_an_explicit_primary_wins_and_nothing_replaces_it(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    _write(netd / "20-flannel.conflist", FLANNEL)
    assert find_primary(str(netd), master="20-flannel.conflist") == str(
        netd / "20-flannel.conflist"
    )
    assert find_primary(str(netd), master="30-missing.conf") is None


def test_find_primary_in_a_missing_directory_is_none(tmp_path: Path) -> None:
    assert find_primary(str(tmp_path / "nope")) is None


# -- generating --


def test_generated_config_points_at_the_primary_with_the_union_of_capabilities(
    netd: Path,
) -> None:
    primary = netd / "10-calico.conflist"
    config = _daemon(
        netd,
        capabilities={"dns": True, "mac": False},
        daemonSocketDir="/run/multihome",
        socketName="multus.sock",
        binDir="/opt/cni/bin",
        cniDir="/var/lib/cni/multihome",
        namespaceIsolation=True,
        globalNamespaces="default,infra",
        auxiliaryCNIChainName="aux",
        logOptions={"maxAge": 5},
        readinessindicatorfile="/run/calico/ready",
        multusAutoconfigDir=str(netd),
        socketDir="/host/run/multihome",
        chrootDir="/hostroot",
        confDir="/etc/cni/multus/net.d",
    )
    out = json.loads(generate(config, primary_path=str(primary), primary=json.dumps(CALICO)))
    assert out == {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "type": "multihome-shim",
        "clusterNetwork": str(primary),
        "capabilities": {"bandwidth": True, "dns": True, "portMappings": True},
        "daemonSocketDir": "/run/multihome",
        "socketName": "multus.sock",
        "binDir": "/opt/cni/bin",
        "cniDir": "/var/lib/cni/multihome",
        "namespaceIsolation": True,
        "globalNamespaces": "default,infra",
        "auxiliaryCNIChainName": "aux",
        "logOptions": {"maxAge": 5},
    }


def test_a_single_conf_primary_and_override_network_name(netd: Path) -> None:
    primary = netd / "10-flannel.conf"
    config = {"cniVersion": "0.4.0", "overrideNetworkName": True}
    out = json.loads(generate(config, primary_path=str(primary), primary=json.dumps(FLANNEL)))
    assert out["name"] == "cbr0"
    assert out["capabilities"] == {"portMappings": True}
    assert out["cniVersion"] == "0.4.0"


def test_without_cni_version_the_primary_version_is_used(netd: Path) -> None:
    out = generate({}, primary_path=str(netd / "10-f.conf"), primary=json.dumps(FLANNEL))
    assert json.loads(out)["cniVersion"] == "0.4.0"
    assert "capabilities" in json.loads(out)


def test_keys_match_with_any_letter_case_as_in_go(netd: Path) -> None:
    config = {"CNIVersion": "1.0.0", "DaemonSocketDir": "/run/x", "overridenetworkname": True}
    out = json.loads(generate(config, primary_path="/p.conflist", primary=json.dumps(CALICO)))
    assert out["cniVersion"] == "1.0.0"
    assert out["daemonSocketDir"] == "/run/x"
    assert out["name"] == "k8s-pod-network"


@pytest.mark.parametrize("old", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_a_primary_older_than_0_4_0_under_a_newer_multihome_is_refused(old: str) -> None:
    primary = {**FLANNEL, "cniVersion": old}
    with pytest.raises(CNIError) as caught:
        generate(
            {"cniVersion": "1.0.0"},
            primary_path="/etc/cni/net.d/10-f.conf",
            primary=json.dumps(primary),
        )
    err = caught.value
    assert err.code == Code.INCOMPATIBLE_VERSION
    assert "/etc/cni/net.d/10-f.conf" in err.msg
    assert old in err.msg and "1.0.0" in err.msg
    assert f"use cniVersion '{old}'" in err.details
    # The same pair is fine when multihome is old too, or when the check is forced off.
    same = json.loads(
        generate({"cniVersion": old}, primary_path="/p.conf", primary=json.dumps(primary))
    )
    assert same["cniVersion"] == old
    forced = {"cniVersion": "1.0.0", "forceCNIVersion": True}
    assert json.loads(generate(forced, primary_path="/p.conf", primary=json.dumps(primary)))


def test_invalid_json_primary_is_a_clear_error_not_an_empty_config() -> None:
    with pytest.raises(CNIError) as caught:
        generate({"cniVersion": "1.0.0"}, primary_path="/n/10-x.conflist", primary=b'{"name": ')
    assert caught.value.code == Code.DECODE_FAILURE
    assert caught.value.msg.startswith(
        "failed to load the primary CNI configuration /n/10-x.conflist"
    )


def test_a_conflist_without_plugins_names_the_field() -> None:
    with pytest.raises(CNIError) as caught:
        generate(
            {"cniVersion": "1.0.0"},
            primary_path="/n/10-x.conflist",
            primary=json.dumps({"cniVersion": "1.0.0", "name": "x", "type": "bridge"}),
        )
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert "plugins" in caught.value.msg


def test_a_primary_that_is_multihome_itself_is_refused() -> None:
    ours = {"cniVersion": "1.0.0", "name": "m", "type": "multihome-shim"}
    with pytest.raises(CNIError, match="multihome itself"):
        generate({}, primary_path="/n/05-old.conf", primary=json.dumps(ours))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("daemonSocketDir", 5),
        ("namespaceIsolation", "yes"),
        ("shimRequestTimeoutSeconds", -1),
        ("capabilities", {"mac": "yes"}),
        ("cniVersion", "9.9.9"),
        ("cleanupConfigOnExit", 1),
    ],
)
def test_daemon_config_of_the_wrong_type_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(CNIError) as caught:
        Settings.from_daemon_config({key: value})
    assert key in caught.value.msg


def test_an_explicit_primary_that_is_our_own_file_is_refused(netd: Path) -> None:
    with pytest.raises(CNIError, match="the file multihome writes"):
        ConfigManager(_daemon(netd, multusMasterCNI=FILE_NAME))


# -- keeping the file current --


def test_primary_appearing_late(netd: Path) -> None:
    manager = ConfigManager(_daemon(netd))
    ours = netd / FILE_NAME
    status = manager.poll_once()
    assert not status.ready
    assert "waiting for a *.conf or *.conflist file in" in status.reason
    assert not ours.exists()

    _write(netd / "10-calico.conflist", CALICO)
    status = manager.poll_once()
    assert status.ready and status.reason == ""
    assert status.source == str(netd / "10-calico.conflist")
    assert _conf(ours)["clusterNetwork"] == str(netd / "10-calico.conflist")
    assert stat.S_IMODE(ours.stat().st_mode) == 0o644


def test_primary_changing_regenerates(netd: Path) -> None:
    primary = _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    ours = netd / FILE_NAME
    assert "dns" not in _conf(ours)["capabilities"]

    changed = json.loads(json.dumps(CALICO))
    changed["plugins"][0]["capabilities"] = {"dns": True}
    _write(primary, changed)
    manager.poll_once()
    assert _conf(ours)["capabilities"] == {"bandwidth": True, "dns": True, "portMappings": True}


def test_an_unchanged_primary_does_not_rewrite_our_file(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    before = (netd / FILE_NAME).stat()
    # A rewrite of the primary with the same content changes nothing of ours.
    _write(netd / "10-calico.conflist", CALICO)
    manager.poll_once()
    after = (netd / FILE_NAME).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_invalid_json_primary_keeps_our_file(netd: Path, caplog: pytest.LogCaptureFixture) -> None:
    primary = _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    ours = netd / FILE_NAME
    good = ours.read_bytes()

    _write(primary, '{"cniVersion": "1.0.0", "name": "k8s-pod-net')  # half written
    with caplog.at_level(logging.WARNING, logger="multihome.daemon.confgen"):
        status = manager.poll_once()
        manager.poll_once()
    assert ours.read_bytes() == good
    assert status.ready  # the last good file is still in place
    assert "failed to load the primary CNI configuration" in status.reason
    assert str(primary) in status.reason
    # Logged once, not at every poll.
    assert sum("failed to load" in r.getMessage() for r in caplog.records) == 1

    _write(primary, {**CALICO, "name": "fixed"})
    status = manager.poll_once()
    assert status.reason == ""
    assert _conf(ours)["capabilities"] == {"bandwidth": True, "portMappings": True}


def test_an_invalid_primary_before_any_good_one_leaves_no_file(netd: Path) -> None:
    _write(netd / "10-calico.conflist", "")
    manager = ConfigManager(_daemon(netd))
    status = manager.poll_once()
    assert not status.ready
    assert "failed to load" in status.reason
    assert not (netd / FILE_NAME).exists()


def test_version_mismatch_keeps_the_node_unready(netd: Path) -> None:
    _write(netd / "10-flannel.conf", {**FLANNEL, "cniVersion": "0.3.1"})
    status = ConfigManager(_daemon(netd)).poll_once()
    assert not status.ready
    assert "cniVersion 0.3.1" in status.reason
    assert not (netd / FILE_NAME).exists()


def test_two_candidates_and_the_primary_replaced(netd: Path) -> None:
    _write(netd / "20-flannel.conflist", {**FLANNEL, "type": None, "plugins": [FLANNEL]})
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    ours = netd / FILE_NAME
    assert manager.poll_once().source == str(netd / "10-calico.conflist")
    assert _conf(ours)["clusterNetwork"] == str(netd / "10-calico.conflist")

    (netd / "10-calico.conflist").unlink()
    manager.poll_once()
    assert _conf(ours)["clusterNetwork"] == str(netd / "20-flannel.conflist")

    _write(netd / "05-cilium.conf", {"cniVersion": "1.0.0", "name": "cilium", "type": "cilium-cni"})
    manager.poll_once()
    assert _conf(ours)["clusterNetwork"] == str(netd / "05-cilium.conf")


def test_the_explicit_primary_is_used_even_when_lexically_later(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    _write(netd / "20-flannel.conf", FLANNEL)
    manager = ConfigManager(_daemon(netd, multusMasterCNI="20-flannel.conf"))
    manager.poll_once()
    assert _conf(netd / FILE_NAME)["clusterNetwork"] == str(netd / "20-flannel.conf")


def test_an_explicit_primary_that_is_missing_is_waited_for(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd, multusMasterCNI="20-flannel.conf"))
    status = manager.poll_once()
    assert not status.ready
    assert "20-flannel.conf (multusMasterCNI)" in status.reason
    assert not (netd / FILE_NAME).exists()


def test_primary_removed_with_no_other_keeps_the_last_good_file(netd: Path) -> None:
    primary = _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    good = (netd / FILE_NAME).read_bytes()
    primary.unlink()
    status = manager.poll_once()
    assert status.ready
    assert f"{primary} is gone" in status.reason
    assert (netd / FILE_NAME).read_bytes() == good
    # It comes back: all is well again.
    _write(primary, CALICO)
    assert manager.poll_once().reason == ""


def test_our_file_removed_by_someone_else_is_restored(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    good = (netd / FILE_NAME).read_bytes()
    (netd / FILE_NAME).unlink()
    manager.poll_once()
    assert (netd / FILE_NAME).read_bytes() == good


def test_the_primary_in_another_directory(tmp_path: Path, netd: Path) -> None:
    auto = tmp_path / "host-net.d"
    auto.mkdir()
    _write(auto / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd, multusAutoconfigDir=str(auto)))
    manager.poll_once()
    assert _conf(netd / FILE_NAME)["clusterNetwork"] == str(auto / "10-calico.conflist")
    assert list(auto.iterdir()) == [auto / "10-calico.conflist"]


def test_writes_leave_no_temporary_files_and_complete_content(netd: Path) -> None:
    primary = _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    for index in range(5):
        _write(primary, {**CALICO, "name": f"n{index}"})
        manager.poll_once()
        assert sorted(p.name for p in netd.iterdir()) == [FILE_NAME, "10-calico.conflist"]
        text = (netd / FILE_NAME).read_text()
        assert text.endswith("}\n")
        assert json.loads(text)["type"] == "multihome-shim"


def test_a_write_that_fails_reports_unready_and_keeps_nothing_half_done(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    (netd / FILE_NAME).mkdir()  # os.replace cannot put a file over a directory
    manager = ConfigManager(_daemon(netd))
    status = manager.poll_once()
    assert not status.ready
    assert f"failed to write {netd / FILE_NAME}" in status.reason
    assert sorted(p.name for p in netd.iterdir()) == [FILE_NAME, "10-calico.conflist"]
    # The obstacle goes: the next poll writes the file and all is well.
    (netd / FILE_NAME).rmdir()
    status = manager.poll_once()
    assert status.ready and status.reason == ""
    assert _conf(netd / FILE_NAME)["type"] == "multihome-shim"


# -- readiness indicator --


def test_readiness_indicator_file(tmp_path: Path, netd: Path) -> None:
    ready_file = tmp_path / "calico-ready"
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd, readinessindicatorfile=str(ready_file)))
    ours = netd / FILE_NAME

    status = manager.poll_once()
    assert not status.ready
    assert status.reason == f"waiting for the readiness indicator file {ready_file}"
    assert not ours.exists()

    ready_file.touch()
    assert manager.poll_once().ready
    assert _conf(ours)["clusterNetwork"] == str(netd / "10-calico.conflist")
    # Never copied into our file: the daemon, not each request, waits for it.
    assert "readinessindicatorfile" not in _conf(ours)

    ready_file.unlink()
    assert not manager.poll_once().ready
    assert not ours.exists()

    ready_file.touch()
    assert manager.poll_once().ready
    assert ours.exists()


def test_a_leftover_file_goes_while_the_readiness_indicator_is_missing(
    tmp_path: Path, netd: Path
) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    _write(netd / FILE_NAME, {"cniVersion": "1.0.0", "name": "old", "type": "multihome-shim"})
    manager = ConfigManager(_daemon(netd, readinessindicatorfile=str(tmp_path / "absent")))
    assert not manager.poll_once().ready
    assert not (netd / FILE_NAME).exists()


# -- copying a given file instead (multusConfigFile) --


def test_a_given_config_file_is_copied_as_it_is(tmp_path: Path, netd: Path) -> None:
    given = tmp_path / "70-multihome.conf"
    text = '{"cniVersion": "0.3.1", "name": "given", "type": "multihome-shim", "big": 1e400}'
    given.write_text(text)
    manager = ConfigManager(_daemon(netd, multusConfigFile=str(given)))
    assert manager.path == str(netd / "70-multihome.conf")
    assert manager.poll_once().ready
    assert (netd / "70-multihome.conf").read_text() == text

    given.write_text("{")
    status = manager.poll_once()
    assert (netd / "70-multihome.conf").read_text() == text
    assert "failed to decode" in status.reason


# -- shutdown --


def test_our_file_stays_at_exit_by_default(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    manager = ConfigManager(_daemon(netd))
    manager.poll_once()
    assert manager.on_exit() is False
    assert (netd / FILE_NAME).exists()


class _Stop(Exception):
    pass


async def test_run_polls_with_the_injected_sleep_and_cleans_up_when_configured(
    netd: Path,
) -> None:
    intervals: list[float] = []
    seen: list[bool] = []

    async def sleep(seconds: float) -> None:
        intervals.append(seconds)
        seen.append((netd / FILE_NAME).exists())
        if len(intervals) == 1:
            _write(netd / "10-calico.conflist", CALICO)  # appears between two polls
        if len(intervals) == 3:
            raise asyncio.CancelledError

    manager = ConfigManager(_daemon(netd, cleanupConfigOnExit=True), interval=2.5, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await manager.run()
    assert intervals == [2.5, 2.5, 2.5]
    assert seen == [False, True, True]
    assert not (netd / FILE_NAME).exists()
    assert sorted(os.listdir(netd)) == ["10-calico.conflist"]


# -- cniConfigFormat: conflist (podman reads only lists) --


def test_a_conflist_carries_the_same_keys_to_the_plugin(netd: Path) -> None:
    primary = _write(netd / "10-calico.conflist", CALICO)
    config = _daemon(netd, cniConfigFormat="conflist", daemonSocketDir="/run/x", binDir="/b")
    conf = _daemon(netd, daemonSocketDir="/run/x", binDir="/b")
    as_list = generate(config, primary_path=str(primary), primary=json.dumps(CALICO))
    as_conf = json.loads(generate(conf, primary_path=str(primary), primary=json.dumps(CALICO)))

    # What the runtime does with it: libcni's list loading and buildOneConfig.
    network = NetConfList.parse(as_list)
    assert (network.name, network.declared_version) == ("multus-cni-network", "1.0.0")
    [plugin] = network.plugins
    stdin = build_plugin_conf(network, plugin, capability_args={}, prev_result=None)
    assert stdin.to_dict() == as_conf
    multus = MultusConfig.parse(stdin.text)
    assert (multus.cluster_network, multus.bin_dir) == (str(primary), "/b")


def test_the_manager_writes_the_conflist_and_removes_the_conf(netd: Path) -> None:
    _write(netd / "10-calico.conflist", CALICO)
    ConfigManager(_daemon(netd)).poll_once()
    assert (netd / FILE_NAME).exists()
    manager = ConfigManager(_daemon(netd, cniConfigFormat="conflist"))
    assert manager.poll_once().ready
    assert manager.path == str(netd / "00-multihome.conflist")
    assert _conf(netd / "00-multihome.conflist")["plugins"][0]["type"] == "multihome-shim"
    assert not (netd / FILE_NAME).exists()  # the runtime would read it first


def test_an_unknown_config_format_names_the_valid_ones() -> None:
    with pytest.raises(CNIError) as caught:
        Settings.from_daemon_config({"cniConfigFormat": "yaml"})
    assert "'cniConfigFormat' is \"yaml\"" in caught.value.msg
    assert '"conflist"' in caught.value.details
