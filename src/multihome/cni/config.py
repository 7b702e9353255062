"""Network configurations and configuration lists, kept as their source text.

A delegate's configuration belongs to its plugin: multihome reads the fields
the CNI spec defines and passes every other field on exactly as written
(numbers, key order, escapes), because plugins such as calico carry their own
fields (a ``kubeconfig`` path, big integers) that a decode/encode round trip
through Python objects could alter.  `RawObject` therefore keeps the text and
the span of every top-level member; an edit rewrites only the members it
touches and copies the other members' bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import version as versions
from .errors import CNIError, Code

#: JSON's whitespace (RFC 8259), as json.decoder skips it.
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _skip(text: str, i: int) -> int:
    found = _WHITESPACE.match(text, i)
    return found.end() if found else i


def _expect(text: str, i: int, char: str) -> None:
    if i >= len(text) or text[i] != char:
        found = repr(text[i]) if i < len(text) else "end of input"
        raise ValueError(f"expected {char!r} at offset {i}, found {found}")


_Span = tuple[int, int, int, int]


def _scan_object(text: str, start: int) -> tuple[dict[str, _Span], dict[str, Any], int]:
    """Spans ``(key_start, key_end, value_start, value_end)`` and values of each member, the end."""
    members: dict[str, _Span] = {}
    values: dict[str, Any] = {}
    i = _skip(text, start)
    _expect(text, i, "{")
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        return members, values, i + 1
    while True:
        _expect(text, i, '"')
        key_start = i
        key, key_end = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _skip(text, key_end)
        _expect(text, i, ":")
        value_start = _skip(text, i + 1)
        try:
            value, value_end = _decoder.raw_decode(text, value_start)
        except json.JSONDecodeError as err:
            raise ValueError(f"{err.msg} at offset {err.pos}") from err
        # Later duplicates win, as in every JSON decoder the plugins use.
        members.pop(key, None)
        members[key] = (key_start, key_end, value_start, value_end)
        values.pop(key, None)
        values[key] = value
        i = _skip(text, value_end)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
            continue
        _expect(text, i, "}")
        return members, values, i + 1


def _scan_array(text: str, start: int) -> list[tuple[int, int]]:
    """Spans of the elements of the array that starts at ``start``."""
    spans: list[tuple[int, int]] = []
    i = _skip(text, start)
    _expect(text, i, "[")
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "]":
        return spans
    while True:
        try:
            _, end = _decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            raise ValueError(f"{err.msg} at offset {err.pos}") from err
        spans.append((i, end))
        i = _skip(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
            continue
        _expect(text, i, "]")
        return spans


@dataclass(frozen=True, eq=False)
class RawJSON:
    """JSON text to embed as it is (a plugin's result as prevResult, a plugin's conf)."""

    text: str


@dataclass(frozen=True, eq=False)
class RawObject:
    """A JSON object that remembers its source text (see the module docstring)."""

    text: str
    _spans: dict[str, _Span] = field(repr=False)
    _values: dict[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, data: str | bytes) -> RawObject:
        """Parse a JSON object; `ValueError` says what is wrong and where."""
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        spans, values, end = _scan_object(text, 0)
        if _skip(text, end) != len(text):
            raise ValueError(f"unexpected data after the JSON object at offset {end}")
        return cls(text, spans, values)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> RawObject:
        return cls.parse(json.dumps(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawObject) and self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of a member (a fresh copy is not made: do not mutate)."""
        return self._values.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A decoded deep copy, for code that wants to look, not to pass on."""
        return json.loads(self.text)  # type: ignore[no-any-return]

    def member_text(self, key: str) -> str:
        _, _, v0, v1 = self._spans[key]
        return self.text[v0:v1]

    def member_object(self, key: str) -> RawObject:
        return RawObject.parse(self.member_text(key))

    def array_items_text(self, key: str) -> list[str]:
        """The source text of each element of an array member."""
        _, _, v0, _ = self._spans[key]
        return [self.text[a:b] for a, b in _scan_array(self.text, v0)]

    def edit(
        self, updates: Mapping[str, Any] | None = None, remove: Iterable[str] = ()
    ) -> RawObject:
        """A copy with some members replaced, added (at the end) or removed.

        A value of type `RawJSON` or `RawObject` is embedded as its text;
        anything else is encoded with `json.dumps`.  Untouched members keep
        their bytes.  With nothing to change, the object itself comes back.
        """
        updates = dict(updates or {})
        drop = set(remove) & set(self._spans)
        if not updates and not drop:
            return self
        parts: list[str] = []
        for key, (k0, k1, v0, v1) in self._spans.items():
            if key in drop:
                continue
            key_text = self.text[k0:k1]
            if key in updates:
                parts.append(f"{key_text}:{_encode(updates.pop(key))}")
            else:
                parts.append(f"{key_text}:{self.text[v0:v1]}")
        parts.extend(f"{json.dumps(k)}:{_encode(v)}" for k, v in updates.items())
        return RawObject.parse("{" + ",".join(parts) + "}")


def _encode(value: Any) -> str:
    if isinstance(value, RawJSON | RawObject):
        return value.text
    return json.dumps(value)


def _require_str(obj: RawObject, key: str, what: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and value == ""):
        shown = "missing" if value is None else json.dumps(value)
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid {what}: field {key!r} is {shown}",
            f"{key!r} must be a non-empty string",
        )
    return value


def _parse_object(data: str | bytes, what: str) -> RawObject:
    try:
        return RawObject.parse(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CNIError(Code.DECODE_FAILURE, f"failed to decode {what}: {err}") from err


def _true_capabilities(obj: RawObject, what: str) -> frozenset[str]:
    caps = obj.get("capabilities")
    if caps is None:
        return frozenset()
    if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid {what}: field 'capabilities' is {json.dumps(caps)}",
            "'capabilities' must map capability names to true or false",
        )
    return frozenset(k for k, v in caps.items() if v)


#: The version libcni's plugins read a configuration without ``cniVersion`` as
#: (``create.DecodeVersion``): libcni loads such files and passes ``"cniVersion": ""``.
ASSUMED_VERSION = "0.1.0"


def _optional_version(raw: RawObject, what: str) -> None:
    """``cniVersion`` may be missing or empty (libcni loads that); if set it is a version."""
    version = raw.get("cniVersion")
    if version is None or version == "":
        return
    if not isinstance(version, str):
        _require_str(raw, "cniVersion", what)
    versions.parse(version)


@dataclass(frozen=True, eq=False)
class NetConf:
    """One plugin's configuration (a ``.conf`` file, or one entry of ``plugins``).

    Inside a list, ``name`` and ``cniVersion`` come from the list and are
    injected when the plugin runs, so they may be missing here.  A single
    configuration may lack ``cniVersion`` too, as libcni allows (see
    `NetConfList.cni_version`).
    """

    raw: RawObject

    @classmethod
    def parse(cls, data: str | bytes | RawObject, *, in_list: bool = False) -> NetConf:
        what = "plugin configuration" if in_list else "network configuration"
        raw = data if isinstance(data, RawObject) else _parse_object(data, what)
        _require_str(raw, "type", what)
        _require_str(raw, "name", what, required=not in_list)
        _optional_version(raw, what)
        _true_capabilities(raw, what)
        for key in ("ipam", "dns", "args", "runtimeConfig"):
            if key in raw and not isinstance(raw.get(key), dict):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid {what}: field {key!r} is {json.dumps(raw.get(key))}",
                    f"{key!r} must be a JSON object",
                )
        return cls(raw)

    @property
    def type(self) -> str:
        return str(self.raw.get("type"))

    @property
    def name(self) -> str:
        return str(self.raw.get("name") or "")

    @property
    def cni_version(self) -> str:
        return str(self.raw.get("cniVersion") or "")

    @property
    def capabilities(self) -> frozenset[str]:
        """The capabilities this plugin declares as ``true``."""
        return _true_capabilities(self.raw, "plugin configuration")

    @property
    def ipam_type(self) -> str:
        ipam = self.raw.get("ipam")
        return str(ipam.get("type", "")) if isinstance(ipam, dict) else ""

    @property
    def text(self) -> str:
        return self.raw.text


@dataclass(frozen=True, eq=False)
class NetConfList:
    """A ``.conflist``: a named, versioned chain of plugins."""

    raw: RawObject
    plugins: tuple[NetConf, ...]

    @classmethod
    def parse(cls, data: str | bytes | RawObject) -> NetConfList:
        what = "network configuration list"
        raw = data if isinstance(data, RawObject) else _parse_object(data, what)
        _require_str(raw, "name", what)
        _optional_version(raw, what)
        if "cniVersions" in raw:
            listed = raw.get("cniVersions")
            if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid {what}: field 'cniVersions' is {json.dumps(listed)}",
                    "'cniVersions' must be a list of version strings",
                )
        for key in ("disableCheck", "disableGC", "loadOnlyInlinedPlugins"):
            if key in raw and not isinstance(raw.get(key), bool | str):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid {what}: field {key!r} is {json.dumps(raw.get(key))}",
                    f"{key!r} must be true or false",
                )
        plugins_value = raw.get("plugins")
        if not isinstance(plugins_value, list) or not plugins_value:
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid {what} {raw.get('name')!r}: field 'plugins' is "
                f"{json.dumps(plugins_value) if plugins_value is not None else 'missing'}",
                "'plugins' must be a non-empty list of plugin configurations",
            )
        plugins = []
        for index, text in enumerate(raw.array_items_text("plugins")):
            try:
                plugins.append(NetConf.parse(_parse_object(text, what), in_list=True))
            except CNIError as err:
                raise err.prefixed(f"plugins[{index}]") from None
        return cls(raw, tuple(plugins))

    @classmethod
    def from_conf(cls, conf: NetConf) -> NetConfList:
        """Wrap a single configuration as a one-plugin list, as libcni does."""
        raw = RawObject.from_value({"cniVersion": conf.cni_version, "name": conf.name})
        raw = raw.edit({"plugins": RawJSON("[" + conf.text + "]")})
        return cls(raw, (conf,))

    @property
    def name(self) -> str:
        return str(self.raw.get("name"))

    @property
    def cni_version(self) -> str:
        """The version to run the chain with.

        From 1.1.0 a list may name several versions in ``cniVersions``; the
        highest one multihome supports wins, as in libcni.  Without any, the
        plugins get ``"cniVersion": ""`` (`declared_version`), which they
        read as 0.1.0: results, prevResult and the CHECK/GC gates use that.
        """
        return self.declared_version or ASSUMED_VERSION

    @property
    def declared_version(self) -> str:
        """The version the configuration names, "" when it names none (what libcni injects)."""
        listed = self.raw.get("cniVersions")
        if isinstance(listed, list):
            known = [v for v in listed if v in versions.ALL]
            if known:
                return str(max(known, key=versions.parse))
        return str(self.raw.get("cniVersion") or "")

    def _flag(self, key: str) -> bool:
        value = self.raw.get(key)
        return value is True or (isinstance(value, str) and value.lower() == "true")

    @property
    def disable_check(self) -> bool:
        return self._flag("disableCheck")

    @property
    def disable_gc(self) -> bool:
        return self._flag("disableGC")

    @property
    def capabilities(self) -> frozenset[str]:
        """Union of the capabilities the plugins of the chain declare."""
        out: frozenset[str] = frozenset()
        for plugin in self.plugins:
            out |= plugin.capabilities
        return out

    @property
    def text(self) -> str:
        return self.raw.text


def cni_version_of(data: bytes) -> str:
    """The top-level ``cniVersion`` of a configuration, or "" when it cannot be read.

    For error replies in the version the runtime speaks, even when the
    configuration itself is what is wrong.
    """
    try:
        value = json.loads(data).get("cniVersion")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return value if isinstance(value, str) else ""


def parse_network(data: str | bytes) -> NetConfList:
    """A ``.conf`` or a ``.conflist`` as a list: a conf has ``type``, a list ``plugins``."""
    raw = _parse_object(data, "network configuration")
    if isinstance(raw.get("type"), str) and raw.get("type"):
        return NetConfList.from_conf(NetConf.parse(raw))
    if "plugins" in raw:
        return NetConfList.parse(raw)
    raise CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"invalid network configuration {raw.get('name')!r}: it has neither 'type' nor 'plugins'",
        "a configuration needs a plugin 'type'; a configuration list needs 'plugins'",
    )
