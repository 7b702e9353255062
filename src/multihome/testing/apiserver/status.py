"""Errors as the real API server words them: `Status` objects.

Clients under test branch on ``code`` and ``reason`` and show ``message`` to
users, so each constructor here copies the wording of k8s.io/apimachinery's
``errors.New*`` helpers; a client that handles this double's errors handles
the real server's.
"""

from __future__ import annotations

from typing import Any

from multihome.testing.apiserver.resources import Kind

#: Reasons for the codes a test may inject with `fail_next`.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failed request; `status` is the body the server answers with."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(kind: Kind, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.plural
    details.update(extra)
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def already_exists(kind: Kind, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{kind.qualified} "{name}" already exists', _details(kind, name)
    )


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
        _details(kind, name),
    )


def stale(kind: Kind, name: str) -> ApiError:
    return conflict(
        kind,
        name,
        "the object has been modified; please apply your changes to the latest version"
        " and try again",
    )


def invalid(kind: Kind, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422: `causes` are (field, message) pairs, as field.ErrorList renders them."""
    rendered = [f"{field}: {message}" for field, message in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details: dict[str, Any] = {"name": name}
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.kind
    details["causes"] = [
        {"reason": _cause_reason(message), "message": message, "field": field}
        for field, message in causes
    ]
    return ApiError(
        422, "Invalid", f'{kind.qualified_kind} "{name}" is invalid: {summary}', details
    )


def _cause_reason(message: str) -> str:
    for prefix, reason in (
        ("Required value", "FieldValueRequired"),
        ("Too long", "FieldValueTooLong"),
        ("Unsupported value", "FieldValueNotSupported"),
    ):
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(
    kind: Kind,
    *,
    user: str,
    verb: str,
    subresource: str | None,
    namespace: str | None,
    name: str | None,
) -> ApiError:
    """403 from the authorizer, worded as apiserver's ``forbiddenMessage`` and ``NewForbidden``."""
    resource = kind.plural + (f"/{subresource}" if subresource else "")
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    why = f'User "{user}" cannot {verb} resource "{resource}" in API group "{kind.group}" {scope}'
    subject = f'{kind.qualified} "{name}"' if name else kind.qualified
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.plural
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
        {},
    )


def too_large_resource_version(requested: int, current: int) -> ApiError:
    return ApiError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        {"retryAfterSeconds": 1},
    )


def injected(code: int) -> ApiError:
    """A fault a test asked for; the wording says where it came from."""
    reason = REASONS.get(code, "")
    if code == 500:
        message = "Internal error occurred: fault injected by the API double"
    else:
        message = f"fault injected by the API double (HTTP {code})"
    details = {"retryAfterSeconds": 1} if code in (429, 503, 504) else None
    return ApiError(code, reason, message, details)
