"""Asking the daemon over its unix socket, with the standard library only.

`multihome status`, the test helper and the benchmarks talk to the daemon
the way the shim does: HTTP/1.1 over ``AF_UNIX``.  ``http.client`` does it
with a socket of our own; nothing heavier is loaded for a one-shot command.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any


class DaemonUnavailable(Exception):
    """No daemon answered at the socket; the message names the path and the cause."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("multihome", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    socket_path: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One request; `DaemonUnavailable` when the socket does not answer."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    except (OSError, http.client.HTTPException) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DaemonUnavailable(
            f"no multihome daemon answered at {socket_path}: {reason or type(err).__name__}"
        ) from err
    finally:
        conn.close()


def get_json(socket_path: str, path: str, *, timeout: float = 10.0) -> Any:
    answer = request(socket_path, "GET", path, timeout=timeout)
    if answer.status != 200:
        raise DaemonUnavailable(
            f"the multihome daemon at {socket_path} answered {path} with HTTP {answer.status}: "
            f"{answer.body[:200].decode(errors='replace')}"
        )
    return answer.json()
