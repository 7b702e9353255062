"""Plugins as Python callables: an in-memory stand-in for plugin binaries in tests."""

from __future__ import annotations

import inspect
import json
import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from . import version as versions
from .errors import CNIError, Code
from .finding import check_plugin_type, not_found, quote
from .process import Outcome
from .result import Result


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
            raise not_found(plugin_type, paths)
        return posixpath.join(dirs[0], plugin_type)

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        call = Call(posixpath.basename(path), path, dict(env), bytes(stdin))
        self.calls.append(call)
        if call.plugin not in self._plugins:
            raise CNIError(Code.IO_FAILURE, f"failed to execute plugin {quote(path)}: No such file")
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
