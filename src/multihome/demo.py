"""`multihome demo`: a pod attached to an IoT LAN, step by step, in network namespaces.

Everything happens in namespaces and links that the demo makes and removes
again: a LAN bridge with a "device" at 192.168.50.1, a cluster network
(bridge + host-local), the NAD operators use for IoT VLANs (macvlan with
static IPAM and a route, then tuning for the MAC), and pod sandboxes that
the container runtime would create.  multihome is called the way a runtime
calls it, through the real entry point.  Nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .cni.errors import CNIError
from .testing.daemon import DaemonProcess, shim_binary
from .testing.lab import Lab, is_root
from .testing.world import Mode, World

DEVICE = "192.168.50.1"
POD_IP = "192.168.50.8/24"
POD_MAC = "02:42:c0:a8:32:08"
BAD_MAC = "f1:fd:59:0b:bd:2b"


def _step(number: int, text: str) -> None:
    click.echo()
    click.secho(f"{number}. {text}", bold=True)


def _say(text: str) -> None:
    click.echo(f"   {text}")


def _show(value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, indent=2)
    for line in text.rstrip().splitlines():
        click.secho(f"     {line}", fg="cyan")


def run(mode: Mode | None = None) -> int:
    """The demo through the shim and the daemon (the thin plugin if the shim is not built)."""
    if not is_root():
        click.echo("multihome demo needs root: it creates network namespaces.", err=True)
        return 1
    if mode is None:
        mode = "shim" if shim_binary().exists() else "thin"
    if mode != "shim":
        return _run(mode)
    with DaemonProcess() as daemon:
        click.echo(f"multihome daemon started (socket {daemon.socket_path})")
        return _run(mode, socket_dir=daemon.socket_dir)


def _run(mode: Mode, socket_dir: str = "") -> int:
    with Lab() as lab:
        _step(1, "A node: a LAN with one device on it, and a pod sandbox")
        lan = lab.bridge("lan")
        device = lab.netns("device")
        lab.veth(a=None, b=device, b_name="eth0", bridge=lan)
        lab.address(device, "eth0", f"{DEVICE}/24")
        _say(f"LAN bridge {lan}; a device namespace {device.name} at {DEVICE}")

        world = World(lab, mode=mode, socket_dir=socket_dir)
        _say(f"cluster network (bridge + host-local, {world.cluster_subnet}): {world.cluster_conf}")
        world.macvlan_nad(
            "iot-vlan",
            master=lan,
            static=True,
            tuning=True,
            routes=[{"dst": "192.168.60.0/24", "gw": DEVICE}],
        )
        _say("NetworkAttachmentDefinition default/iot-vlan:")
        nad = json.loads((world.manifests / "nad-default-iot-vlan.json").read_text())
        _show(json.loads(nad["spec"]["config"]))

        _step(2, "The pod asks for iot-vlan with a static IP and MAC")
        request = [{"name": "iot-vlan", "ips": [POD_IP], "mac": POD_MAC}]
        _show({"k8s.v1.cni.cncf.io/networks": json.dumps(request)})
        pod = world.pod("sensor-reader", request)
        _say(f"the runtime runs CNI ADD for {pod.namespace}/{pod.pod} ({_entry(mode)})")
        world.add(pod)

        _step(3, "What the pod got")
        for name, link in lab.links(pod.netns).items():
            if name != "lo":
                _say(f"{name:5} {link.kind:8} {link.mac}  {' '.join(link.addresses)}")
        _say("network-status annotation:")
        _show(world.network_status(pod))
        for event in world.events():
            _say(f"event {event['type']} {event['reason']}: {event['message']}")

        _step(4, f"The pod reaches the device at {DEVICE} through net1")
        ok = lab.ping(pod.netns, DEVICE, count=2)
        _say(
            "ping: "
            + click.style("replies received" if ok else "no reply", fg="green" if ok else "red")
        )

        _step(5, f"Another pod asks for the multicast MAC {BAD_MAC}")
        bad = world.pod(
            "bad-mac", [{"name": "iot-vlan", "ips": ["192.168.50.9/24"], "mac": BAD_MAC}]
        )
        _say("Multus passes it to macvlan, and the pod hangs in ContainerCreating with")
        _say('"failed to create macvlan: cannot assign requested address". multihome says:')
        try:
            world.add(bad)
            _say(click.style("unexpectedly accepted", fg="red"))
            ok = False
        except CNIError as err:
            _show(err.to_dict())
        left = sorted(n for n in lab.links(bad.netns) if n != "lo")
        _say(f"interfaces left in that pod: {left or 'none'}; cached: {world.cached_containers()}")

        _step(6, "The pod is deleted: CNI DEL")
        world.delete(pod)
        left = sorted(n for n in lab.links(pod.netns) if n != "lo")
        cached = world.cached_containers() or "none"
        _say(f"interfaces left: {left or 'none'}; cached attachments: {cached}")

        _step(7, "Tearing the lab down")
    _say("done: every namespace and link of the demo is gone.")
    return 0 if ok else 1


def _entry(mode: Mode) -> str:
    return {
        "thin": "through the thin plugin multihome-cni",
        "shim": "through multihome-shim and the daemon",
        "engine": "through the engine in this process",
    }[mode]


if __name__ == "__main__":
    sys.exit(run(os.environ.get("MULTIHOME_DEMO_MODE") or None))  # type: ignore[arg-type]
