"""The daemon's Kubernetes API client: six calls over aiohttp, paced and counted.

The node daemon lists and watches pods and NADs, GETs one pod now and
then, PATCHes ``pods/<name>/status`` (or PUTs it, where the role allows
only that) and creates Events; that is all.
aiohttp already serves the daemon's socket, so it carries these calls too:
lightkube would add httpx and its model package to the daemon's memory for
these six calls (design.md: 50 MiB for the whole daemon).

What the client adds to HTTP is what client-go's REST client adds: a QPS and
burst budget shared by every call, timeouts from the configuration, retries
with backoff and jitter for idempotent calls on 5xx, 429 and connection
errors, bearer tokens re-read when their file rotates (and once more on a
401), and a count of requests by verb for the daemon's metrics.  API
failures are `KubeApiError` (the server's ``Status``) or `ApiUnreachable`;
callers turn them into CNI errors where a user sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp

from multihome import __version__

from .credentials import Credentials
from .pacing import Backoff, Clock, Sleep, TokenBucket

log = logging.getLogger(__name__)

Object = dict[str, Any]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: HTTP codes worth another try: the server is overloaded, restarting or timed out.
TRANSIENT = frozenset({429, 500, 502, 503, 504})


class KubeApiError(Exception):
    """The API server answered with an error ``Status``."""

    def __init__(
        self, code: int, reason: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_status(
        cls, status: Any, *, code: int = 0, retry_after: float | None = None
    ) -> KubeApiError:
        """From a ``Status`` body (an error answer or a watch ERROR event)."""
        body: dict[str, Any] = status if isinstance(status, dict) else {}
        details = body.get("details")
        if not isinstance(details, dict):
            details = {}
        if retry_after is None and isinstance(details.get("retryAfterSeconds"), int):
            retry_after = float(details["retryAfterSeconds"])
        got = body.get("code")
        return cls(
            got if isinstance(got, int) and got else code,
            str(body.get("reason") or ""),
            str(body.get("message") or f"HTTP {code}"),
            retry_after=retry_after,
        )

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT

    @property
    def precondition_failed(self) -> bool:
        """A 409 that no retry can fix: the object is another incarnation (UID)."""
        return self.code == 409 and "Precondition failed" in self.message

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.code}{', ' + self.reason if self.reason else ''})"


class ApiUnreachable(Exception):
    """No answer from the API server: connection refused or reset, DNS, TLS, timeout."""


class KubeClient:
    """Requests to one API server with one set of credentials.

    ``requests`` counts every request sent (retries included) by audit verb:
    get, list, watch, create, update, patch.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        qps: float = 10.0,
        burst: int = 20,
        timeout: float = 30.0,
        retry_seconds: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.credentials = credentials
        self.server = credentials.server.rstrip("/")
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.requests: Counter[str] = Counter()
        self._tokens = credentials.tokens()
        self._ssl = credentials.ssl_context()
        self._bucket = TokenBucket(rate=qps, burst=burst, clock=clock, sleep=sleep)
        self._backoff = (backoff_initial, backoff_max)
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle -------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
                headers={"Accept": JSON, "User-Agent": f"multihome/{__version__}"},
                # Each request sets its own timeout; none is hard-coded here.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- the calls --------------------------------------------------------

    async def get(self, path: str, *, retry_seconds: float | None = None) -> Object:
        """One object; retried on transient errors for `retry_seconds` (default: the client's)."""
        budget = self.retry_seconds if retry_seconds is None else retry_seconds
        return await self._call("get", "GET", path, retry_seconds=budget)

    async def list(self, path: str, *, query: dict[str, str]) -> Object:
        """One page of a collection; retried like `get`."""
        return await self._call("list", "GET", path, query=query, retry_seconds=self.retry_seconds)

    async def patch(
        self,
        path: str,
        body: Object,
        *,
        content_type: str = MERGE_PATCH,
        retry_seconds: float = 0.0,
        retry_conflicts: bool = False,
    ) -> Object:
        """A patch; the caller says whether it is idempotent enough to retry."""
        return await self._call(
            "patch",
            "PATCH",
            path,
            body=body,
            content_type=content_type,
            retry_seconds=retry_seconds,
            retry_conflicts=retry_conflicts,
        )

    async def update(self, path: str, body: Object, *, retry_seconds: float = 0.0) -> Object:
        """A PUT; its resourceVersion makes a retry that had gone through a 409, not a repeat."""
        return await self._call("update", "PUT", path, body=body, retry_seconds=retry_seconds)

    async def create(self, path: str, body: Object, *, retry_seconds: float = 0.0) -> Object:
        return await self._call("create", "POST", path, body=body, retry_seconds=retry_seconds)

    async def watch(self, path: str, *, query: dict[str, str]) -> AsyncGenerator[Object, None]:
        """The events of one watch request, until the server ends it.

        The server ends a watch after ``timeoutSeconds`` (which the query
        should carry); the read timeout is that plus the request timeout,
        so a silent, dead connection is noticed too.
        """
        query = {**query, "watch": "true"}
        server_timeout = float(query.get("timeoutSeconds") or 0)
        read = server_timeout + self.timeout if server_timeout else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=read)
        async with self._send("watch", "GET", path, query=query, timeout=timeout) as response:
            buffer = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    # Lines, not StreamReader.readline: a pod can carry 256 KiB
                    # of annotations, more than aiohttp's line limit.
                    while (end := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:end])
                        del buffer[: end + 1]
                        if line.strip():
                            yield _decode(line, path)
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                raise ApiUnreachable(f"watch {path}: {_describe(err)}") from err
            if buffer.strip():
                yield _decode(bytes(buffer), path)

    # -- plumbing ---------------------------------------------------------

    async def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Object | None = None,
        content_type: str = JSON,
        retry_seconds: float = 0.0,
        retry_conflicts: bool = False,
    ) -> Object:
        deadline = self._clock() + retry_seconds
        backoff = Backoff(initial=self._backoff[0], maximum=self._backoff[1])
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        while True:
            try:
                async with self._send(
                    verb,
                    method,
                    path,
                    query=query,
                    data=data,
                    content_type=content_type,
                    timeout=timeout,
                ) as response:
                    try:
                        payload = await response.read()
                    except (aiohttp.ClientError, TimeoutError, OSError) as err:
                        raise ApiUnreachable(f"{verb} {path}: {_describe(err)}") from err
                return _decode(payload, path)
            except KubeApiError as err:
                retry = err.transient or (
                    retry_conflicts and err.code == 409 and not err.precondition_failed
                )
                if not retry:
                    raise
                failure: Exception = err
                delay = max(backoff.next(), err.retry_after or 0.0)
            except ApiUnreachable as err:
                failure = err
                delay = backoff.next()
            if self._clock() + delay > deadline:
                raise failure
            log.debug("retrying %s %s in %.2fs after: %s", verb, path, delay, failure)
            await self._sleep(delay)

    @contextlib.asynccontextmanager
    async def _send(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = JSON,
        timeout: aiohttp.ClientTimeout,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request and its response: pacing, auth, error statuses.

        A 401 re-reads the token file and, when the token changed, sends the
        request once more: a rotated token is used at once, not at the next call.
        """
        headers = {}
        if data is not None:
            headers["Content-Type"] = content_type
        send: dict[str, Any] = {"params": query, "data": data, "timeout": timeout}
        if self.credentials.tls_server_name:
            send["server_hostname"] = self.credentials.tls_server_name
        token = self._tokens.current()
        response = await self._attempt(verb, method, path, token=token, headers=headers, **send)
        if response.status == 401:
            fresh = self._tokens.current(force=True)
            if fresh != token:
                response.release()
                response = await self._attempt(
                    verb, method, path, token=fresh, headers=headers, **send
                )
        try:
            if response.status >= 400:
                raise await _error(response)
            yield response
        finally:
            response.release()

    async def _attempt(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        token: str | None,
        headers: dict[str, str],
        **send: Any,
    ) -> aiohttp.ClientResponse:
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        await self._bucket.acquire()
        self.requests[verb] += 1
        try:
            return await self._open().request(method, self.server + path, headers=headers, **send)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise ApiUnreachable(f"{verb} {path} at {self.server}: {_describe(err)}") from err


async def _error(response: aiohttp.ClientResponse) -> KubeApiError:
    try:
        status: Any = json.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, RecursionError):
        status = {}
    header = response.headers.get("Retry-After", "")
    retry_after = float(header) if header.isdigit() else None
    return KubeApiError.from_status(status, code=response.status, retry_after=retry_after)


def _decode(payload: bytes, path: str) -> Object:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise ApiUnreachable(f"{path}: the API server sent something that is not JSON") from err
    if not isinstance(value, dict):
        raise ApiUnreachable(f"{path}: the API server sent JSON that is not an object")
    return value


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__
