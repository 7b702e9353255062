"""Running CNI plugin binaries: the one I/O edge of the CNI layer.

multihome is a CNI runtime towards its delegates, so this module does what
libcni does (``libcni/api.go``, ``pkg/invoke``): find a plugin by its
``type`` in the bin dirs, run it with the ``CNI_*`` environment and its
configuration on stdin, and turn what it prints into a `Result` or a
`CNIError`; and run a configuration list as a chain (ADD in order with
``prevResult``, DEL in reverse, CHECK, GC, STATUS), injecting ``name``,
``cniVersion``, ``runtimeConfig`` and ``prevResult`` while every other field
of each plugin's configuration keeps its bytes.

Three rules hold here because a NAD is user input that makes this node run
programs:

* a ``type`` is a plain file name looked up in the bin dirs, never a path
  (`check_plugin_type`), checked before anything runs;
* a plugin that hangs is killed with its whole process group after a
  timeout (IPAM plugins it started die with it);
* whatever a plugin prints, the caller gets a `CNIError` with a code and a
  message that names the plugin, never a traceback.

Running a process sits behind the `Exec` protocol so that the layers above
can be tested with `FakeExec`, in memory.  Everything is async: the daemon
runs the delegates of several networks concurrently on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import logging
import os
import posixpath
import signal
import stat
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from . import version as versions
from .config import NetConf, NetConfList, RawJSON, RawObject
from .errors import CNIError, Code
from .request import format_args, validate_container_id, validate_ifname, validate_network_name
from .result import Result

log = logging.getLogger(__name__)

#: Seconds a plugin may run.  Container runtimes give a whole CNI call about
#: two to four minutes; failing a single delegate well before that leaves the
#: caller time to roll back what the chain had done.
DEFAULT_TIMEOUT = 120.0
# A plugin binary being replaced by an installer is "text file busy" for a
# moment; libcni retries five times, a second apart.
_BUSY_RETRIES = 5
_REAP_TIMEOUT = 5.0
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EXCERPT = 400
_TYPE_RULES = (
    "a plugin 'type' is the file name of a plugin binary in the CNI bin dirs, such as "
    '"macvlan"; it cannot be empty, ".", or contain "/", ".." or NUL'
)


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


# -- what a plugin needs besides its configuration ---------------------------------------


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


# -- finding a plugin ----------------------------------------------------------------------


def check_plugin_type(plugin_type: str) -> str:
    """The type itself when it is a plain file name; else error 7 naming it."""
    if not isinstance(plugin_type, str):
        reason = "it is not a string"
    elif not plugin_type:
        reason = "it is empty"
    elif "\0" in plugin_type:
        reason = "it contains a NUL character"
    elif "/" in plugin_type:
        reason = "it contains '/'"
    elif plugin_type == "." or ".." in plugin_type:
        reason = "it is or contains a relative directory ('.' or '..')"
    else:
        return plugin_type
    shown = _q(plugin_type) if isinstance(plugin_type, str) else repr(plugin_type)
    raise CNIError(
        Code.INVALID_NETWORK_CONFIG, f"invalid plugin type {shown}: {reason}", _TYPE_RULES
    )


def _not_found(plugin_type: str, paths: Sequence[str]) -> CNIError:
    # libcni's wording (`invoke.FindInPath`), which users and tools match on.
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"failed to find plugin {_q(plugin_type)} in path [{' '.join(paths)}]",
        "the configuration names a plugin that is not installed in the CNI bin dirs of this node",
    )


def find_plugin(plugin_type: str, paths: Sequence[str]) -> str:
    """The first regular file named ``plugin_type`` in ``paths``."""
    check_plugin_type(plugin_type)
    for directory in paths:
        if not directory:
            continue
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    raise _not_found(plugin_type, paths)


# -- running a process ---------------------------------------------------------------------


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
                raise CNIError(
                    Code.IO_FAILURE,
                    f"failed to execute plugin {_q(path)}: {err.strerror or err}",
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
                f"plugin {_q(path)} did not finish {command} within {self.timeout:g} s;"
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


# -- reading what a plugin printed -------------------------------------------------------


def plugin_error(plugin_type: str, outcome: Outcome) -> CNIError:
    """The error of a plugin that exited non-zero.

    The spec's JSON error on stdout is returned as the plugin wrote it (code,
    msg, details).  Without one, the message says how the plugin ended and
    shows its stderr, where Go plugins write panics and log lines.
    """
    who = f"plugin {_q(plugin_type)}"
    stdout = outcome.stdout.strip()
    if stdout:
        try:
            data = json.loads(stdout)
        except ValueError:
            data = None
        if isinstance(data, dict) and ("code" in data or "msg" in data):
            return CNIError.from_dict(data)
    code = outcome.returncode
    if code < 0:
        try:
            how = f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"failed with exit status {code}"
    stderr = _excerpt(outcome.stderr)
    if stderr:
        details = f"its stdout was: {_excerpt(stdout)}" if stdout else ""
        return CNIError(Code.INTERNAL, f"{who} {how}: {stderr}", details)
    if stdout:
        return CNIError(
            Code.DECODE_FAILURE,
            f"{who} {how} and printed something that is not a CNI error: {_excerpt(stdout)}",
            'a failing plugin prints {"code": ..., "msg": ...} on stdout',
        )
    return CNIError(Code.INTERNAL, f"{who} {how} and printed no error message")


def check_outcome(plugin_type: str, outcome: Outcome) -> bytes:
    """The stdout of a plugin that succeeded, else `plugin_error`."""
    if outcome.returncode != 0:
        raise plugin_error(plugin_type, outcome)
    if outcome.stderr.strip():
        log.debug("plugin %s wrote to stderr: %s", plugin_type, _excerpt(outcome.stderr))
    return outcome.stdout


def decode_result(plugin_type: str, stdout: bytes, *, conf_version: str) -> Result:
    """The result an ADD printed, in whatever version the plugin wrote it.

    A result without ``cniVersion`` is taken to be in the configuration's
    version, as libcni does (``fixupResultVersion``, cni#895).
    """
    who = f"plugin {_q(plugin_type)}"
    if not stdout.strip():
        raise CNIError(Code.DECODE_FAILURE, f"{who} returned no result", "ADD must print a result")
    try:
        data = json.loads(stdout)
    except ValueError as err:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the result of {who}: {err}",
            f"its output was: {_excerpt(stdout)}",
        ) from err
    if not isinstance(data, dict):
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the result of {who}: it is not a JSON object",
            f"its output was: {_excerpt(stdout)}",
        )
    if not data.get("cniVersion"):
        data["cniVersion"] = conf_version
    try:
        return Result.parse(data)
    except CNIError as err:
        raise err.prefixed(f"invalid result from {who}") from err


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin answered to VERSION."""

    cni_version: str
    supported_versions: tuple[str, ...]

    def supports(self, version: str) -> bool:
        return version in self.supported_versions


def decode_version_info(plugin_type: str, stdout: bytes) -> PluginInfo:
    """libcni's ``PluginDecoder``: ``{"cniVersion", "supportedVersions"}``."""
    who = f"plugin {_q(plugin_type)}"
    try:
        data = json.loads(stdout)
    except ValueError as err:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the VERSION answer of {who}: {err}",
            f"its output was: {_excerpt(stdout)}",
        ) from err
    current = data.get("cniVersion") if isinstance(data, dict) else None
    supported = data.get("supportedVersions") if isinstance(data, dict) else None
    if not isinstance(current, str) or not current:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the VERSION answer of {who}: missing field cniVersion",
            f"its output was: {_excerpt(stdout)}",
        )
    if not supported and current == "0.2.0":
        # Plugins of that era list nothing; libcni knows what they meant.
        return PluginInfo(current, ("0.1.0", "0.2.0"))
    if (
        not isinstance(supported, list)
        or not supported
        or not all(isinstance(v, str) for v in supported)
    ):
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the VERSION answer of {who}: "
            "field supportedVersions is missing or not a list of versions",
            f"its output was: {_excerpt(stdout)}",
        )
    return PluginInfo(current, tuple(supported))


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def version_info(
    plugin_type: str, *, cni_path: Sequence[str], executor: Exec | None = None
) -> PluginInfo:
    """Ask a plugin which spec versions it speaks (cached per binary path and mtime)."""
    executor = executor or default_exec()
    path = executor.find(plugin_type, cni_path)
    cache = executor.versions if isinstance(executor, SubprocessExec) else None
    stamp = _stamp(path) if cache is not None else None
    if cache is not None and stamp is not None and path in cache and cache[path][0] == stamp:
        return cache[path][1]
    # Dummy values for plugins built on an old skel that required them (libcni does the same).
    env = plugin_env("VERSION", RuntimeConf(netns="dummy", ifname="dummy", cni_path=("dummy",)))
    stdin = json.dumps({"cniVersion": versions.LATEST}).encode()
    outcome = await executor.run(path, stdin=stdin, env=env)
    if outcome.returncode != 0:
        err = plugin_error(plugin_type, outcome)
        if err.msg != "unknown CNI_COMMAND: VERSION":
            raise err.prefixed(f"plugin type={_q(plugin_type)} failed (version)")
        info = PluginInfo("0.1.0", ("0.1.0",))  # older than the VERSION command itself
    else:
        info = decode_version_info(plugin_type, outcome.stdout)
    if cache is not None and stamp is not None:
        cache[path] = (stamp, info)
    return info


