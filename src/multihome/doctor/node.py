"""Checks that only make sense on a node: binaries, their versions, links, the primary CNI.

A NAD can be perfect and still fail on a node where the macvlan binary is
missing, is too old for the NAD's cniVersion, or where its ``master`` link
does not exist.  These checks run the plugins' VERSION command only (asked
as the ADD asks, `multihome.engine.probing`) and read links from
/sys/class/net; nothing is changed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from multihome.cni.errors import CNIError
from multihome.cni.process import Exec, default_exec
from multihome.engine.probing import probe_plugin
from multihome.networks import confdir
from multihome.networks.confdir import ConfFiles
from multihome.networks.findings import Finding, Findings
from multihome.networks.nad import Network
from multihome.networks.plugins import add_probe_findings

SYS_CLASS_NET = "/sys/class/net"
_IFF_UP = 0x1
#: Plugin types whose configuration names a host link, and the key that names it.
_LINK_KEYS = {"macvlan": "master", "ipvlan": "master", "host-device": "device"}
#: Plugins whose own configuration file is not the cluster network (the meta plugins).
_META_TYPES = ("multus", "multus-shim", "multihome", "multihome-shim")


@dataclass
class Node:
    """Where the node keeps its CNI binaries and configuration."""

    bin_dirs: Sequence[str]
    conf_dir: str
    executor: Exec = field(default_factory=default_exec)
    sys_class_net: str = SYS_CLASS_NET


def link_state(node: Node, name: str) -> bool | None:
    """Whether the link is up; None when it does not exist."""
    try:
        with open(os.path.join(node.sys_class_net, name, "flags")) as handle:
            flags = int(handle.read().strip(), 16)
    except (OSError, ValueError):
        return None
    return bool(flags & _IFF_UP)


async def check_network(node: Node, network: Network, *, path: str) -> list[Finding]:
    """Every binary of the network's chain, its VERSION, and the links it names."""
    findings = Findings()
    version = network.conf.cni_version
    for index, plugin in enumerate(network.conf.plugins):
        where = f"{path}.plugins[{index}]" if network.is_list else path
        types = [(f"{where}.type", plugin.type), (f"{where}.ipam.type", plugin.ipam_type)]
        for type_path, plugin_type in types:
            if plugin_type:
                findings.extend(await _check_binary(node, plugin_type, network, version, type_path))
        key = _LINK_KEYS.get(plugin.type)
        link = plugin.raw.get(key) if key else None
        if isinstance(link, str) and link:
            state = link_state(node, link)
            if state is None:
                findings.add(
                    "master-not-found",
                    f"{where}.{key}",
                    f"{plugin.type} {key} {link!r} of network {network.name} does not exist "
                    "on this node",
                )
            elif not state:
                findings.add(
                    "master-down",
                    f"{where}.{key}",
                    f"{plugin.type} {key} {link!r} of network {network.name} is down",
                )
    return findings.as_list()


async def _check_binary(
    node: Node, plugin_type: str, network: Network, version: str, path: str
) -> list[Finding]:
    findings = Findings()
    add_probe_findings(
        findings,
        await probe_plugin(node.executor, plugin_type, node.bin_dirs),
        plugin_type=plugin_type,
        network=network.name,
        path=path,
        cni_version=version,
        cni_path=node.bin_dirs,
    )
    return findings.as_list()


def primary_config(node: Node, files: ConfFiles) -> tuple[Network | None, list[Finding]]:
    """The CNI configuration an automatic clusterNetwork would use: the first that is not ours."""
    findings = Findings()
    names = sorted(
        n for n in files.list_dir(node.conf_dir) or () if n.endswith(confdir.CONF_EXTENSIONS)
    )
    for name in names:
        file = os.path.join(node.conf_dir, name)
        data = files.read(file)
        if data is None:
            continue
        try:
            loaded = confdir.parse_file(files, file, data=data)
        except CNIError as err:
            findings.add("conf-file-invalid", "clusterNetwork", f"skipped {file}: {err.msg}")
            continue
        if any(p.type in _META_TYPES for p in loaded.conf.plugins):
            continue
        findings.add(
            "primary-config",
            "clusterNetwork",
            f"the cluster network is {file} (network {loaded.conf.name!r}, "
            f"{', '.join(p.type for p in loaded.conf.plugins)})",
        )
        network = Network(loaded.conf.name, loaded.conf, loaded.is_list, source=file)
        return network, findings.as_list()
    findings.add(
        "primary-config-not-found",
        "clusterNetwork",
        f"no CNI configuration in {node.conf_dir} other than multus' own",
    )
    return None, findings.as_list()
