"""Finding a plugin binary by its ``type`` (libcni's ``invoke.FindInPath``).

A NAD is user input that makes this node run programs, so a ``type`` is a
plain file name looked up in the configured bin dirs, never a path, and it
is checked before anything runs.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence

from .errors import CNIError, Code

_EXCERPT = 400
_TYPE_RULES = (
    "a plugin 'type' is the file name of a plugin binary in the CNI bin dirs, such as "
    '"macvlan"; it cannot be empty, ".", or contain "/", ".." or NUL'
)


def quote(value: str) -> str:
    """A value as it appears in messages: JSON-quoted, so blanks and control characters show."""
    return json.dumps(value, ensure_ascii=False)


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
    shown = quote(plugin_type) if isinstance(plugin_type, str) else repr(plugin_type)
    raise CNIError(
        Code.INVALID_NETWORK_CONFIG, f"invalid plugin type {shown}: {reason}", _TYPE_RULES
    )


def not_found(plugin_type: str, paths: Sequence[str]) -> CNIError:
    # libcni's wording (`invoke.FindInPath`), which users and tools match on.
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"failed to find plugin {quote(plugin_type)} in path [{' '.join(paths)}]",
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
    raise not_found(plugin_type, paths)