# -- one plugin ------------------------------------------------------------------------------


async def exec_plugin(
    plugin_type: str,
    *,
    command: str,
    conf: bytes | str,
    rt: RuntimeConf,
    executor: Exec | None = None,
) -> bytes:
    """Run one plugin with a ready configuration; its stdout, or its error as it wrote it."""
    executor = executor or default_exec()
    path = executor.find(plugin_type, rt.cni_path)
    stdin = conf.encode() if isinstance(conf, str) else conf
    outcome = await executor.run(path, stdin=stdin, env=plugin_env(command, rt))
    return check_outcome(plugin_type, outcome)


async def exec_plugin_with_result(
    plugin_type: str,
    *,
    conf: bytes | str,
    rt: RuntimeConf,
    executor: Exec | None = None,
) -> Result:
    """ADD with one plugin and a ready configuration, for callers that build it themselves."""
    stdout = await exec_plugin(plugin_type, command="ADD", conf=conf, rt=rt, executor=executor)
    raw = conf if isinstance(conf, str) else conf.decode("utf-8", "replace")
    try:
        conf_version = json.loads(raw).get("cniVersion") or "0.1.0"
    except (ValueError, AttributeError):
        conf_version = "0.1.0"
    return decode_result(plugin_type, stdout, conf_version=str(conf_version))


