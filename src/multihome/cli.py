"""The `multihome` command line.

Subcommands import what they need when they run, so that `multihome --help`
and the quick ones stay quick.
"""

from __future__ import annotations

import sys

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
    import asyncio

    from .cni.invoking import use_pidfd_child_watcher
    from .daemon import logs
    from .daemon.config import DaemonConfig, DaemonConfigError
    from .daemon.server import serve

    try:
        config = DaemonConfig.load(config_path)
    except DaemonConfigError as err:
        click.echo(f"multihome daemon: {err}", err=True)
        sys.exit(1)
    logs.configure(config)
    use_pidfd_child_watcher()
    sys.exit(asyncio.run(serve(config, allow_non_root=allow_non_root)))


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


@cli.command("install", context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def install(args: tuple[str, ...]) -> None:
    """Copy the shim (and the thin plugin launcher) into the CNI bin dir, atomically."""
    from .daemon import install as installing

    sys.exit(installing.main(list(args)))


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
    from .testing import apiserver

    sys.exit(apiserver.main(list(args)))


def main() -> None:
    cli()
