"""A node with a pod on a LAN, in namespaces: the topology of `multihome diagnose`'s story.

Everything lives in lab namespaces, so no frame leaves the machine and no
rule touches the root namespace:

    pod ── eth0 (10.244.1.5/32, default via 169.254.1.1, Calico style) ── cali… ─┐
     └──── net1 (macvlan, bridge mode, on the node's eth1) ─┐                    node
                                                             eth1 ── lan bridge ── device (eth0)

``node`` holds the parent ``eth1``, a ``vxlan.calico`` overlay (when the
kernel has vxlan) and the host end of the pod's eth0; ``lan`` holds the
bridge that plays the switch; ``device`` is the target on the LAN.  The
pod's attachment record is written with the engine's own cache classes,
in the format the engine writes, so `diagnose` finds the pod as on a node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from multihome.engine.cache import AttachmentCache, CachedAttachment, CacheRecord

from .lab import Lab, Netns, supports

POD_ETH0 = "10.244.1.5"
GATEWAY = "169.254.1.1"


@dataclass
class PodOnLan:
    lab: Lab
    subnet: str = "192.168.60"  # the LAN's first three octets
    pod_host: int = 20
    device_host: int = 5
    node_host: int = 0  # 0: the node has no address on the LAN
    netns: dict[str, Netns] = field(default_factory=dict)
    cache_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        lab = self.lab
        for role in ("node", "lan", "pod", "device"):
            self.netns[role] = lab.netns(role)
        node, pod = self.netns["node"], self.netns["pod"]
        lab.run(self.netns["lan"], "ip", "link", "add", "br0", "type", "bridge")
        lab.run(self.netns["lan"], "ip", "link", "set", "br0", "up")
        self.plug(node, "eth1")
        self.plug(self.netns["device"], "eth0", f"{self.pod_ip_prefix(self.device_host)}")
        if self.node_host:
            lab.address(node, "eth1", self.pod_ip_prefix(self.node_host))
        # The cluster network: a /32 behind a link-local gateway, as Calico does it.
        lab.veth(a=node, b=pod, a_name="calipod0", b_name="eth0")
        lab.address(pod, "eth0", f"{POD_ETH0}/32")
        lab.run(pod, "ip", "route", "add", f"{GATEWAY}/32", "dev", "eth0", "scope", "link")
        lab.run(pod, "ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0")
        lab.run(node, "ip", "route", "add", f"{POD_ETH0}/32", "dev", "calipod0")
        lab.run(node, "sysctl", "-qw", "net.ipv4.conf.calipod0.proxy_arp=1")
        if supports("vxlan"):
            lab.run(
                node,
                "ip",
                "link",
                "add",
                "vxlan.calico",
                "type",
                "vxlan",
                "id",
                "4096",
                "dstport",
                "4789",
                "dev",
                "eth1",
            )
            lab.run(node, "ip", "link", "set", "vxlan.calico", "up")
            # Calico's route to another node's pod block, through the overlay.
            lab.run(
                node,
                "ip",
                "route",
                "add",
                "10.244.2.0/26",
                "via",
                "10.244.2.0",
                "dev",
                "vxlan.calico",
                "onlink",
            )
        # net1: a macvlan child of the node's eth1, moved into the pod.
        lab.run(
            node, "ip", "link", "add", "mv0", "link", "eth1", "type", "macvlan", "mode", "bridge"
        )
        lab.run(node, "ip", "link", "set", "mv0", "netns", pod.name)
        lab.run(pod, "ip", "link", "set", "mv0", "name", "net1")
        lab.run(pod, "ip", "link", "set", "net1", "up")
        lab.address(pod, "net1", self.pod_ip_prefix(self.pod_host))
        self.cache_dir = lab.tmpdir()
        self.write_record()

    # -- building -----------------------------------------------------------------------
    def pod_ip_prefix(self, host: int) -> str:
        return f"{self.subnet}.{host}/24"

    def ip(self, host: int) -> str:
        return f"{self.subnet}.{host}"

    @property
    def pod_ip(self) -> str:
        return self.ip(self.pod_host)

    @property
    def device_ip(self) -> str:
        return self.ip(self.device_host)

    def plug(self, ns: Netns, name: str, cidr: str = "") -> None:
        """A link ``name`` in ``ns`` whose other end is a port of the LAN bridge."""
        lan = self.netns["lan"]
        port, _ = self.lab.veth(a=lan, b=ns, b_name=name)
        self.lab.run(lan, "ip", "link", "set", port, "master", "br0")
        if cidr:
            self.lab.address(ns, name, cidr)

    def mac(self, role: str, ifname: str) -> str:
        return self.lab.links(self.netns[role])[ifname].mac

    def write_record(self) -> None:
        pod = self.netns["pod"]
        macvlan = {
            "cniVersion": "1.0.0",
            "name": "lan",
            "plugins": [
                {
                    "type": "macvlan",
                    "master": "eth1",
                    "mode": "bridge",
                    "ipam": {"type": "static"},
                }
            ],
        }
        result = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "net1", "mac": self.mac("pod", "net1"), "sandbox": pod.path}],
            "ips": [{"address": self.pod_ip_prefix(self.pod_host), "interface": 0}],
        }
        record = CacheRecord(
            container_id=f"{self.lab.prefix}sandbox",
            netns=pod.path,
            ifname="eth0",
            cni_version="1.0.0",
            pod_namespace="default",
            pod_name="web",
            pod_uid="0f0f0f0f-0000-4000-8000-000000000001",
            attachments=[
                CachedAttachment("cluster", "eth0", "{}", [], {}, primary=True, state="added"),
                CachedAttachment(
                    "default/lan",
                    "net1",
                    json.dumps(macvlan),
                    [],
                    {},
                    state="added",
                    result=result,
                ),
            ],
        )
        AttachmentCache(self.cache_dir).save(record)

    def sysctl(self, role: str, key: str, value: str) -> None:
        self.lab.run(self.netns[role], "sysctl", "-qw", f"{key}={value}")


def add_router(world: PodOnLan, *, lan_host: int = 1, far: str = "192.168.70") -> str:
    """A router on the LAN (``.1``) to a second subnet with a device at ``.5``; that device's IP."""
    lab = world.lab
    router, plc = lab.netns("router"), lab.netns("plc")
    world.plug(router, "eth0", world.pod_ip_prefix(lan_host))
    lab.veth(a=router, b=plc, a_name="eth1", b_name="eth0")
    lab.address(router, "eth1", f"{far}.1/24")
    lab.address(plc, "eth0", f"{far}.5/24")
    lab.run(plc, "ip", "route", "add", "default", "via", f"{far}.1")
    lab.run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    world.netns.update(router=router, plc=plc)
    return f"{far}.5"