# -- a configuration list ------------------------------------------------------------------


def plugin_description(plugin: NetConf) -> str:
    """libcni's ``pluginDescription``: ``type="macvlan"`` plus the plugin's own ``name``."""
    out = f"type={_q(plugin.type)}"
    name = plugin.raw.get("name")
    if isinstance(name, str) and name:
        out += f" name={_q(name)}"
    return out


def build_plugin_conf(
    conf_list: NetConfList,
    plugin: NetConf,
    *,
    capability_args: Mapping[str, Any],
    prev_result: Result | RawJSON | None,
) -> RawObject:
    """What one plugin of a list reads on stdin (libcni's ``buildOneConfig``).

    ``name`` and ``cniVersion`` come from the list; ``prevResult`` is the
    previous result in the list's version (or, for a dry run, a placeholder
    given as JSON text); ``runtimeConfig`` holds only the capabilities this
    plugin declares true, and is left as it was when there are none.
    """
    cni_version = conf_list.cni_version
    updates: dict[str, Any] = {"name": conf_list.name, "cniVersion": cni_version}
    if isinstance(prev_result, RawJSON):
        updates["prevResult"] = prev_result
    elif prev_result is not None:
        updates["prevResult"] = RawJSON(prev_result.to_json(cni_version))
    granted = plugin.capabilities
    runtime_config = {k: v for k, v in capability_args.items() if k in granted}
    if runtime_config:
        updates["runtimeConfig"] = runtime_config
    return plugin.raw.edit(updates)


async def _run_in_list(
    plugin: NetConf, conf: RawObject, *, command: str, rt: RuntimeConf, executor: Exec
) -> bytes:
    path = executor.find(plugin.type, rt.cni_path)
    outcome = await executor.run(path, stdin=conf.text.encode(), env=plugin_env(command, rt))
    return check_outcome(plugin.type, outcome)


def _failed(plugin: NetConf, action: str, err: CNIError) -> CNIError:
    return err.prefixed(f"plugin {plugin_description(plugin)} failed ({action})")


def _first_of(errors: list[CNIError]) -> CNIError:
    """The first error with its code; the others told in its details."""
    first = errors[0]
    if len(errors) == 1:
        return first
    also = "; ".join(str(e) for e in errors[1:])
    details = f"{first.details}; " if first.details else ""
    return CNIError(first.code, first.msg, f"{details}also: {also}")


