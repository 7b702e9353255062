"""The benchmark's node: the ways a container runtime reaches multihome, and what leaked.

Every measurement plays the runtime against a `World` (the lab node of
`multihome.testing.world`) through one or more `Runtime` entry points:

* ``shim``: exec ``shim/multihome-shim``, which forwards to a running daemon;
* ``thin``: exec the ``multihome-cni`` launcher ``multihome install
  --thin-python`` writes, as a runtime would exec a plugin binary (Python
  start-up included);
* ``engine``: the engine in this process, on one event loop kept for the
  whole measurement (no process at all: the floor for multihome's own work).

Each runtime owns its copy of the world's multus configuration (the
``type`` and the daemon socket differ), so several can serve one world.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from multihome.cni.errors import CNIError
from multihome.cni.request import Request
from multihome.daemon.install import THIN_NAME, install_bytes, launcher
from multihome.engine.engine import Engine
from multihome.testing.daemon import DaemonProcess
from multihome.testing.world import Sandbox, World

from .report import Section

ROOT = Path(__file__).resolve().parents[1]
SHIM_DIR = ROOT / "shim"


class Runtime(Protocol):
    name: str

    def call(self, command: str, sandbox: Sandbox) -> str:
        """Run one CNI command for ``sandbox``; stdout, or `CNIError` as a runtime sees it."""
        ...


def shim_binary() -> Path:
    """``shim/multihome-shim``, built first when missing or older than its source."""
    binary = SHIM_DIR / "multihome-shim"
    sources = [p for p in (SHIM_DIR / "multihome-shim.c", SHIM_DIR / "Makefile") if p.exists()]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    if not binary.exists() or binary.stat().st_mtime < newest:
        subprocess.run(["make", "-C", str(SHIM_DIR)], check=True, capture_output=True)
    return binary


def thin_argv() -> list[str]:
    """The thin plugin as a runtime runs it: the launcher `multihome install --thin-python` writes.

    That launcher is a two-line script for this interpreter; pip's console
    script would add its own imports (``re``: 8 ms of a 20 ms VERSION).
    """
    return [_thin_launcher()]


@functools.cache
def _thin_launcher() -> str:
    # A directory of its own, as the CNI bin dir is: the script's directory
    # is the first place Python looks for modules.
    directory = tempfile.mkdtemp(prefix="multihome-bench-bin-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return install_bytes(launcher(sys.executable), bin_dir=directory, name=THIN_NAME).path


def _raise_for(proc: subprocess.CompletedProcess[bytes]) -> str:
    out = proc.stdout.decode()
    if proc.returncode == 0:
        return out
    try:
        raise CNIError.from_dict(json.loads(out))
    except ValueError:
        raise CNIError(999, f"exit {proc.returncode}: {out} {proc.stderr.decode()}") from None


#: The runtime's ``CNI_*`` environment for a command and a sandbox (`World.env`).
Environment = Callable[[str, Sandbox], dict[str, str]]


class ExecRuntime:
    """A plugin binary exec'd per call, with the runtime's environment and stdin."""

    def __init__(self, name: str, argv: list[str], *, env: Environment, config: dict[str, Any]):
        self.name = name
        self.argv = argv
        self.env = env
        self.config = config

    def call(self, command: str, sandbox: Sandbox) -> str:
        env = {**self.env(command, sandbox), "PATH": os.environ.get("PATH", "")}
        proc = subprocess.run(
            self.argv,
            input=json.dumps(self.config).encode(),
            env=env,
            capture_output=True,
            check=False,
        )
        return _raise_for(proc)


class EngineRuntime:
    """The engine in this process, one event loop for all calls (close it when done)."""

    def __init__(
        self, *, world: World, config: dict[str, Any], engine: Engine | None = None
    ) -> None:
        self.name = "engine"
        self.world = world
        self.config = config
        self.engine = engine or Engine()
        self.runner = asyncio.Runner()

    def call(self, command: str, sandbox: Sandbox) -> str:
        request = Request.from_env(
            self.world.env(command, sandbox), json.dumps(self.config).encode()
        )
        return self.runner.run(self.engine.handle(request))

    def close(self) -> None:
        self.runner.close()


def thin_runtime(world: World, **overrides: Any) -> ExecRuntime:
    config = {**world.config, "type": "multihome-cni", **overrides}
    return ExecRuntime("thin", thin_argv(), env=world.env, config=config)


def shim_runtime(world: World, *, socket_dir: str, **overrides: Any) -> ExecRuntime:
    config = {
        **world.config,
        "type": "multihome-shim",
        "daemonSocketDir": socket_dir,
        **overrides,
    }
    return ExecRuntime("shim", [str(shim_binary())], env=world.env, config=config)


def engine_runtime(
    world: World, *, engine: Engine | None = None, **overrides: Any
) -> EngineRuntime:
    return EngineRuntime(world=world, config={**world.config, **overrides}, engine=engine)


def leaks(world: World, sandboxes: list[Sandbox]) -> dict[str, int]:
    """What pods left behind after their DEL: must all be 0.

    Links in the pods' namespaces (other than lo), host-local leases, cache
    records, and host-side veths still enslaved to the cluster bridge (the
    bridge plugin names them ``veth...``, outside the lab's prefix).
    """
    links = sum(1 for s in sandboxes for name in world.lab.links(s.netns) if name != "lo")
    ports = sum(1 for link in world.lab.links(None).values() if link.master == world.cluster_bridge)
    return {
        "pod_links": links,
        "bridge_ports": ports,
        "ipam_leases": sum(len(v) for v in world.allocations().values()),
        "cache_records": len(world.cached_containers()),
    }


def rss_kib(pid: int) -> dict[str, int]:
    """Resident memory of a process: RSS and, when the kernel has it, PSS (KiB)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Pss:", "Private_Dirty:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def describe(runtimes: Mapping[str, Runtime]) -> dict[str, str]:
    """How each entry point was reached, for the JSON."""
    out = {}
    for name, runtime in runtimes.items():
        argv = getattr(runtime, "argv", None)
        out[name] = " ".join(argv) if argv else "in-process engine (Engine.handle)"
    return out


#: How long a daemon may take to stop on SIGTERM before the harness kills it.
#: Above the daemon's own bound after its drain (``kube.stopFlushSeconds``, 5 s, for the
#: pending status writes and then the queued events) with some slack.
STOP_WAIT = 10.0


@contextlib.contextmanager
def daemon(
    config: Mapping[str, Any] | None = None, *, section: Section | None = None
) -> Iterator[DaemonProcess]:
    """A started, ready daemon (``multihome daemon``), logging at its default level.

    On exit it gets SIGTERM and `STOP_WAIT` seconds (a note in ``section``
    says how long it took: it writes pending statuses and flushes queued
    events first), then SIGKILL.
    """
    process = DaemonProcess(config={"logLevel": "info", **(config or {})})
    try:
        process.start()
    except BaseException:
        process.close()
        raise
    try:
        yield process
    finally:
        try:
            began = time.monotonic()
            process.stop(timeout=STOP_WAIT)
            if section is not None:
                section.notes.append(
                    f"the daemon exited {time.monotonic() - began:.1f} s after SIGTERM"
                )
        except subprocess.TimeoutExpired:
            if section is not None:
                section.notes.append(
                    f"the daemon did not exit within {STOP_WAIT:g} s of SIGTERM and was killed"
                )
        finally:
            process.close()


@contextlib.contextmanager
def maybe_daemon(
    section: Section, config: Mapping[str, Any] | None = None
) -> Iterator[DaemonProcess | None]:
    """`daemon`, or None with a note in ``section`` when it cannot start."""
    with contextlib.ExitStack() as stack:
        try:
            process: DaemonProcess | None = stack.enter_context(daemon(config, section=section))
        except Exception as err:
            section.notes.append(f"the daemon did not start, measured without it: {err}")
            process = None
        yield process


def leak_text(found: Mapping[str, int]) -> str:
    """``0``, or what leaked (``pod_links 2, ipam_leases 1``)."""
    return ", ".join(f"{k} {v}" for k, v in found.items() if v) or "0"


def wait_for_cache(process: DaemonProcess, *, pods: int, nads: int, timeout: float = 60.0) -> None:
    """Until the daemon's watch cache holds at least ``pods`` pods and ``nads`` NADs."""
    deadline = time.monotonic() + timeout
    while True:
        kube = process.info().get("kube") or {}
        if kube.get("pods", 0) >= pods and kube.get("nads", 0) >= nads:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the daemon's cache holds {kube} after {timeout:g} s")
        time.sleep(0.05)


def pid_of(process: DaemonProcess) -> int:
    if process.proc is None:
        raise RuntimeError("the daemon is not running")
    return process.proc.pid
