"""Running CNI plugins and configuration lists, as libcni does.

multihome is a CNI runtime towards its delegates, so this module does what
libcni does (``libcni/api.go``): run a plugin with its configuration, ask
it VERSION, and run a configuration list as a chain (ADD in order with
``prevResult``, DEL in reverse, CHECK, GC, STATUS), injecting ``name``,
``cniVersion``, ``runtimeConfig`` and ``prevResult`` while every other field
of each plugin's configuration keeps its bytes.  Finding a binary
(`finding`), running a process (`process`) and decoding its output
(`output`) are libcni's ``pkg/invoke``.  Everything is async: the daemon
runs the delegates of several networks concurrently on one event loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import version as versions
from .config import NetConf, NetConfList, RawJSON, RawObject
from .errors import CNIError, Code
from .finding import quote
from .output import PluginInfo, check_outcome, decode_result, decode_version_info, plugin_error
from .process import Exec, RuntimeConf, default_exec, plugin_env
from .request import validate_container_id, validate_ifname, validate_network_name
from .result import Result


def binary_stamp(path: str) -> tuple[int, int, int] | None:
    """What tells a plugin binary changed (mtime, size, inode): VERSION caches key on it."""
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
    # A SubprocessExec, or a wrapper that shares its cache (the daemon's MeteredExec).
    cache: dict[str, tuple[tuple[int, int, int], PluginInfo]] | None = getattr(
        executor, "versions", None
    )
    stamp = binary_stamp(path) if cache is not None else None
    if cache is not None and stamp is not None and path in cache and cache[path][0] == stamp:
        return cache[path][1]
    # Dummy values for plugins built on an old skel that required them (libcni does the same).
    env = plugin_env("VERSION", RuntimeConf(netns="dummy", ifname="dummy", cni_path=("dummy",)))
    stdin = json.dumps({"cniVersion": versions.LATEST}).encode()
    outcome = await executor.run(path, stdin=stdin, env=env)
    if outcome.returncode != 0:
        err = plugin_error(plugin_type, outcome)
        if err.msg != "unknown CNI_COMMAND: VERSION":
            raise err.prefixed(f"plugin type={quote(plugin_type)} failed (version)")
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
    except (ValueError, AttributeError, RecursionError):
        conf_version = "0.1.0"
    return decode_result(plugin_type, stdout, conf_version=str(conf_version))


# -- a configuration list ------------------------------------------------------------------


def plugin_description(plugin: NetConf) -> str:
    """libcni's ``pluginDescription``: ``type="macvlan"`` plus the plugin's own ``name``."""
    out = f"type={quote(plugin.type)}"
    name = plugin.raw.get("name")
    if isinstance(name, str) and name:
        out += f" name={quote(name)}"
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
    # A list without a version gets "" as in libcni; the plugin reads that as 0.1.0.
    updates: dict[str, Any] = {"name": conf_list.name, "cniVersion": conf_list.declared_version}
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
        name = quote(conf_list.name)
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"network {name} has no plugins")
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
            f"configuration version {quote(cni_version)} does not support the CHECK command",
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
