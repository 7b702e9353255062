"""Admitting a CNI request: refused while shutting down, waiting (bounded) for the
caches, then run by `multihome.daemon.jobs` under its container's lock and deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from multihome.cni.errors import CNIError, Code
from multihome.cni.request import Request

from .config import DaemonConfig
from .jobs import Jobs, Late


class Admission:
    def __init__(self, config: DaemonConfig, jobs: Jobs) -> None:
        self.config = config
        self.jobs = jobs
        #: Set once requests can be served (the caches are loaded) or refused (draining).
        self.serving = asyncio.Event()
        self.draining = False

    async def admit(
        self,
        request: Request,
        work: Callable[[Request], Awaitable[str]],
        *,
        started: float,
        override: bool,
    ) -> str:
        if self.draining:
            raise shutting_down()
        if override and request.command != "VERSION":
            request = dataclasses.replace(request, stdin=self.config.override(request.stdin))
        deadline = started + self.config.request_timeout
        # DEL works from the attachment cache alone: it never waits for the API.
        if not self.serving.is_set() and request.command not in ("DEL", "VERSION"):
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    await self.serving.wait()
            except TimeoutError:
                raise CNIError(
                    Code.TRY_AGAIN_LATER,
                    "the multihome daemon is not ready: the Kubernetes API caches are still "
                    "loading",
                    "check that the daemon can reach the API server; the runtime retries",
                ) from None
        if self.draining:
            raise shutting_down()
        try:
            return await self.jobs.run(
                request.container_id,
                lambda: work(request),
                timeout=max(deadline - time.monotonic(), 0.0),
            )
        except Late as late:
            raise _late(
                request, self.config.request_timeout, rolled_back=late.rolled_back
            ) from None


def shutting_down() -> CNIError:
    return CNIError(
        Code.TRY_AGAIN_LATER,
        "the multihome daemon is shutting down",
        "retry: the runtime retries, and the next daemon on this node answers",
    )


def _late(request: Request, timeout: float, *, rolled_back: bool) -> CNIError:
    what = f"{request.command} of pod {pod_of(request) or request.container_id}"
    if request.command != "ADD":
        done = "it was cancelled; retrying it is safe"
    elif rolled_back:
        done = "it was cancelled and what it had attached was removed"
    else:
        done = (
            "it was cancelled and what it had attached is being removed; the next request "
            "for this container waits for that"
        )
    return CNIError(
        Code.TRY_AGAIN_LATER,
        f"{what} did not finish within {timeout:g} s (requestTimeoutSeconds)",
        f"{done}; a plugin may be waiting for a lock or a remote service",
    )


def pod_of(request: Request) -> str:
    k8s = request.k8s
    return f"{k8s.namespace or 'default'}/{k8s.name}" if k8s.name else ""


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
