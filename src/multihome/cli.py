"""The `multihome` command line.

Subcommands import what they need when they run, so that `multihome --help`
and the quick ones stay quick.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="multihome")
def cli() -> None:
    """multihome: several network interfaces per Kubernetes pod (a drop-in for Multus-CNI)."""


@cli.command()
def demo() -> None:
    """Build a small lab in network namespaces and attach a pod to a LAN, step by step."""
    from . import demo as the_demo

    sys.exit(the_demo.run())


@cli.command()
@click.option(
    "--config",
    "config_path",
    default="/etc/cni/net.d/multus.d/daemon-config.json",
    show_default=True,
    help="The daemon configuration (JSON; the keys of Multus' daemon-config.json).",
)
@click.option("--allow-non-root", is_flag=True, hidden=True, help="For tests only.")
def daemon(config_path: str, allow_non_root: bool) -> None:
    """Run the node daemon (thick mode): serve multihome-shim over a unix socket."""
    from .daemon import start

    sys.exit(start.run(config_path, allow_non_root=allow_non_root))


@cli.command()
@click.option("--socket", "socket_path", help="The daemon's socket (default: from --config).")
@click.option(
    "--config",
    "config_path",
    default="/etc/cni/net.d/multus.d/daemon-config.json",
    show_default=True,
    help="The daemon configuration, to find the socket in.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def status(socket_path: str | None, config_path: str, output: str) -> None:
    """What is attached on this node, as the daemon's attachment cache holds it."""
    import json

    from .daemon import client
    from .daemon.config import (
        DEFAULT_SOCKET_DIR,
        DEFAULT_SOCKET_NAME,
        DaemonConfig,
        DaemonConfigError,
    )

    if not socket_path:
        try:
            socket_path = DaemonConfig.load(config_path).socket_path
        except DaemonConfigError:
            socket_path = f"{DEFAULT_SOCKET_DIR}/{DEFAULT_SOCKET_NAME}"
    try:
        info = client.get_json(socket_path, "/shim/v1/info")
        listing = client.get_json(socket_path, "/shim/v1/attachments")["attachments"]
    except client.DaemonUnavailable as err:
        click.echo(f"multihome status: {err}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(json.dumps({"daemon": info, "attachments": listing}, indent=2))
        return
    from .daemon.status import render_table

    click.echo(render_table(info, listing), nl=False)


@cli.command()
@click.argument("pod")
@click.option(
    "--network", help="The network to look at (NAD name or interface); default: the first."
)
@click.option("--target", help="The IPv4 address that does not answer; probed from the pod.")
@click.option("--capture", default=3.0, show_default=True, help="Seconds to capture for.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--cache-dir", "cache_dirs", multiple=True, help="Attachment cache (repeatable).")
@click.option("--socket", "socket_path", help="Ask this daemon for its cache directories.")
@click.option("--node-netns", help="The node's network namespace, when not run in it.")
def diagnose(
    pod: str,
    *,
    network: str | None,
    target: str | None,
    capture: float,
    output: str,
    cache_dirs: tuple[str, ...],
    socket_path: str | None,
    node_netns: str | None,
) -> None:
    """Why replies on a pod's secondary interface never come back (run on the pod's node)."""
    from .daemon import client
    from .daemon.config import DEFAULT_SOCKET_DIR, DEFAULT_SOCKET_NAME
    from .doctor.diagnose import DEFAULT_CACHE_DIR, DiagnoseError
    from .doctor.diagnose import diagnose as run_diagnose

    dirs = list(cache_dirs)
    if not dirs:
        try:
            info = client.get_json(
                socket_path or f"{DEFAULT_SOCKET_DIR}/{DEFAULT_SOCKET_NAME}", "/shim/v1/info"
            )
            dirs = list(info.get("cacheDirs") or [])
        except client.DaemonUnavailable:
            pass
        dirs = dirs or [DEFAULT_CACHE_DIR]
    try:
        report = run_diagnose(
            pod,
            cache_dirs=dirs,
            network=network,
            target=target,
            capture=capture,
            node_netns=node_netns,
        )
    except DiagnoseError as err:
        click.echo(f"multihome diagnose: {err}", err=True)
        sys.exit(2)
    click.echo(report.to_json() if output == "json" else report.render(), nl=output == "json")
    sys.exit(0 if report.verdict.cause in ("healthy", "static-only") else 1)


@cli.command("install", context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def install(args: tuple[str, ...]) -> None:
    """Copy the shim (and the thin plugin launcher) into the CNI bin dir, atomically."""
    from .daemon import install as installing

    sys.exit(installing.main(list(args)))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--cluster", is_flag=True, help="Lint every NAD and pod of the cluster.")
@click.option("--kubeconfig", default="", help="With --cluster (default: in-cluster).")
@click.option("-n", "--namespace", default="", help="Only objects of this namespace.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option(
    "--node/--no-node",
    default=None,
    help="Check binaries, versions and links on this node (default: when the dirs exist).",
)
@click.option("--bin-dir", "bin_dirs", multiple=True, help="CNI bin dir (default /opt/cni/bin).")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True)
@click.option(
    "--cluster-cidr",
    "cluster_cidrs",
    multiple=True,
    help="A pod or service network that secondary routes must not cover (repeatable).",
)
def lint(paths: tuple[str, ...], **options: Any) -> None:
    """Check NADs, pods, workloads and configs before a pod exists (docs/lint.md)."""
    from .doctor import lint as linting

    sys.exit(linting.main(paths, **options))


@cli.command()
@click.argument("pod")
@click.option("-f", "--file", "paths", multiple=True, type=click.Path(), help="Manifests.")
@click.option("--cluster", is_flag=True, help="Read the pod and NADs from the cluster.")
@click.option("--kubeconfig", default="", help="With --cluster (default: in-cluster).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--cni-path", "cni_paths", multiple=True, help="The runtime's CNI_PATH dirs, after binDir."
)
def explain(pod: str, **options: Any) -> None:
    """Print the ADD of POD ([namespace/]name) as it would run: no plugin runs."""
    from .doctor import explain as explaining

    sys.exit(explaining.main(pod, **options))


@cli.command()
@click.option("--cert", required=True, type=click.Path(), help="TLS certificate (PEM).")
@click.option("--key", required=True, type=click.Path(), help="TLS private key (PEM).")
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--kubeconfig", default="", help="For the NAD watch (default: in-cluster).")
@click.option("--multus-config", default="", help="00-multus.conf (namespaceIsolation...).")
@click.option("--cluster-cidr", "cluster_cidrs", multiple=True, help="Pod/service network.")
def webhook(**options: Any) -> None:
    """Validating admission webhook for NADs and pods (docs/webhook.md)."""
    from .doctor import webhook as serving

    sys.exit(serving.main(**options))


@cli.command("node-check", context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def node_check(args: tuple[str, ...]) -> None:
    """Check a node's CNI files before swapping Multus for multihome (read only)."""
    from .daemon import nodecheck

    sys.exit(nodecheck.main(list(args)))


@cli.group()
def testing() -> None:
    """Tools for tests, benchmarks and the demo."""


@testing.command(
    "apiserver", context_settings={"ignore_unknown_options": True}, add_help_option=False
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def testing_apiserver(args: tuple[str, ...]) -> None:
    """Run the Kubernetes API double (see `--help` of the double)."""
    try:
        from .testing import apiserver
    except ModuleNotFoundError as err:
        raise click.ClickException(
            f"the API double needs {err.name}: pip install 'multihome[testing]'"
        ) from err

    sys.exit(apiserver.main(list(args)))


def main() -> None:
    cli()
