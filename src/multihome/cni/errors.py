"""The one error type on the wire: a CNI error with the spec's codes.

Everything a user can see fail ends as a `CNIError`, printed as the spec's
JSON on stdout.  Internal causes are chained with ``raise ... from``, never
wrapped into the message of another `CNIError`.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """Error codes of the CNI spec (SPEC.md, "Error").

    0-99 are reserved by the spec; 100+ are free for plugins.
    """

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    CONTAINER_UNKNOWN = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    PLUGIN_NOT_AVAILABLE_LIMITED = 51
    # libcni's skel wraps errors that are not CNI errors with 999.
    INTERNAL = 999


class CNIError(Exception):
    """A CNI error: ``{"cniVersion", "code", "msg", "details"}`` on the wire."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CNIError) and (self.code, self.msg, self.details) == (
            other.code,
            other.msg,
            other.details,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.msg, self.details))

    def to_dict(self, cni_version: str = "1.0.0") -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str = "1.0.0") -> str:
        return json.dumps(self.to_dict(cni_version))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CNIError:
        """An error as a plugin printed it; a malformed one keeps what it can."""
        code = data.get("code")
        msg = data.get("msg")
        details = data.get("details")
        return cls(
            code if isinstance(code, int) and not isinstance(code, bool) else Code.INTERNAL,
            msg if isinstance(msg, str) else _shown(msg),
            details if isinstance(details, str) else "",
        )

    def prefixed(self, prefix: str) -> CNIError:
        """The same error with context in front, keeping the code: never wrap."""
        return CNIError(self.code, f"{prefix}: {self.msg}", self.details)


def _shown(value: Any) -> str:
    """A non-string ``msg`` as JSON text; one nested too deeply to print is only named."""
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return f"(a {type(value).__name__} nested too deeply to show)"
