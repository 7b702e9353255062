"""Running a plugin process: the ``CNI_*`` environment, a timeout, the process group.

A plugin that hangs is killed with its whole process group after a timeout
(IPAM plugins it started die with it).  Running sits behind the `Exec`
protocol so that the layers above can be tested with
`multihome.cni.fakeexec.FakeExec`, in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CNIError, Code
from .finding import find_plugin, quote
from .request import format_args

if TYPE_CHECKING:
    from .output import PluginInfo

#: Seconds a plugin may run.  Container runtimes give a whole CNI call about
#: two to four minutes; failing a single delegate well before that leaves the
#: caller time to roll back what the chain had done.
DEFAULT_TIMEOUT = 120.0
# A plugin binary being replaced by an installer is "text file busy" for a
# moment; libcni retries five times, a second apart.
_BUSY_RETRIES = 5
_REAP_TIMEOUT = 5.0
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RuntimeConf:
    """The per-attachment half of a plugin call (libcni's ``RuntimeConf``).

    ``capability_args`` holds the runtime's data for capabilities (``mac``,
    ``ips``, ``portMappings``, ...); each plugin gets in its ``runtimeConfig``
    only the keys it declares in ``capabilities``.  ``cni_path`` is both where
    plugins are looked up and the ``CNI_PATH`` they get, as in libcni.
    """

    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    cni_path: tuple[str, ...] = ()


def plugin_env(command: str, rt: RuntimeConf) -> dict[str, str]:
    """The ``CNI_*`` variables of one call; every one is set, maybe empty, as libcni does."""
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": rt.container_id,
        "CNI_NETNS": rt.netns,
        "CNI_ARGS": format_args(rt.args),
        "CNI_IFNAME": rt.ifname,
        "CNI_PATH": ":".join(rt.cni_path),
    }


@dataclass(frozen=True)
class Outcome:
    """How a plugin process ended (a negative ``returncode`` is the signal that killed it)."""

    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""


class Exec(Protocol):
    """Finding and running plugin binaries; `FakeExec` stands in for it in tests."""

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        """The path of the plugin, or a `CNIError` (`find_plugin`'s rules)."""
        ...

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        """Run to completion; a `CNIError` only when the process could not run or finish."""
        ...


class ExecFailure(CNIError):
    """The plugin file exists but could not be started (mode, format, interpreter)."""


class SubprocessExec:
    """Plugins as child processes, each in its own process group.

    The child gets the ``CNI_*`` variables and, from this process, only the
    variables named in ``inherit`` (``PATH`` by default: plugins exec tools
    such as ``iptables``), so the daemon's environment does not leak into
    delegates.
    """

    def __init__(
        self, *, timeout: float | None = DEFAULT_TIMEOUT, inherit: Sequence[str] = ("PATH",)
    ) -> None:
        self.timeout = timeout
        self.inherit = tuple(inherit)
        self.versions: dict[str, tuple[tuple[int, int, int], PluginInfo]] = {}

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        return find_plugin(plugin_type, paths)

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {name: os.environ[name] for name in self.inherit if name in os.environ}
        out.setdefault("PATH", _DEFAULT_PATH)
        out.update(env)
        return out

    async def _spawn(self, path: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                return await asyncio.create_subprocess_exec(
                    path,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
            except OSError as err:
                if err.errno == errno.ETXTBSY and attempt < _BUSY_RETRIES:
                    await asyncio.sleep(1)
                    continue
                raise ExecFailure(
                    Code.IO_FAILURE,
                    f"failed to execute plugin {quote(path)}: {err.strerror or err}",
                    "the plugin file exists but cannot be executed; check its mode and format",
                ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        proc = await self._spawn(path, self._environment(env))
        try:
            async with asyncio.timeout(self.timeout):
                stdout, stderr = await proc.communicate(stdin)
        except TimeoutError:
            await _reap(proc)
            command = env.get("CNI_COMMAND", "")
            # Code 11: a plugin that hangs is almost always waiting on something
            # outside it (an IPAM lock, a datastore, an API server), which the
            # spec's "try again later" describes; the runtime retries anyway.
            raise CNIError(
                Code.TRY_AGAIN_LATER,
                f"plugin {quote(path)} did not finish {command} within {self.timeout:g} s;"
                " it was killed with its process group",
                "the plugin may be waiting for a lock or a remote service; try again later",
            ) from None
        except asyncio.CancelledError:
            # The caller gave up (its own deadline, a rollback, shutdown): a
            # plugin must not outlive the request that started it.
            await _reap(proc)
            raise
        except BaseException:
            _kill_group(proc)
            raise
        return Outcome(proc.returncode if proc.returncode is not None else -1, stdout, stderr)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # start_new_session made the child a group leader: its pgid is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill the group, then collect the exit and the pipes so nothing is left open.

    A process that left the group (its own ``setsid``) may hold the pipes:
    give up on them after a few seconds rather than hang.
    """
    _kill_group(proc)
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(_REAP_TIMEOUT):
            await proc.communicate()


_default_exec: SubprocessExec | None = None


def use_pidfd_child_watcher() -> None:
    """Wait for plugins with a pidfd instead of a thread per child (Python < 3.12).

    Python 3.11's default child watcher starts a thread for every process it
    waits for: about 2 ms per plugin exec here, several per pod.  3.12 uses a
    pidfd by itself.  Call it before the event loop runs (entry points only).
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # a kernel without pidfd: keep the default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def default_exec() -> SubprocessExec:
    """The process-wide `SubprocessExec` (shares the VERSION cache)."""
    global _default_exec
    if _default_exec is None:
        _default_exec = SubprocessExec()
    return _default_exec
