"""The invoking layer drives Debian's reference CNI plugins in real namespaces.

Every case runs ADD -> CHECK (where the version has it) -> DEL, for every
spec version the plugin says it supports, and looks at the namespace (and
host-local's store) rather than only at what the plugins return.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multihome.cni import version as versions
from multihome.cni.config import NetConfList, parse_network
from multihome.cni.invoking import (
    add_network_list,
    check_network_list,
    del_network_list,
    version_info,
)
from multihome.cni.process import RuntimeConf
from multihome.cni.result import Result
from multihome.testing.lab import CNI_BIN_DIR, Lab, Netns

pytestmark = pytest.mark.netns

MAC = "02:aa:bb:cc:dd:ee"


def supported(*plugins: str) -> list[str]:
    """The versions every one of ``plugins`` answers to VERSION (none if one is missing)."""
    if not Path(CNI_BIN_DIR).is_dir():
        return []

    async def ask() -> set[str]:
        found = set(versions.ALL)
        for plugin in plugins:
            info = await version_info(plugin, cni_path=[CNI_BIN_DIR])
            found &= set(info.supported_versions)
        return found

    try:
        common = asyncio.run(ask())
    except Exception:
        return []
    return sorted(common, key=versions.parse)


@dataclass
class Pod:
    """One attachment in a fresh namespace, and the calls a runtime would make for it."""

    lab: Lab
    ns: Netns
    ifname: str = "net1"

    def runtime(self, **capability_args: Any) -> RuntimeConf:
        return RuntimeConf(
            container_id=f"{self.lab.prefix}-ctr",
            netns=self.ns.path,
            ifname=self.ifname,
            args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")),
            capability_args=capability_args,
            cni_path=(CNI_BIN_DIR,),
        )

    async def add_and_check(self, net: NetConfList, **capability_args: Any) -> Result:
        rt = self.runtime(**capability_args)
        result = await add_network_list(net, rt)
        if versions.allows_check(net.cni_version):
            await check_network_list(net, rt, prev_result=result)
        return result

    async def delete(self, net: NetConfList, result: Result | None = None) -> None:
        await del_network_list(net, self.runtime(), prev_result=result)

    def link(self) -> Any:
        return self.lab.links(self.ns).get(self.ifname)


@pytest.fixture
def pod(lab: Lab) -> Iterator[Pod]:
    yield Pod(lab, lab.netns("pod"))


def network(version: str, name: str, *plugins: dict[str, Any]) -> NetConfList:
    if len(plugins) == 1:
        return parse_network(json.dumps({"cniVersion": version, "name": name, **plugins[0]}))
    return parse_network(json.dumps({"cniVersion": version, "name": name, "plugins": plugins}))


# -- macvlan + static ---------------------------------------------------------------------


def macvlan_static(version: str, parent: str) -> NetConfList:
    ipam = {"type": "static", "addresses": [{"address": "10.77.1.5/24", "gateway": "10.77.1.1"}]}
    return network(
        version, "mv", {"type": "macvlan", "master": parent, "mode": "bridge", "ipam": ipam}
    )


@pytest.mark.parametrize("version", supported("macvlan", "static"))
async def test_macvlan_with_static_ipam(lab: Lab, pod: Pod, version: str) -> None:
    net = macvlan_static(version, lab.macvlan_parent())
    result = await pod.add_and_check(net)
    link = pod.link()
    assert link is not None
    assert link.kind == "macvlan"
    assert link.addresses == ["10.77.1.5/24"]
    assert [ip.address for ip in result.ips] == ["10.77.1.5/24"]
    await pod.delete(net, result)
    assert pod.link() is None


async def test_macvlan_del_without_add(lab: Lab, pod: Pod) -> None:
    net = macvlan_static("1.0.0", lab.macvlan_parent())
    await pod.delete(net)
    assert pod.link() is None


# -- bridge + host-local ------------------------------------------------------------------


def bridge_host_local(version: str, bridge: str, data_dir: Path) -> NetConfList:
    ipam = {"type": "host-local", "subnet": "10.77.2.0/24", "dataDir": str(data_dir)}
    # No ipMasq and no gateway on the host: lab traffic stays between lab namespaces.
    conf = {"type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False, "ipam": ipam}
    return network(version, "br", conf)


def allocations(data_dir: Path) -> dict[str, str]:
    """host-local's store: one file per leased address, holding the container ID."""
    store = data_dir / "br"
    if not store.is_dir():
        return {}
    return {p.name: p.read_text() for p in store.iterdir() if p.name.startswith("10.")}


@pytest.mark.parametrize("version", supported("bridge", "host-local"))
async def test_bridge_with_host_local_ipam(lab: Lab, pod: Pod, version: str) -> None:
    data_dir = lab.tmpdir()
    net = bridge_host_local(version, lab.name("br"), data_dir)
    result = await pod.add_and_check(net)
    address = result.ips[0].address
    assert address.startswith("10.77.2.")
    link = pod.link()
    assert link is not None
    assert link.kind == "veth"
    assert link.addresses == [address]
    leased = allocations(data_dir)
    assert list(leased) == [address.split("/")[0]]
    assert pod.runtime().container_id in leased[address.split("/")[0]]
    assert lab.links(None)[lab.name("br")].kind == "bridge"
    await pod.delete(net, result)
    assert pod.link() is None
    assert allocations(data_dir) == {}


async def test_bridge_del_without_add(lab: Lab, pod: Pod) -> None:
    data_dir = lab.tmpdir()
    await pod.delete(bridge_host_local("1.0.0", lab.name("br"), data_dir))
    assert allocations(data_dir) == {}


# -- macvlan -> tuning, the MAC from runtimeConfig --------------------------------------


def macvlan_tuning(version: str, parent: str) -> NetConfList:
    ipam = {"type": "static", "addresses": [{"address": "10.77.3.5/24"}]}
    return network(
        version,
        "mvtune",
        {"type": "macvlan", "master": parent, "mode": "bridge", "ipam": ipam},
        {"type": "tuning", "capabilities": {"mac": True}},
    )


@pytest.mark.parametrize("version", supported("macvlan", "static", "tuning"))
async def test_tuning_sets_the_mac_it_declares_the_capability_for(
    lab: Lab, pod: Pod, version: str
) -> None:
    net = macvlan_tuning(version, lab.macvlan_parent())
    result = await pod.add_and_check(net, mac=MAC, portMappings=[{"hostPort": 80}])
    link = pod.link()
    assert link is not None
    assert link.mac == MAC
    assert link.addresses == ["10.77.3.5/24"]
    if versions.at_least(version, "0.3.0"):  # older results have no interfaces
        assert [i.mac for i in result.interfaces if i.name == pod.ifname] == [MAC]
    await pod.delete(net, result)
    assert pod.link() is None
