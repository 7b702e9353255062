"""The verdict from evidence alone (no namespaces), the frame codec and the counter reading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from multihome.doctor import capture
from multihome.doctor.diagnose import DiagnoseError, diagnose
from multihome.doctor.inspect import parse_conntrack_stat
from multihome.doctor.verdict import Evidence, Frames, Probe, RouteLookup, checks, decide

MAC = "02:00:00:00:00:14"
OK_ROUTE = RouteLookup(dev="net1", src="192.168.60.20")


def healthy(**changes: object) -> Evidence:
    ev = Evidence(
        pod="default/web",
        network="default/lan",
        ifname="net1",
        mac=MAC,
        address="192.168.60.20/24",
        plugin="macvlan",
        parent="eth1",
        mode="bridge",
        target="192.168.60.5",
        default_dev="eth0",
        route_plain=OK_ROUTE,
        route_from=OK_ROUTE,
        reverse=RouteLookup(dev="lo"),
        parent_state="UP",
        conntrack_invalid=0,
        probe=Probe(
            sent=3,
            received=3,
            pod=Frames(echo_out=3, echo_replies=3, arp_replies=1),
            parent=Frames(echo_out=3, echo_replies=3, arp_replies=1),
            parent_arp_answered=True,
        ),
    )
    for key, value in changes.items():
        setattr(ev, key, value)
    return ev


def lost(**changes: object) -> Probe:
    probe = Probe(sent=3, received=0, parent_arp_answered=True)
    for key, value in changes.items():
        setattr(probe, key, value)
    return probe


def test_healthy_evidence_is_a_clean_bill() -> None:
    ev = healthy()
    assert decide(ev).cause == "healthy"
    assert [c.name for c in checks(ev) if c.status in ("warn", "fail")] == []


def test_without_a_target_only_static_checks() -> None:
    assert decide(healthy(target="", probe=None)).cause == "static-only"


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"node_owner": "eth1"}, "R4"),
        ({"probe": lost(duplicates=["02:00:00:00:00:99"])}, "R5"),
        (
            {
                "rp_filter_if": 1,
                "route_plain": RouteLookup(dev="eth0"),
                "route_from": RouteLookup(dev="eth0"),
                "reverse": RouteLookup(error="RTNETLINK answers: Invalid cross-device link"),
                "probe": lost(pod=Frames(echo_replies=3), parent=Frames(echo_replies=3)),
            },
            "R2",
        ),
        (
            {"probe": lost(pod=Frames(echo_replies=3), conntrack_invalid=3)},
            "R3",
        ),
        ({"route_plain": RouteLookup(dev="eth0"), "route_from": RouteLookup(dev="eth0")}, "R7"),
        ({"route_from": RouteLookup(dev="eth0")}, "R2"),
        ({"probe": lost()}, "R1"),
        ({"probe": lost(pod=Frames(arp_replies=1), parent=Frames(arp_replies=1))}, "R6"),
        ({"probe": lost(parent=Frames(arp_replies=1, echo_replies_elsewhere=3))}, "R5"),
    ],
)
def test_each_cause_from_its_evidence(changes: dict[str, object], cause: str) -> None:
    assert decide(healthy(**changes)).cause == cause


def test_effective_rp_filter_is_the_larger_value() -> None:
    assert healthy(rp_filter_all=2, rp_filter_if=1).rp_filter == 2
    assert healthy(rp_filter_all=0, rp_filter_if=1).rp_filter == 1


def test_frames_round_trip_through_the_codec() -> None:
    arp = capture.parse_frame(capture.arp_frame(MAC, "0.0.0.0", "192.168.60.20"), True)
    assert arp == {
        "dir": "out", "src": MAC, "dst": "ff:ff:ff:ff:ff:ff", "kind": "arp-request",
        "sha": MAC, "spa": "0.0.0.0", "tpa": "192.168.60.20",
    }  # fmt: skip
    icmp = capture.echo_request(0x1234, 2)
    assert capture.checksum(icmp) == 0
    ip = bytes([0x45, 0, 0, 20 + len(icmp), 0, 0, 0, 0, 64, 1, 0, 0])
    ip += bytes([192, 168, 60, 20, 192, 168, 60, 5])
    frame = b"\x02" * 6 + bytes.fromhex(MAC.replace(":", "")) + b"\x08\x00" + ip + icmp
    seen = capture.parse_frame(frame, False)
    assert seen is not None
    assert (seen["kind"], seen["ident"], seen["seq"], seen["ip_dst"]) == (
        "echo-request", 0x1234, 2, "192.168.60.5",
    )  # fmt: skip
    assert capture.parse_frame(b"short", False) is None


def test_conntrack_counters_are_summed_over_cpus() -> None:
    """R3 needs conntrack's counters; the netns test reproduces it where iptables can."""
    text = (
        "entries  clashres found new invalid ignore\n"
        "00000002  00000000 00000000 00000000 0000000a 00000000\n"
        "00000002  00000000 00000000 00000000 00000005 00000000\n"
    )
    assert parse_conntrack_stat(text) == 15
    assert parse_conntrack_stat("") is None


