"""The ``multihome`` program: the daemon's plain command line first, every other one to click.

The daemon lives for months; the command line's library would stay
resident all that time for one parse of two options: click and the modules
only it needs were 0.9 MiB of the daemon's RSS (measured with its cache loaded).
Anything but the plain forms (`multihome.daemon.start.from_argv`) goes to
`multihome.cli`, help and usage errors included.
"""

from __future__ import annotations

import sys

from .daemon import start


def main() -> None:
    daemon_args = start.from_argv(sys.argv[1:])
    if daemon_args is not None:
        config_path, allow_non_root = daemon_args
        sys.exit(start.run(config_path, allow_non_root=allow_non_root))
    from .cli import main as cli_main

    cli_main()
