"""The daemon's Kubernetes API client: six calls over HTTP/1.1, paced and counted.

The node daemon lists and watches pods and NADs, GETs one pod now and
then, PATCHes ``pods/<name>/status`` (or PUTs it, where the role allows
only that) and creates Events; that is all.  The thin plugin GETs, PATCHes
and creates once per invocation.  The transport is `httpclient` (asyncio
streams and h11, kept-alive connections): aiohttp cost the daemon 12.5 MiB
and the one-shot plugin some 200 ms of imports, and lightkube would add
httpx and its model package for these six calls (design.md: 50 MiB for
the whole daemon).

What the client adds to HTTP is what client-go's REST client adds: a QPS and
burst budget shared by every call, timeouts from the configuration, retries
with backoff and jitter for idempotent calls on 5xx, 429 and connection
errors, bearer tokens re-read when their file rotates (and once more on a
401), and a count of requests by verb for the daemon's metrics.  API
failures are `KubeApiError` (the server's ``Status``) or `ApiUnreachable`;
callers turn them into CNI errors where a user sees them.  No response is
read past `MAX_BODY`, so a broken server cannot make the daemon hold more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from multihome import __version__

from .credentials import Credentials
from .httpclient import BodyTooLarge, HttpClient, HttpError, Response
from .pacing import Backoff, Clock, Sleep, TokenBucket

log = logging.getLogger(__name__)

Object = dict[str, Any]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: HTTP codes worth another try: the server is overloaded, restarting or timed out.
TRANSIENT = frozenset({429, 500, 502, 503, 504})
#: The most a response body (or one watch event) may take.  A list page of 500
#: objects (the reflector's and doctor's page size) fits at 128 KiB an object,
#: far above real pods and NADs; etcd takes 1.5 MiB per object by default, so a
#: watch event is far below it.  Past it the server is broken, and reading on
#: would only grow the daemon (50 MiB in all) until the kernel kills it.
MAX_BODY = 64 * 1024 * 1024


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
        self._http: HttpClient | None = None

    # -- life cycle -------------------------------------------------------

    def _transport(self) -> HttpClient:
        if self._http is None:
            try:
                self._http = HttpClient(
                    self.server,
                    ssl_context=self._ssl,
                    server_hostname=self.credentials.tls_server_name,
                    headers={"Accept": JSON, "User-Agent": f"multihome/{__version__}"},
                )
            except ValueError as err:
                raise ApiUnreachable(str(err)) from None
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

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
        answer: bool = True,
    ) -> Object:
        """A patch; the caller says whether it is idempotent enough to retry.

        ``answer=False``: the object the server sends back is read but not
        decoded, and ``{}`` returned (a pod with its managedFields is tens of
        kilobytes that a caller writing one annotation throws away).
        """
        return await self._call(
            "patch",
            "PATCH",
            path,
            body=body,
            content_type=content_type,
            retry_seconds=retry_seconds,
            retry_conflicts=retry_conflicts,
            answer=answer,
        )

    async def update(self, path: str, body: Object, *, retry_seconds: float = 0.0) -> Object:
        """A PUT; its resourceVersion makes a retry that had gone through a 409, not a repeat."""
        return await self._call("update", "PUT", path, body=body, retry_seconds=retry_seconds)

    async def create(
        self, path: str, body: Object, *, retry_seconds: float = 0.0, answer: bool = True
    ) -> Object:
        """A new object; ``answer`` as for `patch`."""
        return await self._call(
            "create", "POST", path, body=body, retry_seconds=retry_seconds, answer=answer
        )

    async def watch(self, path: str, *, query: dict[str, str]) -> AsyncGenerator[Object, None]:
        """The events of one watch request, until the server ends it.

        The server ends a watch after ``timeoutSeconds`` (which the query
        should carry); the read timeout is that plus the request timeout,
        so a silent, dead connection is noticed too.
        """
        query = {**query, "watch": "true"}
        server_timeout = float(query.get("timeoutSeconds") or 0)
        read = server_timeout + self.timeout if server_timeout else None
        bounds = {"connect_timeout": self.timeout, "read_timeout": read}
        async with self._send("watch", "GET", path, query=query, bounds=bounds) as response:
            # Lines split here, not by a line reader: a pod can carry 256 KiB
            # of annotations; only MAX_BODY bounds one event.
            pending = bytearray()
            try:
                async for chunk in response:
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        if pending:
                            pending += chunk[start:end]
                            line, pending = bytes(pending), bytearray()
                        else:
                            line = chunk[start:end]
                        start = end + 1
                        if line.strip():
                            yield _decode(line, path)
                    pending += chunk[start:]
                    if len(pending) > MAX_BODY:
                        raise BodyTooLarge(f"one event is more than {MAX_BODY >> 20} MiB")
            except HttpError as err:
                raise ApiUnreachable(f"watch {path}: {err}") from err
            if pending.strip():
                yield _decode(bytes(pending), path)

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
        answer: bool = True,
    ) -> Object:
        deadline = self._clock() + retry_seconds
        backoff = Backoff(initial=self._backoff[0], maximum=self._backoff[1])
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        bounds = {"timeout": self.timeout}
        while True:
            try:
                async with self._send(
                    verb,
                    method,
                    path,
                    query=query,
                    data=data,
                    content_type=content_type,
                    bounds=bounds,
                ) as response:
                    try:
                        payload = await response.read(MAX_BODY)
                    except HttpError as err:
                        raise ApiUnreachable(f"{verb} {path}: {err}") from err
                return _decode(payload, path) if answer else {}
            except KubeApiError as err:
                retry = err.transient or (
                    retry_conflicts and err.code == 409 and not err.precondition_failed
                )
                if not retry:
                    raise
                failure: Exception = err
                delay = max(backoff.next(), err.retry_after or 0.0)
            except ApiUnreachable as err:
                if isinstance(err.__cause__, BodyTooLarge):
                    raise  # the same answer again would be as large
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
        bounds: Mapping[str, float | None],
    ) -> AsyncIterator[Response]:
        """One request and its response: pacing, auth, error statuses.

        `bounds` are `HttpClient.send`'s timeouts.  A 401 re-reads the token
        file and, when the token changed, sends the request once more: a
        rotated token is used at once, not at the next call.
        """
        headers = {}
        if data is not None:
            headers["Content-Type"] = content_type
        send: dict[str, Any] = {"query": query, "body": data, **bounds}
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
    ) -> Response:
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        await self._bucket.acquire()
        self.requests[verb] += 1
        transport = self._transport()
        try:
            return await transport.send(method, path, headers=headers, **send)
        except HttpError as err:
            raise ApiUnreachable(f"{verb} {path} at {self.server}: {err}") from err


async def _error(response: Response) -> KubeApiError:
    try:
        status: Any = json.loads(await response.read(MAX_BODY))
    except (HttpError, ValueError, RecursionError):
        status = {}
    header = response.header("Retry-After")
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
