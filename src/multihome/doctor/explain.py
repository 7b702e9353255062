"""``multihome explain POD``: the ADD of a pod, planned and printed, nothing run.

The plan is the engine's own (`multihome.networks.attachment.plan_pod`, via
`preflight.check_pod`), and each plugin's stdin is built by the function
the ADD uses (`multihome.cni.invoking.build_plugin_conf`), with the
previous plugin's result replaced by a placeholder: what is printed is what
the plugins would read.  No plugin runs; nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from multihome.cni.config import RawJSON
from multihome.cni.errors import CNIError
from multihome.cni.finding import find_plugin
from multihome.cni.invoking import build_plugin_conf
from multihome.cni.process import RuntimeConf, plugin_env
from multihome.engine.conffiles import DiskFiles
from multihome.networks import preflight
from multihome.networks.attachment import Attachment, PodPlan, dry_plan
from multihome.networks.config import MultusConfig
from multihome.networks.findings import Finding

from .lint import default_config
from .manifests import MULTUS_CONFIG, NAD_KIND, Located

SCHEMA = "multihome.explain/v1"
#: What CNI_CONTAINERID and CNI_NETNS are for a pod that does not run yet.
CONTAINER_ID = "<container-id>"
NETNS = "<netns>"


@dataclass(frozen=True)
class Step:
    """Which attachments start together: the cluster network alone, then the rest."""

    attachments: tuple[int, ...]
    parallel: bool
    limit: int = 0


def steps(plan: PodPlan, config: MultusConfig) -> list[Step]:
    """The order `Engine._add_all` runs the attachments in."""
    first = tuple(i for i, a in enumerate(plan.attachments) if a.is_default)
    rest = tuple(i for i, a in enumerate(plan.attachments) if not a.is_default)
    out = [Step((i,), False) for i in first]
    if config.parallel_delegates and len(rest) > 1:
        out.append(Step(rest, True, min(config.max_parallel_delegates or len(rest), len(rest))))
    else:
        out.extend(Step((i,), False) for i in rest)
    return out


def placeholder(attachment: Attachment, index: int) -> RawJSON:
    previous = attachment.conf.plugins[index - 1]
    return RawJSON(json.dumps(f"<the result of plugin {index} ({previous.type})>"))


def explain_attachment(attachment: Attachment, *, cni_path: Sequence[str]) -> dict[str, Any]:
    rt = RuntimeConf(
        container_id=CONTAINER_ID,
        netns=NETNS,
        ifname=attachment.ifname,
        args=attachment.cni_args,
        capability_args=dict(attachment.capability_args),
        cni_path=tuple(cni_path),
    )
    plugins = []
    for index, plugin in enumerate(attachment.conf.plugins):
        stdin = build_plugin_conf(
            attachment.conf,
            plugin,
            capability_args=rt.capability_args,
            prev_result=placeholder(attachment, index) if index else None,
        )
        try:
            binary = find_plugin(plugin.type, rt.cni_path)
        except CNIError as err:
            binary = ""
            missing = err.msg
        else:
            missing = ""
        plugins.append(
            {
                "index": index + 1,
                "type": plugin.type,
                "binary": binary,
                "binaryMissing": missing,
                "stdin": stdin.text,
            }
        )
    return {
        "network": attachment.name,
        "source": attachment.network.source,
        "path": attachment.path,
        "ifname": attachment.ifname,
        "clusterNetwork": attachment.is_default,
        "env": plugin_env("ADD", rt),
        "plugins": plugins,
    }


def explain(
    plan: PodPlan, findings: Sequence[Finding], config: MultusConfig, *, cni_path: Sequence[str]
) -> dict[str, Any]:
    """The plan as data: steps, and per attachment its env and each plugin's stdin."""
    attachments = [explain_attachment(a, cni_path=cni_path) for a in plan.attachments]
    order = steps(plan, config)
    for number, step in enumerate(order, 1):
        for index in step.attachments:
            attachments[index]["step"] = number
            attachments[index]["parallel"] = step.parallel
    return {
        "schema": SCHEMA,
        "pod": {"namespace": plan.namespace, "name": plan.name},
        "steps": [
            {"attachments": list(s.attachments), "parallel": s.parallel, "limit": s.limit}
            for s in order
        ],
        "attachments": attachments,
        "findings": [f.to_dict() for f in findings],
        "aheadOfTime": [f.to_dict() for f in preflight.ahead_of_time(plan)],
        "wouldRun": not any(f.severity == "error" for f in findings),
    }


