"""``multihome daemon``: load the configuration, tune the process, serve.

`multihome.main` hands the plain forms of the command line to `from_argv`
so that the daemon starts without click; ``multihome daemon`` through
click (`multihome.cli`) runs the same `run`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

DEFAULT_CONFIG = "/etc/cni/net.d/multus.d/daemon-config.json"


def from_argv(argv: Sequence[str]) -> tuple[str, bool] | None:
    """``daemon [--config FILE | --config=FILE] [--allow-non-root]``: (config, allow_non_root).

    None for any other command line (click handles it, help and errors included).
    """
    if not argv or argv[0] != "daemon":
        return None
    config, allow_non_root = DEFAULT_CONFIG, False
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--allow-non-root":
            allow_non_root = True
        elif arg == "--config" and rest and not rest[0].startswith("-"):
            config = rest.pop(0)
        elif arg.startswith("--config=") and len(arg) > len("--config="):
            config = arg.removeprefix("--config=")
        else:
            return None
    return config, allow_non_root


def run(config_path: str, *, allow_non_root: bool = False) -> int:
    """Load the configuration and serve until SIGTERM; the process's exit code."""
    import asyncio

    from multihome.cni.process import use_pidfd_child_watcher

    from . import allocator, iothreads, logs
    from .config import DaemonConfig, DaemonConfigError
    from .server import serve

    try:
        config = DaemonConfig.load(config_path)
    except DaemonConfigError as err:
        print(f"multihome daemon: {err}", file=sys.stderr)
        return 1
    logs.configure(config)
    use_pidfd_child_watcher()
    allocator.fix_mmap_threshold()  # RSS flat over months of ADD/DEL (daemon/allocator.py)

    async def main() -> int:
        iothreads.install(asyncio.get_running_loop())  # a few threads, not one per CPU
        return await serve(config, allow_non_root=allow_non_root)

    return asyncio.run(main())
