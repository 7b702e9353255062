"""The ``multihome`` program: the daemon's plain command line first, every other one to click.

The daemon lives for months; the command line's library (click, and the
gettext, locale, uuid, platform and datetime it imports) would stay
resident all that time for one parse of two options
(`multihome.daemon.start`).  Anything but the plain forms goes to
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