def render(data: dict[str, Any]) -> str:
    pod = data["pod"]
    lines = [click.style(f"Pod {pod['namespace']}/{pod['name']}", bold=True)]
    attachments = data["attachments"]
    if not attachments:
        lines.append("  no networks")
    for number, step in enumerate(data["steps"], 1):
        names = ", ".join(attachments[i]["ifname"] for i in step["attachments"])
        how = f"in parallel (at most {step['limit']} at once)" if step["parallel"] else "alone"
        lines.append(f"step {number}: {names} {how}")
        for index in step["attachments"]:
            item = attachments[index]
            role = " (cluster network)" if item["clusterNetwork"] else ""
            lines.append(
                f"  {item['ifname']}: {item['network']}{role} from {item['source'] or item['path']}"
            )
            env = item["env"]
            for key in ("CNI_IFNAME", "CNI_ARGS", "CNI_PATH"):
                lines.append(f"    {key}={env[key]}")
            for plugin in item["plugins"]:
                binary = plugin["binary"] or click.style(plugin["binaryMissing"], fg="red")
                lines.append(f"    plugin {plugin['index']}: {plugin['type']} ({binary})")
                lines.append(f"      stdin: {plugin['stdin']}")
    for title, key in (("findings of the ADD", "findings"), ("found ahead of time", "aheadOfTime")):
        if not data[key]:
            continue
        lines.append(f"{title}:")
        for item in data[key]:
            lines.append(f"  {item['severity']}[{item['code']}] {item['path']}: {item['message']}")
            if item["hint"]:
                lines.append(f"      hint: {item['hint']}")
    verdict = (
        "the ADD would run" if data["wouldRun"] else "the ADD would stop before any plugin runs"
    )
    lines.append(verdict)
    return "\n".join(lines)


def find_pod(objects: Sequence[Located], ref: str) -> Located | None:
    namespace, _, name = ref.rpartition("/")
    pods = [o for o in objects if o.kind == "Pod"]
    for pod in pods:
        if pod.name == name and (not namespace or (pod.namespace or "default") == namespace):
            return pod
    return None


def main(
    pod_ref: str,
    *,
    paths: Sequence[str],
    cluster: bool,
    kubeconfig: str,
    output: str,
    cni_paths: Sequence[str],
) -> int:
    import asyncio

    from . import manifests
    from .cluster import ClusterError
    from .cluster import load as load_cluster

    objects, problems = manifests.load(paths)
    for problem in problems:
        click.echo(f"multihome explain: {problem}", err=True)
    if problems:
        return 2
    if cluster:
        namespace = pod_ref.rpartition("/")[0]
        try:
            objects += asyncio.run(load_cluster(kubeconfig=kubeconfig, namespace=namespace))
        except ClusterError as err:
            click.echo(f"multihome explain: {err}", err=True)
            return 2
    pod = find_pod(objects, pod_ref)
    if pod is None:
        click.echo(f"multihome explain: no pod {pod_ref!r} in the input", err=True)
        return 2
    config = default_config()
    for item in objects:
        if item.kind == MULTUS_CONFIG:
            try:
                config = MultusConfig.parse(item.text or json.dumps(item.obj))
                break
            except CNIError as err:
                click.echo(f"multihome explain: {item.file}: {err.msg}", err=True)
                return 2
    nads = {(o.namespace or "default", o.name): o.obj for o in objects if o.kind == NAD_KIND}
    plan, findings = dry_plan(
        config=config,
        pod=pod.obj,
        nads=lambda ns, name: nads.get((ns, name)),
        files=DiskFiles(),
        namespace=pod.namespace or "default",
        container_id=CONTAINER_ID,
    )
    # As the engine: the config's binDir, then the runtime's CNI_PATH.
    cni_path = (config.bin_dir, *cni_paths)
    data = explain(plan, findings, config, cni_path=cni_path)
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(render(data))
    errors = [f for f in data["findings"] + data["aheadOfTime"] if f["severity"] == "error"]
    return 1 if errors else 0