async def add_network_list(
    conf_list: NetConfList, rt: RuntimeConf, *, executor: Exec | None = None
) -> Result:
    """ADD each plugin in order, each getting the previous one's result.

    Returns the last plugin's result in the version it wrote.  On an error
    the plugins before it are not undone here: the caller runs DEL, which
    every plugin must tolerate for a half-done ADD.
    """
    executor = executor or default_exec()
    validate_container_id(rt.container_id)
    validate_network_name(conf_list.name)
    validate_ifname(rt.ifname)
    result: Result | None = None
    for plugin in conf_list.plugins:
        try:
            conf = build_plugin_conf(
                conf_list, plugin, capability_args=rt.capability_args, prev_result=result
            )
            stdout = await _run_in_list(plugin, conf, command="ADD", rt=rt, executor=executor)
            result = decode_result(plugin.type, stdout, conf_version=conf_list.cni_version)
        except CNIError as err:
            raise _failed(plugin, "add", err) from err
    if result is None:  # pragma: no cover - a NetConfList always has plugins
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"network {_q(conf_list.name)} has no plugins")
    return result


async def check_network_list(
    conf_list: NetConfList,
    rt: RuntimeConf,
    *,
    prev_result: Result | None,
    executor: Exec | None = None,
) -> None:
    """CHECK each plugin in order against the result of the ADD (``prev_result``).

    CHECK exists from 0.4.0 on: an older list is error 1, as in libcni; a
    list with ``disableCheck`` is not checked.
    """
    cni_version = conf_list.cni_version
    if not versions.allows_check(cni_version):
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"configuration version {_q(cni_version)} does not support the CHECK command",
            "CHECK exists from CNI 0.4.0 on",
        )
    if conf_list.disable_check:
        return
    executor = executor or default_exec()
    for plugin in conf_list.plugins:
        try:
            conf = build_plugin_conf(
                conf_list, plugin, capability_args=rt.capability_args, prev_result=prev_result
            )
            await _run_in_list(plugin, conf, command="CHECK", rt=rt, executor=executor)
        except CNIError as err:
            raise _failed(plugin, "check", err) from err


async def del_network_list(
    conf_list: NetConfList,
    rt: RuntimeConf,
    *,
    prev_result: Result | None = None,
    executor: Exec | None = None,
) -> None:
    """DEL each plugin in reverse order, with the ADD's result as ``prevResult`` (>= 0.4.0).

    Unlike libcni, a failing plugin does not stop the others: each DEL
    releases something of its own (a link, an IPAM lease), and stopping would
    leak it until the runtime retries.  The first error is raised with its
    code; later ones are named in its details.
    """
    executor = executor or default_exec()
    prev = prev_result if versions.allows_check(conf_list.cni_version) else None
    errors: list[CNIError] = []
    for plugin in reversed(conf_list.plugins):
        try:
            conf = build_plugin_conf(
                conf_list, plugin, capability_args=rt.capability_args, prev_result=prev
            )
            await _run_in_list(plugin, conf, command="DEL", rt=rt, executor=executor)
        except CNIError as err:
            errors.append(_failed(plugin, "delete", err))
    if errors:
        raise _first_of(errors)


async def gc_network_list(
    conf_list: NetConfList,
    *,
    valid_attachments: Iterable[tuple[str, str]],
    cni_path: Sequence[str],
    executor: Exec | None = None,
) -> None:
    """GC every plugin of the list, telling it which (container ID, ifname) pairs still live.

    GC exists from 1.1.0 on; older lists and lists with ``disableGC`` are
    left alone.  Every plugin is asked even when one fails, as in libcni.
    """
    cni_version = conf_list.cni_version
    if conf_list.disable_gc or not versions.allows_gc_status(cni_version):
        return
    executor = executor or default_exec()
    attachments = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid_attachments]
    rt = RuntimeConf(cni_path=tuple(cni_path))
    errors: list[CNIError] = []
    for plugin in conf_list.plugins:
        conf = plugin.raw.edit(
            {
                "name": conf_list.name,
                "cniVersion": cni_version,
                "cni.dev/valid-attachments": attachments,
            }
        )
        try:
            await _run_in_list(plugin, conf, command="GC", rt=rt, executor=executor)
        except CNIError as err:
            errors.append(_failed(plugin, "gc", err))
    if errors:
        raise _first_of(errors)


