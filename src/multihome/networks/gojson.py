"""JSON objects read as Go's ``encoding/json`` reads them into a struct.

Annotations and ``00-multus.conf`` files were written for Multus, which
decodes them with Go: a key matches a field exactly or, failing that, with
another letter case (``"Name"``, ``"IPS"``), and when a field appears twice
the later value wins.  multihome accepts the same input, and tells the caller
which keys matched only by case and which matched nothing, so it can warn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Pairs(list[tuple[str, Any]]):
    """A JSON object's members in document order, duplicates kept."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> Pairs:
    return Pairs(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_pairs(text: str) -> Any:
    """Decode JSON keeping each object as `Pairs`; `ValueError` on bad input.

    NaN and Infinity are refused (they are not JSON, and Go refuses them).
    """
    return json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)


def plain(value: Any) -> Any:
    """A value decoded with `loads_pairs` as plain dicts and lists (last duplicate wins)."""
    if isinstance(value, Pairs):
        return {k: plain(v) for k, v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@dataclass(eq=False)
class Matched:
    values: dict[str, Any] = field(default_factory=dict)
    #: Keys that matched a field only by letter case: ``(as written, field)``.
    folded: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def match_fields(
    members: Iterable[tuple[str, Any]] | Mapping[str, Any], fields: Iterable[str]
) -> Matched:
    """Assign the members of an object to ``fields`` as Go would.

    Go ignores a JSON ``null`` for a field it decodes into a plain value, so
    a null leaves the field unset here too.
    """
    known = list(fields)
    by_fold: dict[str, str] = {}
    for name in known:
        by_fold.setdefault(name.casefold(), name)
    out = Matched()
    items = members.items() if isinstance(members, Mapping) else members
    for key, value in items:
        if key in known:
            name = key
        elif key.isascii() and key.casefold() in by_fold:
            name = by_fold[key.casefold()]
            out.folded.append((key, name))
        else:
            out.unknown.append(key)
            continue
        if value is None:
            out.values.pop(name, None)
        else:
            out.values[name] = value
    return out
