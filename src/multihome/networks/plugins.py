"""Are the plugins a pod's networks name installed, and do they speak the networks' version?

Before any plugin runs, the engine looks every plugin type (and IPAM type)
of every attachment up in the bin dirs and asks each binary VERSION once
(cached per binary and mtime); this module turns what it learnt, a `Probe`
per type, into findings.  So a NAD naming a plugin that is not installed
stops the ADD before any network is attached, with every such problem in
one error, instead of failing half-way and rolling back.  libcni has the
same check (``ValidateNetworkList``) but runtimes do not call it before ADD.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from multihome.cni.output import PluginInfo

from .attachment import Attachment
from .findings import Finding, Findings


@dataclass(frozen=True, eq=False)
class Probe:
    """What the bin dirs said about one plugin type."""

    #: The binary libcni would run; "" when no bin dir has it.
    path: str = ""
    #: Its VERSION answer; None when it could not be asked (see `problem`).
    info: PluginInfo | None = None
    #: Why it could not be asked: it cannot be executed, or VERSION failed.
    problem: str = ""
    #: False when the file exists but exec fails (mode, format, interpreter).
    executable: bool = True


@dataclass(frozen=True, eq=False)
class _Use:
    """One place a plugin type is used: which network, at which path, in which version."""

    plugin_type: str
    network: str
    path: str
    cni_version: str


def _uses(attachments: Iterable[Attachment]) -> list[_Use]:
    out = []
    for attachment in attachments:
        source = attachment.network.source or attachment.path
        base = f"{source}.spec.config" if source.startswith("nad[") else source
        conf = attachment.conf
        for index, plugin in enumerate(conf.plugins):
            where = f"{base}.plugins[{index}]" if attachment.is_list else base
            out.append(_Use(plugin.type, attachment.name, f"{where}.type", conf.cni_version))
            if plugin.ipam_type:
                out.append(
                    _Use(plugin.ipam_type, attachment.name, f"{where}.ipam.type", conf.cni_version)
                )
    return out


def plugin_types(attachments: Iterable[Attachment]) -> list[str]:
    """Every plugin and IPAM type the attachments use, each once, in order."""
    return list(dict.fromkeys(use.plugin_type for use in _uses(attachments)))


def plugin_findings(
    attachments: Sequence[Attachment], probes: Mapping[str, Probe], *, cni_path: Sequence[str]
) -> list[Finding]:
    """Every problem with the plugins the attachments would run (types without a probe pass)."""
    findings = Findings()
    for use in _uses(attachments):
        probe = probes.get(use.plugin_type)
        if probe is not None:
            add_probe_findings(
                findings,
                probe,
                plugin_type=use.plugin_type,
                network=use.network,
                path=use.path,
                cni_version=use.cni_version,
                cni_path=cni_path,
            )
    return findings.as_list()


def add_probe_findings(
    findings: Findings,
    probe: Probe,
    *,
    plugin_type: str,
    network: str,
    path: str,
    cni_version: str,
    cni_path: Sequence[str],
) -> None:
    """What one probe says about one use of a plugin type (the ADD's check and lint's)."""
    what = f"plugin {plugin_type!r} of network {network!r}"
    if not probe.path:
        dirs = " ".join(p for p in cni_path if p)
        findings.add("plugin-not-found", path, f"{what} is not installed in [{dirs}]")
    elif not probe.executable:
        findings.add("plugin-not-executable", path, f"{what}: {probe.problem}")
    elif probe.info is None:
        findings.add(
            "plugin-version-unknown",
            path,
            f"{what} did not answer VERSION ({probe.problem}); it is run anyway",
        )
    elif not probe.info.supports(cni_version):
        findings.add(
            "plugin-version-unsupported",
            path,
            f"{what} ({probe.path}) supports CNI versions "
            f"{', '.join(probe.info.supported_versions)}, not the network's {cni_version}",
        )