async def status_network_list(
    conf_list: NetConfList, *, cni_path: Sequence[str], executor: Exec | None = None
) -> None:
    """STATUS each plugin in order (1.1.0 on; older lists are ready by definition).

    The first error is returned exactly as the plugin wrote it, without a
    prefix, as libcni does: its code (50, 51) is what the runtime acts on.
    """
    cni_version = conf_list.cni_version
    if not versions.allows_gc_status(cni_version):
        return
    executor = executor or default_exec()
    rt = RuntimeConf(cni_path=tuple(cni_path))
    for plugin in conf_list.plugins:
        conf = plugin.raw.edit({"name": conf_list.name, "cniVersion": cni_version})
        await _run_in_list(plugin, conf, command="STATUS", rt=rt, executor=executor)


# -- an in-memory stand-in for plugin binaries ------------------------------------------


@dataclass(frozen=True)
class Call:
    """One plugin run recorded by `FakeExec`."""

    plugin: str
    path: str
    env: Mapping[str, str]
    stdin: bytes

    @property
    def command(self) -> str:
        return self.env.get("CNI_COMMAND", "")

    @property
    def conf(self) -> dict[str, Any]:
        """The configuration the plugin got, decoded (empty for VERSION)."""
        if not self.stdin.strip():
            return {}
        data = json.loads(self.stdin)
        return data if isinstance(data, dict) else {}


#: What a fake plugin answers: a result (as `Result`, a mapping or JSON text),
#: nothing (DEL, CHECK, ...), or a raw `Outcome` to play a misbehaving
#: binary.  Raising `CNIError` plays a plugin that prints that error.
Reply: TypeAlias = Result | Mapping[str, Any] | str | bytes | Outcome | None
Behaviour: TypeAlias = Callable[[Call], "Reply | Awaitable[Reply]"]


def _default_reply(call: Call) -> Reply:
    # Like a pass-through chained plugin (tuning, portmap): ADD returns prevResult.
    if call.command != "ADD":
        return None
    conf = call.conf
    prev = conf.get("prevResult")
    if isinstance(prev, dict):
        return prev
    return {"cniVersion": conf.get("cniVersion", versions.LATEST)}


class FakeExec:
    """Plugins as Python callables, for unit tests of the layers above.

    ``register("macvlan", behaviour)`` makes a plugin findable in any bin
    dir; every run is recorded in `calls` with its environment and stdin.
    VERSION is answered from the ``versions`` given at registration.
    """

    def __init__(self, plugins: Mapping[str, Behaviour | None] | None = None) -> None:
        self.calls: list[Call] = []
        self._plugins: dict[str, tuple[Behaviour | None, tuple[str, ...]]] = {}
        for plugin_type, behaviour in (plugins or {}).items():
            self.register(plugin_type, behaviour)

    def register(
        self,
        plugin_type: str,
        behaviour: Behaviour | None = None,
        *,
        supported_versions: Sequence[str] = versions.ALL,
    ) -> None:
        check_plugin_type(plugin_type)
        self._plugins[plugin_type] = (behaviour, tuple(supported_versions))

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        check_plugin_type(plugin_type)
        dirs = [p for p in paths if p]
        if plugin_type not in self._plugins or not dirs:
            raise _not_found(plugin_type, paths)
        return posixpath.join(dirs[0], plugin_type)

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        call = Call(posixpath.basename(path), path, dict(env), bytes(stdin))
        self.calls.append(call)
        if call.plugin not in self._plugins:
            raise CNIError(Code.IO_FAILURE, f"failed to execute plugin {_q(path)}: No such file")
        behaviour, supported = self._plugins[call.plugin]
        if call.command == "VERSION":
            answer = {"cniVersion": supported[-1], "supportedVersions": list(supported)}
            return Outcome(0, json.dumps(answer).encode())
        try:
            reply = behaviour(call) if behaviour else _default_reply(call)
            if inspect.isawaitable(reply):
                reply = await reply
        except CNIError as err:
            return Outcome(1, err.to_json(str(call.conf.get("cniVersion") or "1.0.0")).encode())
        return _as_outcome(reply)

    def commands(self) -> list[tuple[str, str]]:
        """``(plugin, command)`` of every run but VERSION, in order."""
        return [(c.plugin, c.command) for c in self.calls if c.command != "VERSION"]


def _as_outcome(reply: Reply) -> Outcome:
    if isinstance(reply, Outcome):
        return reply
    if reply is None:
        return Outcome(0)
    if isinstance(reply, Result):
        return Outcome(0, reply.to_json().encode())
    if isinstance(reply, str):
        return Outcome(0, reply.encode())
    if isinstance(reply, bytes):
        return Outcome(0, reply)
    return Outcome(0, json.dumps(dict(reply)).encode())
