"""Field and label selectors, as list and watch requests carry them.

Field selectors: ``key=value``, ``key==value``, ``key!=value``, comma-joined,
on ``metadata.name``, ``metadata.namespace`` and the labels each kind
supports (for pods, ``spec.nodeName`` above all: the daemon watches only its
own node).  Label selectors: equality, inequality, existence (``key``,
``!key``) and set terms (``key in (a,b)``, ``key notin (a)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from multihome.testing.apiserver import status
from multihome.testing.apiserver.resources import Kind

Selector = Callable[[dict[str, Any]], bool]

_ALWAYS = frozenset({"metadata.name", "metadata.namespace"})
_TERM = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$")
_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def everything(_: dict[str, Any]) -> bool:
    return True


def field_value(obj: dict[str, Any], path: str) -> str:
    """The value a field selector compares: "" when absent, Go's spelling of bools."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(text: str, kind: Kind) -> Selector:
    if not text.strip():
        return everything
    terms: list[tuple[str, bool, str]] = []
    for raw in text.split(","):
        match = _TERM.match(raw)
        if not match:
            raise status.bad_request(f"invalid selector: '{text}'; can't understand '{raw}'")
        key, op, value = match.groups()
        if key not in _ALWAYS and kind.field_labels is not None and key not in kind.field_labels:
            raise status.bad_request(f"field label not supported: {key}")
        terms.append((key, op != "!=", value))

    def select(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, key) == value) == equal for key, equal, value in terms)

    return select


def label_selector(text: str) -> Selector:
    if not text.strip():
        return everything
    tests: list[Callable[[dict[str, str]], bool]] = []
    for raw in re.split(r",(?![^()]*\))", text):
        tests.append(_label_term(raw.strip(), text))

    def select(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return select


def _label_term(term: str, text: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET_TERM.match(term):
        key, op, values = match.group(1), match.group(2), match.group(3)
        members = {v.strip() for v in values.split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in members
        return lambda labels: labels.get(key) not in members
    if match := _TERM.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if re.fullmatch(r"!\s*[\w./-]+", term):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if re.fullmatch(r"[\w./-]+", term):
        return lambda labels: term in labels
    raise status.bad_request(f"unable to parse requirement: '{term}' in label selector '{text}'")
