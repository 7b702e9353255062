"""The PATCH content types, applied to one JSON object.

* ``application/merge-patch+json``: RFC 7386, complete.
* ``application/strategic-merge-patch+json``: maps merge as in a merge patch
  and ``$patch: replace|delete`` on a map is honoured; lists are replaced
  whole (the double knows no merge keys such as a container's ``name``), and
  ``$setElementOrder/...`` hints are dropped.  Enough for metadata and
  annotations, which is what multihome patches.
* ``application/json-patch+json``: RFC 6902, all six operations.

Server-side apply (``application/apply-patch+yaml``) is refused with 415.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from multihome.testing.apiserver import status
from multihome.testing.apiserver.status import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
ACCEPTED = (JSON_PATCH, MERGE, STRATEGIC)

_DELETE = object()


def apply(obj: dict[str, Any], body: bytes, content_type: str) -> dict[str, Any]:
    """`obj` with the patch in `body` applied; `obj` itself is left alone."""
    if content_type not in ACCEPTED:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(ACCEPTED)}",
        )
    try:
        patch = json.loads(body)
    except ValueError as e:
        raise status.bad_request(f"error decoding patch: {e}") from e
    if content_type == JSON_PATCH:
        return json_patch(obj, patch)
    if not isinstance(patch, dict):
        raise status.bad_request("error decoding patch: a merge patch must be a JSON object")
    merged = _merge(obj, patch, strategic=content_type == STRATEGIC)
    if not isinstance(merged, dict):
        raise status.bad_request("error decoding patch: the patch removes the whole object")
    return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    return _merge(target, patch, strategic=False)


def _merge(target: Any, patch: Any, *, strategic: bool) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    if strategic:
        directive = patch.pop("$patch", None)
        if directive == "delete":
            return _DELETE
        if directive == "replace":
            return copy.deepcopy(patch)
        if directive is not None:
            raise _rejected(
                f"unknown patch directive {directive!r} (the double knows replace, delete)"
            )
        for key in [k for k in patch if k.startswith("$setElementOrder/")]:
            del patch[key]
        unknown = [k for k in patch if k.startswith("$")]
        if unknown:
            raise _rejected(f"the API double does not support the directive {unknown[0]!r}")
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
            continue
        merged = _merge(result.get(key), value, strategic=strategic)
        if merged is _DELETE:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902.  A malformed patch is a 400; one that does not apply, a 422."""
    if not isinstance(ops, list) or not all(
        isinstance(op, dict) and isinstance(op.get("path"), str) for op in ops
    ):
        raise status.bad_request("json patch must be a list of operations, each with a path")
    root: Any = copy.deepcopy(doc)
    for op in ops:
        name = op.get("op")
        path = op["path"]
        if name in ("add", "replace", "test") and "value" not in op:
            raise status.bad_request(f"json patch {name} operation on {path!r} has no value")
        if name in ("move", "copy") and not isinstance(op.get("from"), str):
            raise status.bad_request(f"json patch {name} operation on {path!r} has no from")
        if name == "add":
            root = _add(root, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            root, _ = _remove(root, path)
        elif name == "replace":
            root, _ = _remove(root, path)
            root = _add(root, path, copy.deepcopy(op["value"]))
        elif name == "move":
            root, value = _remove(root, op["from"])
            root = _add(root, path, value)
        elif name == "copy":
            root = _add(root, path, copy.deepcopy(_get(root, op["from"])))
        elif name == "test":
            if _get(root, path) != op["value"]:
                raise _rejected(f"testing value {path} failed: test failed")
        else:
            raise status.bad_request(f"unexpected json patch operation {name!r}")
    if not isinstance(root, dict):
        raise _rejected("the patched document is not an object")
    return root


def _rejected(cause: str) -> ApiError:
    # The real server hides the cause behind a generic message; keep it in the
    # details, where a person debugging a test will look.
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": cause}]},
    )


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _rejected(f"JSON pointer {pointer!r} does not start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(root: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    node = root
    for token in tokens[:-1]:
        node = _child(node, token, pointer)
    return node, tokens[-1]


def _child(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise _rejected(f"path {pointer!r} does not exist")


def _get(root: Any, pointer: str) -> Any:
    node = root
    for token in _tokens(pointer):
        node = _child(node, token, pointer)
    return node


def _add(root: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, last = _parent(root, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last == "-":
        parent.append(value)
    elif isinstance(parent, list) and last.isdigit() and int(last) <= len(parent):
        parent.insert(int(last), value)
    else:
        raise _rejected(f"cannot add at {pointer!r}")
    return root


def _remove(root: Any, pointer: str) -> tuple[Any, Any]:
    if pointer == "":
        return None, root
    parent, last = _parent(root, pointer)
    value = _child(parent, last, pointer)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return root, value
