"""``multihome lint``: the ADD's findings, and more, before a pod exists.

Every object of the input is checked on its own exactly as an ADD would
check it (`multihome.networks.preflight`), then against the others
(`multihome.networks.collisions`), then, on a node, against the node
(`node`).  The result is a `Report`: the findings grouped by object, with
the file and line each object came from, rendered like a compiler's
diagnostics or as JSON (docs/lint.md documents both and the exit codes).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from multihome.cni.errors import CNIError
from multihome.daemon.config import DaemonConfig, DaemonConfigError
from multihome.engine.conffiles import DiskFiles
from multihome.networks import addressing, collisions, preflight
from multihome.networks.confdir import ConfFiles
from multihome.networks.config import DEFAULT_MULTUS_NAMESPACE, MultusConfig
from multihome.networks.findings import Finding, finding
from multihome.networks.nad import Network, check_conf, parse_config_text, resolve_network

from . import node as nodes
from .manifests import (
    CNI_CONFIG,
    DAEMON_CONFIG,
    MULTUS_CONFIG,
    NAD_KIND,
    InputError,
    Located,
)

SCHEMA = "multihome.lint/v1"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_COLOURS = {"error": "red", "warning": "yellow", "info": "cyan"}


def default_config() -> MultusConfig:
    """The multus configuration lint assumes when the input has none (Multus' defaults)."""
    return MultusConfig(cni_version="1.0.0", name="multus-cni-network")


@dataclass
class Subject:
    """One object of the input and what was found about it."""

    item: Located
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        item = self.item
        return {
            "kind": item.kind,
            "workload": item.workload,
            "namespace": item.namespace if item.kind not in _CONFIG_KINDS else "",
            "name": item.name,
            "file": item.file,
            "line": item.line,
            "findings": [f.to_dict() for f in self.findings],
        }


_CONFIG_KINDS = (MULTUS_CONFIG, DAEMON_CONFIG, CNI_CONFIG, "Node")


@dataclass
class Options:
    config: MultusConfig | None = None
    cluster_cidrs: Sequence[IPNetwork] = ()
    node: nodes.Node | None = None
    files: ConfFiles = field(default_factory=DiskFiles)


async def lint(objects: Sequence[Located], options: Options) -> list[Subject]:
    """Every finding about the objects, grouped by object (in input order)."""
    subjects = [Subject(item) for item in objects]
    config = options.config
    networks: list[tuple[int, Network]] = []
    for index, subject in enumerate(subjects):
        item = subject.item
        if item.kind == MULTUS_CONFIG:
            parsed = _multus_config(subject)
            if config is None and parsed is not None:
                config = parsed
        elif item.kind == DAEMON_CONFIG:
            _daemon_config(subject)
        elif item.kind == CNI_CONFIG:
            network = _cni_config(subject, options)
            if network is not None:
                networks.append((index, network))
    config = config or default_config()

    nads: dict[tuple[str, str], Any] = {}
    for index, subject in enumerate(subjects):
        if subject.item.kind != NAD_KIND:
            continue
        item = subject.item
        network, found = preflight.check_nad(
            item.obj,
            files=options.files,
            conf_dir=config.conf_dir,
            cluster_cidrs=options.cluster_cidrs,
        )
        subject.findings.extend(found)
        nads[(item.namespace or "default", item.name)] = item.obj
        if network is not None:
            networks.append((index, network))

    claims = []
    for index, subject in enumerate(subjects):
        item = subject.item
        if item.kind != "Pod":
            continue
        namespace = item.namespace or "default"
        plan, found = preflight.check_pod(
            config=config,
            pod=item.obj,
            nads=lambda ns, name: nads.get((ns, name)),
            files=options.files,
            namespace=namespace,
        )
        subject.findings.extend(found)
        selections = [a.selection for a in plan.attachments if a.selection is not None]
        claims.append((index, f"{item.title}", item.copies, selections))

    for index, found_one in collisions.range_overlaps(networks):
        subjects[index].findings.append(found_one)
    for index, found_one in collisions.ip_claims(claims):
        subjects[index].findings.append(found_one)

    if options.node is not None:
        subjects.extend(await _node_checks(options.node, subjects, networks, config, nads))
    for subject in subjects:
        subject.findings.sort(key=lambda f: _SEVERITY_ORDER.get(f.severity, 3))
    return subjects


def _multus_config(subject: Subject) -> MultusConfig | None:
    item = subject.item
    try:
        config = MultusConfig.parse(json.dumps(item.obj) if not item.text else item.text)
    except CNIError as err:
        subject.findings.append(finding("config-invalid", "", err.msg, hint=err.details or None))
        return None
    subject.findings.extend(config.notices)
    return config


def _daemon_config(subject: Subject) -> None:
    item = subject.item
    try:
        DaemonConfig.parse(item.text or json.dumps(item.obj), path=item.file, environ={})
    except DaemonConfigError as err:
        subject.findings.append(finding("config-invalid", "", str(err)))


def _cni_config(subject: Subject, options: Options) -> Network | None:
    item = subject.item
    path = item.file or "conf"
    conf, is_list, found = parse_config_text(
        item.text or json.dumps(item.obj), default_name=item.name, path=path
    )
    subject.findings.extend(found)
    if conf is None:
        return None
    subject.findings.extend(check_conf(conf, is_list=is_list, path=path))
    network = Network(conf.name, conf, is_list, source=path)
    subject.findings.extend(addressing.check_network(network, cluster_cidrs=options.cluster_cidrs))
    return network


async def _node_checks(
    node: nodes.Node,
    subjects: list[Subject],
    networks: list[tuple[int, Network]],
    config: MultusConfig,
    nads: dict[tuple[str, str], Any],
) -> list[Subject]:
    for index, network in networks:
        subjects[index].findings.extend(
            await nodes.check_network(node, network, path=addressing.conf_path(network))
        )
    host = Subject(Located("Node", {"name": "(this node)"}))
    if config.cluster_network:
        primary, found = resolve_network(
            config.cluster_network,
            namespace=config.multus_namespace or DEFAULT_MULTUS_NAMESPACE,
            nads=lambda ns, name: nads.get((ns, name)),
            files=DiskFiles(),
            conf_dir=node.conf_dir,
            path="clusterNetwork",
        )
        host.findings.extend(found)
        if primary is not None:
            host.findings.append(
                finding(
                    "primary-config",
                    "clusterNetwork",
                    f"the cluster network is {primary.source or primary.name} "
                    f"(network {primary.conf.name!r})",
                )
            )
    else:
        primary, found = nodes.primary_config(node, DiskFiles())
        host.findings.extend(found)
    if primary is not None:
        host.findings.extend(await nodes.check_network(node, primary, path="clusterNetwork"))
    return [host]


# -- the report ------------------------------------------------------------------------


@dataclass
class Report:
    subjects: list[Subject]
    input_errors: list[InputError] = field(default_factory=list)
    strict: bool = False

    def count(self, severity: str) -> int:
        return sum(1 for s in self.subjects for f in s.findings if f.severity == severity)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 error findings (or warnings with ``--strict``), 2 unreadable input."""
        if self.input_errors:
            return 2
        if self.count("error") or (self.strict and self.count("warning")):
            return 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "objects": [s.to_dict() for s in self.subjects],
            "inputErrors": [
                {"file": e.file, "line": e.line, "column": e.column, "message": e.message}
                for e in self.input_errors
            ],
            "summary": {
                "objects": len(self.subjects),
                "errors": self.count("error"),
                "warnings": self.count("warning"),
                "info": self.count("info"),
            },
            "exitCode": self.exit_code,
        }

    def render(self) -> str:
        """Compiler-style text; ANSI colours that `click.echo` strips off a terminal."""
        lines: list[str] = []
        for error in self.input_errors:
            where = error.file + "".join(f":{n}" for n in (error.line, error.column) if n)
            label = click.style("error[input-unreadable]", fg="red", bold=True)
            lines.append(f"{where}: {label} {error.message}")
        for subject in self.subjects:
            if not subject.findings:
                continue
            where = f"{subject.item.where}: " if subject.item.where else ""
            lines.append(where + click.style(subject.item.title, bold=True))
            for item in subject.findings:
                label = click.style(f"{item.severity}[{item.code}]", fg=_COLOURS[item.severity])
                path = f" {item.path}:" if item.path else ""
                lines.append(f"  {label}{path} {item.message}")
                if item.hint:
                    lines.append(f"      hint: {item.hint}")
        checked = len(self.subjects)
        errors, warnings, info = self.count("error"), self.count("warning"), self.count("info")
        summary = (
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}, "
            f"{info} info in {checked} object{'s' * (checked != 1)}"
        )
        if self.input_errors:
            summary += f"; {len(self.input_errors)} input(s) could not be read"
        lines.append(summary)
        return "\n".join(lines)


# -- the command -----------------------------------------------------------------------

DEFAULT_BIN_DIRS = ("/opt/cni/bin",)
DEFAULT_CONF_DIR = "/etc/cni/net.d"


def parse_cidrs(values: Sequence[str]) -> list[IPNetwork]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a subnet such as 10.96.0.0/12") from None
    return out


def make_node(node: bool | None, bin_dirs: Sequence[str], conf_dir: str) -> nodes.Node | None:
    """The node to check: ``--node``, or automatically when its bin and conf dirs exist."""
    import os

    dirs = tuple(bin_dirs) or DEFAULT_BIN_DIRS
    if node is None:
        node = all(os.path.isdir(d) for d in dirs) and os.path.isdir(conf_dir)
    return nodes.Node(bin_dirs=dirs, conf_dir=conf_dir) if node else None


def main(
    paths: Sequence[str],
    *,
    cluster: bool,
    kubeconfig: str,
    namespace: str,
    output: str,
    strict: bool,
    node: bool | None,
    bin_dirs: Sequence[str],
    conf_dir: str,
    cluster_cidrs: Sequence[str],
) -> int:
    import asyncio

    from . import manifests
    from .cluster import ClusterError
    from .cluster import load as load_cluster

    if not paths and not cluster:
        click.echo("multihome lint: give files or directories, or --cluster", err=True)
        return 2
    objects, problems = manifests.load(paths)
    if cluster:
        try:
            objects += asyncio.run(load_cluster(kubeconfig=kubeconfig, namespace=namespace))
        except ClusterError as err:
            problems.append(InputError("cluster", str(err)))
    if namespace:
        objects = [o for o in objects if o.kind in _CONFIG_KINDS or o.namespace == namespace]
    options = Options(
        cluster_cidrs=parse_cidrs(cluster_cidrs), node=make_node(node, bin_dirs, conf_dir)
    )
    report = Report(asyncio.run(lint(objects, options)), problems, strict=strict)
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render())
    return report.exit_code