def _diagnose(world: PodOnLan, *argv: str) -> str:
    shown = " ".join(["multihome", "diagnose", "default/web", *argv])
    lab_only = ["--cache-dir", str(world.cache_dir), "--node-netns", world.netns["node"].path]
    proc = subprocess.run(
        [sys.executable, "-m", "multihome", "diagnose", "default/web", *argv, *lab_only],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"$ {shown}\n{proc.stdout}{proc.stderr}(exit {proc.returncode})\n"


def story(capture: str = "2") -> list[str]:
    """docs/diagnose.md's walk-through: each `multihome diagnose` run with its output."""
    from .lab import lab

    out = []
    with lab() as the_lab:
        world = PodOnLan(the_lab, node_host=10)
        plc = add_router(world)
        the_lab.run(world.netns["node"], "ip", "route", "add", "default", "via", world.ip(1))
        world.sysctl("pod", "net.ipv4.conf.all.rp_filter", "1")
        out.append(_diagnose(world, "--target", world.device_ip, "--capture", capture))
        out.append(_diagnose(world, "--target", plc, "--capture", capture))
        # The fix: what "routes" in the NAD's IPAM section puts into the pod.
        the_lab.run(
            world.netns["pod"],
            "ip",
            "route",
            "add",
            "192.168.70.0/24",
            "via",
            world.ip(1),
            "dev",
            "net1",
        )
        out.append(_diagnose(world, "--target", plc, "--capture", capture))
    return out


if __name__ == "__main__":
    print("\n".join(story()))
