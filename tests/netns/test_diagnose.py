"""`multihome diagnose` against real namespaces: each cause reproduced, and healthy pods.

Every scenario is a `PodOnLan` (testing/lan.py): a node namespace with the
parent eth1 on a LAN bridge in its own namespace, a pod with eth0 (Calico
style) and net1 (macvlan), and a device on the LAN.  Each breaks one thing
and asserts the verdict names exactly that cause.  The capture window is a
parameter; the assertions are on what the probe saw, never on how long it
took.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from multihome.doctor.diagnose import DiagnoseError, Report, diagnose
from multihome.testing.lab import Lab
from multihome.testing.lan import GATEWAY, PodOnLan

pytestmark = pytest.mark.netns

#: Long enough for a LAN inside one machine to answer; a healthy probe stops early.
WINDOW = 2.0
OFF_SUBNET = "192.168.70"


def run(world: PodOnLan, target: str, **kw: object) -> Report:
    return diagnose(
        "default/web",
        cache_dirs=[str(world.cache_dir)],
        target=target,
        capture=WINDOW,
        node_netns=world.netns["node"].path,
        **kw,  # type: ignore[arg-type]
    )


def off_subnet_device(world: PodOnLan, *, route_back: bool) -> str:
    """Move the device to 192.168.70.5/24 on the same LAN; optionally with a route to the pod's."""
    device = world.netns["device"]
    world.lab.run(device, "ip", "addr", "flush", "dev", "eth0")
    world.lab.address(device, "eth0", f"{OFF_SUBNET}.5/24")
    if route_back:
        world.lab.run(device, "ip", "route", "add", f"{world.subnet}.0/24", "dev", "eth0")
    return f"{OFF_SUBNET}.5"


def test_healthy_pod_gets_a_clean_bill(lab: Lab) -> None:
    world = PodOnLan(lab)
    world.sysctl("pod", "net.ipv4.conf.all.rp_filter", "1")  # strict is fine when symmetric

    report = run(world, world.device_ip)

    assert report.verdict.cause == "healthy", report.render()
    assert [c for c in report.checks if c.status in ("warn", "fail")] == []
    probe = report.evidence.probe
    assert probe is not None and probe.sent == probe.received == 3
    assert probe.pod.echo_replies == probe.parent.echo_replies == 3
    assert probe.parent_arp_answered


def test_r1_the_lan_drops_frames_to_the_pods_mac(lab: Lab) -> None:
    world = PodOnLan(lab)
    mac = world.mac("pod", "net1")
    lab.run(world.netns["lan"], "ebtables", "-A", "FORWARD", "-d", mac, "-j", "DROP")

    report = run(world, world.device_ip)

    assert report.verdict.cause == "R1", report.render()
    assert mac in report.verdict.summary
    assert "the LAN filters the pod's MAC" in report.verdict.summary
    probe = report.evidence.probe
    assert probe is not None and probe.received == 0 and probe.parent.arp_replies == 0


def test_r2_strict_rp_filter_with_the_reply_route_via_eth0(lab: Lab) -> None:
    world = PodOnLan(lab)
    target = off_subnet_device(world, route_back=True)
    world.sysctl("pod", "net.ipv4.conf.net1.rp_filter", "1")

    report = run(world, target)

    assert report.verdict.cause == "R2", report.render()
    assert "dropped by rp_filter=1 because the reply route points at eth0" in (
        report.verdict.summary
    )
    assert "rp_filter=2" in report.verdict.fix
    probe = report.evidence.probe
    assert probe is not None and probe.pod.echo_replies > 0 and probe.received == 0
    assert probe.rp_drops > 0


def test_r2_the_pod_answers_via_eth0(lab: Lab) -> None:
    world = PodOnLan(lab)
    pod = world.netns["pod"]
    # A source rule (a half-done sbr) sends everything from net1's address to eth0.
    lab.run(pod, "ip", "rule", "add", "from", world.pod_ip, "lookup", "100", "prio", "100")
    lab.run(
        pod,
        "ip",
        "route",
        "add",
        "default",
        "via",
        GATEWAY,
        "dev",
        "eth0",
        "onlink",
        "table",
        "100",
    )

    report = run(world, world.device_ip)

    assert report.verdict.cause == "R2", report.render()
    assert f"answers from {world.pod_ip} via eth0" in report.verdict.summary


def test_r4_the_target_is_the_nodes_own_address(lab: Lab) -> None:
    world = PodOnLan(lab, node_host=1)

    report = run(world, world.ip(1))

    assert report.verdict.cause == "R4", report.render()
    assert "eth1" in report.verdict.summary
    assert report.evidence.node_owner == "eth1"


def test_r5_a_second_host_holds_the_pods_address(lab: Lab) -> None:
    world = PodOnLan(lab)
    dup = lab.netns("dup")
    world.plug(dup, "eth0", world.pod_ip_prefix(world.pod_host))
    dup_mac = lab.links(dup)["eth0"].mac

    report = run(world, world.device_ip)

    assert report.verdict.cause == "R5", report.render()
    assert report.evidence.probe is not None
    assert report.evidence.probe.duplicates == [dup_mac]
    assert dup_mac in report.verdict.summary


