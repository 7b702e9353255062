"""`multihome-cni`: the engine as a one-shot CNI plugin (thin mode).

For hosts with Python and for use without Kubernetes: the runtime execs this
like any CNI plugin, with a ``00-multus.conf``-style configuration on stdin.
Pods and NADs come from ``manifestDir`` (or nowhere: then a pod gets the
networks of the configuration only).

Every call is a new interpreter, so every import is paid on every call; the
import path is kept short on purpose (measured with ``python -X importtime``,
kept so by tests/netns/test_thin_imports.py): no aiohttp, no prometheus, no
click, no netlink library (the namespace is read with iproute2's ``ip``), no
PyYAML for a kubeconfig in JSON, no DRA or gRPC unless a NAD names a
resourceName.  The configuration is parsed once, here, for the engine too.
VERSION, which runtimes ask on every probe, is answered before anything else
is imported (no asyncio, no logging, no engine): the same text the engine gives.
Creating a dataclass compiles each method it generates, one at a time, at
import: the classes on this path that nothing compares say ``eq=False``.
"""

from __future__ import annotations

import os
import sys

# Not typing's: importing typing alone costs VERSION several milliseconds (mypy
# treats any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, TextIO

    from .cni.request import Request
    from .networks.config import MultusConfig


def run(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One CNI call: the exit code; the result or the error JSON goes to ``stdout``."""
    import asyncio
    import logging

    from .cni.config import cni_version_of
    from .cni.errors import CNIError, Code
    from .cni.request import Request

    logging.basicConfig(
        stream=stderr, level=logging.WARNING, format="multihome-cni %(levelname)s %(message)s"
    )
    _check_launcher(environ)
    cni_version = "1.0.0"
    try:
        request = Request.from_env(environ, stdin.read())
        cni_version = cni_version_of(request.stdin) or cni_version
        from .cni.process import SubprocessExec, use_pidfd_child_watcher
        from .engine.engine import Engine

        use_pidfd_child_watcher()
        executor = SubprocessExec()
        config = _config(request)
        versions_dir = _versions_dir(request, config)
        if versions_dir:
            from .engine import versioncache

            loaded = versioncache.load(versions_dir)
            executor.versions.update(loaded)
        try:
            out = asyncio.run(Engine(executor=executor).handle(request, config))
        finally:
            if versions_dir:
                versioncache.save(versions_dir, executor.versions, loaded=loaded)
    except CNIError as err:
        stdout.write(err.to_json(cni_version) + "\n")
        return 1
    except Exception as err:  # the last line of defence: never a traceback for a user
        log = logging.getLogger("multihome")
        log.error("internal error: %r", err)
        log.debug("internal error", exc_info=True)
        stdout.write(CNIError(Code.INTERNAL, f"internal error: {err}").to_json(cni_version) + "\n")
        return 1
    if out:
        stdout.write(out + "\n")
    return 0


def _config(request: Request) -> MultusConfig | None:
    """The configuration, parsed once for this call; None: the engine says what is wrong."""
    from .cni.errors import CNIError
    from .networks.config import MultusConfig

    if request.command == "VERSION":
        return None
    try:
        return MultusConfig.parse(request.stdin)
    except CNIError:
        return None


def _check_launcher(environ: Mapping[str, str]) -> None:
    from . import LAUNCHER_ENV, __version__

    written_by = environ.get(LAUNCHER_ENV)
    if written_by and written_by != __version__:
        import logging

        logging.getLogger("multihome").warning(
            "the multihome-cni launcher was written by multihome %s and answers VERSION "
            "for it, but multihome %s runs: run `multihome install --thin-python` again",
            written_by,
            __version__,
        )


def _versions_dir(request: Request, config: MultusConfig | None) -> str:
    """Where this ADD keeps the plugins' VERSION answers ("": nowhere; only ADD asks them).

    The attachment cache directory, as the engine finds it.
    """
    if request.command != "ADD" or config is None:
        return ""
    return os.path.join(config.cni_dir, "multihome")


def main() -> None:
    if os.environ.get("CNI_COMMAND") == "VERSION":
        from .cni.version import version_text

        sys.stdin.buffer.read()  # the runtime's write must not meet a closed pipe
        sys.stdout.write(version_text() + "\n")
        sys.exit(0)
    import gc

    # One call is one short-lived process. Its imports leave 20,000 objects
    # that live as long as it does, and the cyclic collector would walk them
    # over and over (about 40 collections, 10-12 ms of an ADD, measured with
    # gc.callbacks); reference counting still frees what a call drops, and
    # what cycles it leaves go when the process exits. The interpreter's exit
    # collects once more, disabled or not: frozen, they are not walked again.
    gc.disable()
    code = run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
