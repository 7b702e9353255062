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