def test_r6_the_device_has_no_route_back(lab: Lab) -> None:
    world = PodOnLan(lab)
    target = off_subnet_device(world, route_back=False)
    lab.run(world.netns["pod"], "ip", "route", "add", f"{OFF_SUBNET}.0/24", "dev", "net1")

    report = run(world, target)

    assert report.verdict.cause == "R6", report.render()
    assert f"no route back to {world.subnet}.0/24" in report.verdict.summary
    probe = report.evidence.probe
    assert probe is not None and probe.pod.arp_replies > 0 and probe.parent.echo_replies == 0


def test_r7_no_route_via_net1_the_request_leaves_through_eth0(lab: Lab) -> None:
    world = PodOnLan(lab)
    target = off_subnet_device(world, route_back=True)

    report = run(world, target)

    assert report.verdict.cause == "R7", report.render()
    assert "leave through eth0, not net1" in report.verdict.summary
    assert report.evidence.route_plain is not None
    assert report.evidence.route_plain.dev == "eth0"


def test_r3_conntrack_drops_the_reply_as_invalid(lab: Lab) -> None:
    world = PodOnLan(lab)
    pod = world.netns["pod"]
    # The request bypasses conntrack (as on an asymmetric path), so its reply
    # arrives with no connection: INVALID, and the usual rule drops it.
    for rule in (
        ["-t", "raw", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "NOTRACK"],
        ["-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
    ):
        if lab.run(pod, "iptables", *rule, check=False).returncode != 0:
            pytest.skip("no iptables conntrack match in this kernel")

    report = run(world, world.device_ip)

    assert report.verdict.cause == "R3", report.render()
    probe = report.evidence.probe
    assert probe is not None and probe.conntrack_invalid >= probe.pod.echo_replies > 0


def test_a_pod_the_engine_attached_is_found_in_its_cache(lab: Lab) -> None:
    """The engine's own record (real macvlan plugin, node = this namespace) leads the way."""
    from multihome.testing.world import World

    world = World(lab)
    lan = lab.macvlan_parent("lan")
    subnet = world.lan_subnet(1)
    world.macvlan_nad("lan", master=lan, subnet=subnet)
    device = lab.netns("device")
    lab.veth(a=None, b=device, b_name="eth0", bridge=lan)
    lab.address(device, "eth0", world.host(subnet, 200) + "/24")
    sandbox = world.pod("web", "lan")
    world.add(sandbox)
    try:
        report = diagnose(
            "default/web",
            cache_dirs=[str(world.cni_dir / "multihome")],
            target=world.host(subnet, 200),
            capture=WINDOW,
        )
        net1 = lab.links(sandbox.netns)["net1"]
    finally:
        world.delete(sandbox)

    assert report.verdict.cause == "healthy", report.render()
    ev = report.evidence
    assert (ev.network, ev.ifname, ev.plugin, ev.parent, ev.mode) == (
        "default/lan",
        "net1",
        "macvlan",
        lan,
        "bridge",
    )
    assert (ev.mac, ev.address) == (net1.mac, net1.addresses[0])
    assert [c for c in report.checks if c.status in ("warn", "fail")] == []


def test_the_command_prints_the_verdict_first_and_json_with_the_same_structure(lab: Lab) -> None:
    world = PodOnLan(lab)
    target = off_subnet_device(world, route_back=True)
    argv = [
        sys.executable, "-m", "multihome", "diagnose", "web", "--target", target,
        "--capture", str(WINDOW), "--cache-dir", str(world.cache_dir),
        "--node-netns", world.netns["node"].path,
    ]  # fmt: skip

    text = subprocess.run(argv, capture_output=True, text=True, check=False)
    as_json = subprocess.run(
        [*argv, "--output", "json"], capture_output=True, text=True, check=False
    )

    assert text.returncode == as_json.returncode == 1, text.stderr + as_json.stderr
    assert text.stdout.startswith("R7: requests to 192.168.70.5 leave through eth0, not net1")
    data = json.loads(as_json.stdout)
    assert data["verdict"]["cause"] == "R7"
    assert {c["name"] for c in data["checks"]} >= {"rp_filter", "parent", "probe", "node address"}
    assert data["evidence"]["ifname"] == "net1"
    assert [f["kind"] for f in data["frames"]["pod"]].count("echo-reply") == 3


def test_a_missing_interface_is_a_clear_error(lab: Lab) -> None:
    world = PodOnLan(lab)
    lab.run(world.netns["pod"], "ip", "link", "del", "net1")

    with pytest.raises(DiagnoseError, match="net1 of default/lan is not in the pod's namespace"):
        run(world, world.device_ip)


def test_the_walk_through_in_the_docs_is_what_the_tool_prints() -> None:
    """docs/diagnose.md quotes the story's runs; each verdict there is today's verdict."""
    from pathlib import Path

    from multihome.testing.lan import story

    doc = (Path(__file__).parents[2] / "docs" / "diagnose.md").read_text()
    runs = story()

    verdicts = [run.splitlines()[1] for run in runs]
    assert [v.split(":")[0] for v in verdicts] == ["healthy", "R7", "healthy"]
    for verdict in verdicts:
        assert verdict in doc


def test_an_interface_without_ipv4_is_a_clear_error(lab: Lab) -> None:
    world = PodOnLan(lab)
    lab.run(world.netns["pod"], "ip", "-4", "addr", "flush", "dev", "net1")

    with pytest.raises(DiagnoseError, match="net1 has no IPv4 address"):
        run(world, world.device_ip)