def test_an_unknown_pod_names_the_pod_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DiagnoseError, match=r"pod 'default/nope': no attachment record in "):
        diagnose("default/nope", cache_dirs=[str(tmp_path)])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "fe80::1"], "--target 'fe80::1': give an IPv4 address"),
        (["--target", "10.0.0.1", "--capture", "0"], "--capture 0.0: give a number of seconds"),
        ([], "pod 'web': no attachment record"),
    ],
)
def test_the_command_says_what_is_wrong_without_a_traceback(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multihome", "diagnose", "web", "--cache-dir", str(tmp_path),
         "--socket", str(tmp_path / "none.sock"), *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def _record(tmp_path: Path, name: str, container_id: str) -> None:
    import json

    from multihome.engine.cache import AttachmentCache, CachedAttachment, CacheRecord

    macvlan = {"cniVersion": "1.0.0", "name": "lan", "plugins": [
        {"type": "macvlan", "master": "eth1", "mode": "bridge"}, {"type": "tuning"},
    ]}  # fmt: skip
    AttachmentCache(tmp_path).save(
        CacheRecord(
            container_id=container_id,
            netns="/run/netns/none",
            ifname="eth0",
            cni_version="1.0.0",
            pod_namespace="default",
            pod_name=name,
            attachments=[
                CachedAttachment("cluster", "eth0", "{}", [], {}, primary=True),
                CachedAttachment("default/other", "net1", '{"type": "bridge"}', [], {}),
                CachedAttachment("default/lan", "net2", json.dumps(macvlan), [], {}),
            ],
        )
    )


def test_the_record_and_the_network_are_found_by_name(tmp_path: Path) -> None:
    from multihome.doctor.diagnose import _plugin, find_record, pick

    _record(tmp_path, "web", "c1")
    record = find_record("web", [str(tmp_path)])
    assert find_record("default/web", [str(tmp_path)]) == record
    assert find_record("c1", [str(tmp_path)]) == record
    chosen = pick(record, None)  # the first secondary network with a parent
    assert (chosen.network, _plugin(chosen)["master"]) == ("default/lan", "eth1")
    assert pick(record, "other").ifname == pick(record, "net1").ifname == "net1"
    with pytest.raises(DiagnoseError, match=r"--network 'nope': pod default/web has only "):
        pick(record, "nope")


def test_an_ambiguous_name_asks_for_the_namespace(tmp_path: Path) -> None:
    _record(tmp_path, "web", "c1")
    _record(tmp_path, "web", "c2")
    with pytest.raises(DiagnoseError, match="matches several records"):
        diagnose("web", cache_dirs=[str(tmp_path)])


def test_kubectl_plugin_runs_diagnose_in_the_daemon_on_the_pods_node(tmp_path: Path) -> None:
    """The wrapper asks for the pod's node and that node's daemon, then execs there."""
    script = Path(__file__).parents[2] / "scripts" / "kubectl-multihome"
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$0.log"\n'
        'case "$*" in *"get pod -n apps web"*) echo node-7;; *"get pods"*) echo mh-abc;; esac\n'
    )
    fake.chmod(0o755)
    proc = subprocess.run(
        [str(script), "diagnose", "-n", "apps", "web", "--target", "192.168.60.5"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "kubectl.log").read_text().splitlines()
    assert "--field-selector spec.nodeName=node-7" in calls[1]
    assert calls[2] == (
        "exec -n kube-system mh-abc -- multihome diagnose apps/web --target 192.168.60.5"
    )
