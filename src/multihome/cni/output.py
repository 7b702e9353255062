"""Reading what a plugin printed: its result, its error, its VERSION answer.

Whatever a plugin prints, the caller gets a `Result`, a `PluginInfo` or a
`CNIError` with a code and a message that names the plugin, never a
traceback.
"""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass

from .errors import CNIError, Code
from .finding import quote
from .process import Outcome
from .result import Result

log = logging.getLogger(__name__)

_EXCERPT = 400


def excerpt(data: bytes | str) -> str:
    """The start of what a plugin printed, for a message."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def plugin_error(plugin_type: str, outcome: Outcome) -> CNIError:
    """The error of a plugin that exited non-zero.

    The spec's JSON error on stdout is returned as the plugin wrote it (code,
    msg, details).  Without one, the message says how the plugin ended and
    shows its stderr, where Go plugins write panics and log lines.
    """
    who = f"plugin {quote(plugin_type)}"
    stdout = outcome.stdout.strip()
    if stdout:
        try:
            data = json.loads(stdout)
        except (ValueError, RecursionError):  # deep nesting is untrusted input too
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
    stderr = excerpt(outcome.stderr)
    if stderr:
        details = f"its stdout was: {excerpt(stdout)}" if stdout else ""
        return CNIError(Code.INTERNAL, f"{who} {how}: {stderr}", details)
    if stdout:
        return CNIError(
            Code.DECODE_FAILURE,
            f"{who} {how} and printed something that is not a CNI error: {excerpt(stdout)}",
            'a failing plugin prints {"code": ..., "msg": ...} on stdout',
        )
    return CNIError(Code.INTERNAL, f"{who} {how} and printed no error message")


def check_outcome(plugin_type: str, outcome: Outcome) -> bytes:
    """The stdout of a plugin that succeeded, else `plugin_error`."""
    if outcome.returncode != 0:
        raise plugin_error(plugin_type, outcome)
    if outcome.stderr.strip():
        log.debug("plugin %s wrote to stderr: %s", plugin_type, excerpt(outcome.stderr))
    return outcome.stdout


def decode_result(plugin_type: str, stdout: bytes, *, conf_version: str) -> Result:
    """The result an ADD printed, in whatever version the plugin wrote it.

    A result without ``cniVersion`` is taken to be in the configuration's
    version, as libcni does (``fixupResultVersion``, cni#895).
    """
    who = f"plugin {quote(plugin_type)}"
    if not stdout.strip():
        raise CNIError(Code.DECODE_FAILURE, f"{who} returned no result", "ADD must print a result")
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError) as err:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the result of {who}: {err}",
            f"its output was: {excerpt(stdout)}",
        ) from err
    if not isinstance(data, dict):
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the result of {who}: it is not a JSON object",
            f"its output was: {excerpt(stdout)}",
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
    who = f"plugin {quote(plugin_type)}"
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError) as err:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the VERSION answer of {who}: {err}",
            f"its output was: {excerpt(stdout)}",
        ) from err
    current = data.get("cniVersion") if isinstance(data, dict) else None
    supported = data.get("supportedVersions") if isinstance(data, dict) else None
    if not isinstance(current, str) or not current:
        raise CNIError(
            Code.DECODE_FAILURE,
            f"failed to decode the VERSION answer of {who}: missing field cniVersion",
            f"its output was: {excerpt(stdout)}",
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
            f"its output was: {excerpt(stdout)}",
        )
    return PluginInfo(current, tuple(supported))
