"""Running a plugin process: the ``CNI_*`` environment, a timeout, the process group.

A plugin that hangs is killed with its whole process group after a timeout
(IPAM plugins it started die with it), and so is one that prints more than
`DEFAULT_OUTPUT_LIMIT` or exits leaving a child that holds its pipes
(docs/limits.md).  Running sits behind the `Exec`
protocol so that the layers above can be tested with
`multihome.cni.fakeexec.FakeExec`, in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CNIError, Code
from .finding import find_plugin, quote
from .request import format_args

if TYPE_CHECKING:
    from .output import PluginInfo

log = logging.getLogger(__name__)

#: Seconds a plugin may run.  Container runtimes give a whole CNI call about
#: two to four minutes; failing a single delegate well before that leaves the
#: caller time to roll back what the chain had done.
DEFAULT_TIMEOUT = 120.0
# A plugin binary being replaced by an installer is "text file busy" for a
# moment; libcni retries five times, a second apart.
_BUSY_RETRIES = 5
_REAP_TIMEOUT = 5.0
#: Bytes a plugin may print on stdout, and again on stderr, per call.  A
#: result or an error is a few kilobytes, a Go panic some tens; without a
#: bound, one broken plugin printing without end takes the daemon's memory
#: with it (this one keeps the daemon inside its 50 MiB).
DEFAULT_OUTPUT_LIMIT = 256 << 10
# Seconds the pipes may stay open after the plugin exited: a child it forked
# may hold them (a daemonised helper); it is not waited for longer.
_PIPE_GRACE = 2.0
_CHUNK = 64 << 10
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True, eq=False)
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


class GroupWatcher(Protocol):
    """Told of every plugin process group while it runs (the daemon records them on disk,
    so that its next instance can kill what a killed one left running)."""

    def started(self, pgid: int, *, deadline: float, container_id: str) -> None: ...

    def ended(self, pgid: int) -> None: ...


class ExecFailure(CNIError):
    """The plugin file exists but could not be started (mode, format, interpreter)."""


class SubprocessExec:
    """Plugins as child processes, each in its own process group.

    The child gets the ``CNI_*`` variables and, from this process, only the
    variables named in ``inherit`` (``PATH`` by default: plugins exec tools
    such as ``iptables``), so the daemon's environment does not leak into
    delegates.  ``watcher`` hears of each group with its deadline (wall
    clock); `kill_all` ends every group still running and refuses new ones
    (the end of a bounded shutdown).
    """

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        inherit: Sequence[str] = ("PATH",),
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        watcher: GroupWatcher | None = None,
    ) -> None:
        self.timeout = timeout
        self.inherit = tuple(inherit)
        self.output_limit = output_limit
        self.watcher = watcher
        self.versions: dict[str, tuple[tuple[int, int, int], PluginInfo]] = {}
        self._running: set[_Child] = set()
        self._killed: set[int] = set()
        self.closed = False

    @property
    def running(self) -> int:
        return len(self._running)

    def kill_all(self) -> int:
        """Kill every plugin group still running and start no more; how many were killed."""
        self.closed = True
        for child in self._running:
            self._killed.add(child.pid)
            child.kill_group()
        return len(self._running)

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        return find_plugin(plugin_type, paths)

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {name: os.environ[name] for name in self.inherit if name in os.environ}
        out.setdefault("PATH", _DEFAULT_PATH)
        out.update(env)
        return out

    async def _spawn(self, path: str, env: dict[str, str], stdin: bytes) -> _Child:
        loop = asyncio.get_running_loop()
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                return _Child.start(loop, path, env, stdin, self.output_limit)
            except ValueError:  # a NUL byte, which no environment or path can carry
                held = [k for k, v in env.items() if "\0" in k or "\0" in v] or ["the path"]
                raise CNIError(
                    Code.INVALID_ENV,
                    f"failed to execute plugin {quote(path)}: {held[0]} holds a NUL byte",
                    "a process environment cannot carry NUL bytes; check the runtime's CNI_*"
                    " variables and CNI_ARGS",
                ) from None
            except OSError as err:
                if err.errno == errno.ETXTBSY and attempt < _BUSY_RETRIES:
                    await asyncio.sleep(1)
                    continue
                if err.errno in _EXEC_TRANSIENT:
                    raise CNIError(
                        Code.TRY_AGAIN_LATER,
                        f"failed to execute plugin {quote(path)}: {err.strerror or err}",
                        "the node is short of processes, memory or files, or the binary is"
                        " being replaced; try again later",
                    ) from err
                # Not executable, not a binary of this machine, a missing
                # interpreter: the same every time, so never "try again".
                raise ExecFailure(
                    Code.INVALID_NETWORK_CONFIG,
                    f"failed to execute plugin {quote(path)}: {err.strerror or err}",
                    "the plugin file exists but cannot be executed; check its mode and format",
                ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        if self.closed:
            raise _stopped(path, env, "not started")
        child = await self._spawn(path, self._environment(env), stdin)
        self._running.add(child)
        if self.watcher is not None:
            deadline = time.time() + (self.timeout if self.timeout is not None else 86400.0)
            self.watcher.started(
                child.pid, deadline=deadline, container_id=env.get("CNI_CONTAINERID", "")
            )
        try:
            outcome = await self._communicate(child, path, env=env)
        finally:
            self._running.discard(child)
            if self.watcher is not None:
                self.watcher.ended(child.pid)
        if child.pid in self._killed:
            self._killed.discard(child.pid)
            raise _stopped(path, env, "killed")
        return outcome

    async def _communicate(self, child: _Child, path: str, *, env: Mapping[str, str]) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout):
                await child.finish()
        except _TooLarge as err:
            await child.reap()
            raise CNIError(
                Code.DECODE_FAILURE,
                f"plugin {quote(path)} printed more than {self.output_limit} bytes on"
                f" {err.stream} during {env.get('CNI_COMMAND', '')};"
                " it was killed with its process group",
                "a plugin prints one result or error of a few kilobytes; the limit is"
                f" {self.output_limit} bytes per stream",
            ) from None
        except TimeoutError:
            await child.reap()
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
            await child.reap()
            raise
        except BaseException:
            child.kill_group()
            raise
        finally:
            child.close()  # the pipes of a child that kept them: closed
        return Outcome(child.returncode, bytes(child.stdout), bytes(child.stderr))


def _stopped(path: str, env: Mapping[str, str], what: str) -> CNIError:
    command = env.get("CNI_COMMAND", "")
    return CNIError(
        Code.TRY_AGAIN_LATER,
        f"plugin {quote(path)} {what} ({command}): the multihome daemon is shutting down",
        "the attachment cache keeps what it had done; the retried request finishes the job",
    )


_EXEC_TRANSIENT = {errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ETXTBSY}


class _TooLarge(Exception):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.stream = stream


class _Child:
    """One plugin process, driven by the event loop's own readiness callbacks.

    asyncio's subprocess transports (protocols, stream readers, a task per
    pipe) cost about 0.3 ms per plugin over `subprocess.run` here; this
    keeps what a plugin call needs: three non-blocking pipes read into
    bounded buffers, and the exit seen through a pidfd (or, on kernels
    before 5.3, a thread blocked in ``waitpid``, as asyncio's default
    watcher does).  The child is started by `subprocess.Popen`, which
    closes every other descriptor and restores ``SIGPIPE`` for it
    (``os.posix_spawn`` was 0.07 ms faster and can do neither).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        pipes: tuple[int, int, int],
        stdin: bytes,
        limit: int,
    ) -> None:
        self.loop = loop
        self.proc = proc
        self.pid = proc.pid
        self.limit = limit
        self.stdout = bytearray()
        self.stderr = bytearray()
        #: Both output pipes at their end, or `_TooLarge`.
        self.drained: asyncio.Future[None] = loop.create_future()
        #: The exit status has been collected.
        self.exited: asyncio.Future[None] = loop.create_future()
        self._input = memoryview(stdin)
        self._stdin, stdout, stderr = pipes
        self._readers = {stdout: (self.stdout, "stdout"), stderr: (self.stderr, "stderr")}
        self._writing = False
        for fd in self._readers:
            loop.add_reader(fd, self._readable, fd)
        self._write()
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # a kernel before 5.3
            threading.Thread(target=self._wait_blocking, daemon=True).start()
        else:
            loop.add_reader(self._pidfd, self._collect)

    @classmethod
    def start(
        cls,
        loop: asyncio.AbstractEventLoop,
        path: str,
        env: dict[str, str],
        stdin: bytes,
        limit: int,
    ) -> _Child:
        """Start ``path`` as the leader of a new session (so of its own process group)."""
        fds: list[int] = []
        try:
            for _ in range(3):
                fds += os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            in_r, in_w, out_r, out_w, err_r, err_w = fds
            # The child's ends blocking, as a program expects its standard streams.
            for fd in (in_r, out_w, err_w):
                os.set_blocking(fd, True)
            proc = subprocess.Popen(
                [path],
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        return cls(loop, proc, (in_w, out_r, err_r), stdin, limit)

    @property
    def returncode(self) -> int:
        code = self.proc.returncode
        return code if code is not None else -1

    async def finish(self) -> None:
        """The exit and the output; `_TooLarge` as soon as a stream passes the limit.

        When the plugin has exited while something it forked still holds its
        stdout or stderr, that is waited for `_PIPE_GRACE` seconds; then the
        process group is killed, and what was read by then is the output.
        """
        await asyncio.wait((self.drained, self.exited), return_when=asyncio.FIRST_COMPLETED)
        if not self.drained.done():
            # Exited; its pipes are still open.
            done, _ = await asyncio.wait((self.drained,), timeout=_PIPE_GRACE)
            if not done:
                log.warning("plugin pid %s exited; its children kept its pipes: killed", self.pid)
                self.kill_group()
                await asyncio.wait((self.drained,), timeout=_PIPE_GRACE)
        if self.drained.done():
            self.drained.result()  # _TooLarge
        await asyncio.shield(self.exited)

    def kill_group(self) -> None:
        # start_new_session made the child a group leader: its pgid is its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def reap(self) -> None:
        """Kill the group, then collect the exit and the pipes so nothing is left open.

        A process that left the group (its own ``setsid``) may hold the pipes:
        give up on them after a few seconds rather than hang.
        """
        self.kill_group()
        await asyncio.wait((self.drained, self.exited), timeout=_REAP_TIMEOUT)

    def close(self) -> None:
        """Stop reading and close the pipes; a child still running is reaped when it exits."""
        self._close_stdin()
        for fd in list(self._readers):
            self._close_reader(fd)
        if not self.drained.done():
            self.drained.set_result(None)
        elif not self.drained.cancelled():
            self.drained.exception()  # retrieved: no "never retrieved" at exit

    # -- the loop's callbacks --------------------------------------------------------

    def _readable(self, fd: int) -> None:
        into, name = self._readers[fd]
        try:
            chunk = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_reader(fd)
            if not self._readers and not self.drained.done():
                self.drained.set_result(None)
            return
        if len(into) + len(chunk) > self.limit:
            for other in list(self._readers):
                self._close_reader(other)
            if not self.drained.done():
                self.drained.set_exception(_TooLarge(name))
            return
        into += chunk

    def _write(self) -> None:
        if self._stdin < 0:
            return
        try:
            written = os.write(self._stdin, self._input) if self._input else 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:  # a plugin may exit without reading its configuration
            self._close_stdin()
            return
        self._input = self._input[written:]
        if not self._input:
            self._close_stdin()
        elif not self._writing:
            self._writing = True
            self.loop.add_writer(self._stdin, self._write)

    def _close_stdin(self) -> None:
        if self._stdin >= 0:
            if self._writing:
                self.loop.remove_writer(self._stdin)
            os.close(self._stdin)
            self._stdin = -1

    def _close_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
            os.close(fd)

    def _collect(self) -> None:
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        # The status, leaving the zombie: reaping a plugin that worked in
        # network namespaces costs the kernel milliseconds (3 ms for bridge
        # here), which the reaper thread spends off the loop and the call.
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else: its status is lost
            log.warning("plugin pid %s was reaped elsewhere; exit status 255", self.pid)
            self.proc.returncode = 255
            self._exited()
            return
        if info is None:  # not waitable yet, though its pidfd said it exited
            threading.Thread(target=self._wait_blocking, daemon=True).start()
            return
        exited = info.si_code == os.CLD_EXITED
        self.proc.returncode = info.si_status if exited else -info.si_status
        _reaper.collect(self.pid)
        self._exited()

    def _wait_blocking(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._exited)

    def _exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class _Reaper:
    """Collects exited plugins (zombies whose status was read) in a thread of its own."""

    def __init__(self) -> None:
        self._pids: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def collect(self, pid: int) -> None:
        self._pids.put(pid)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="multihome-reaper", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            pid = self._pids.get()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


_reaper = _Reaper()
_default_exec: SubprocessExec | None = None


def use_pidfd_child_watcher() -> None:
    """Wait for asyncio's child processes with a pidfd, not a thread each (Python < 3.12).

    Python 3.11's default child watcher starts a thread for every process it
    waits for.  Plugins do without it (`SubprocessExec` watches their pidfd
    itself); the ``nsenter ip`` of `multihome.engine.podnet` still use it.
    3.12 uses a pidfd by itself.  Call it before the event loop runs (entry
    points only).
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
