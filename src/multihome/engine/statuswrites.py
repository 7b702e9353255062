"""Network-status writes that failed, kept until they land or the pod is gone.

The interfaces and the network-status annotation are separate promises.
An ADD whose networks work succeeds even when the status cannot be written
(the API answers 5xx, is slow, refuses the credentials, is down; the
manifest status file is not writable): the pod runs, and what it should
say is kept in ``<cache dir>/<container ID>.status`` (JSON, 0600) with the
pod's namespace, name and UID, and retried from there:

* by the daemon's writer (`multihome.daemon.server`), with backoff, until
  the write lands, the pod is gone, or a DEL removes the file;
* in thin mode (no process outlives the call) by the next CHECK of that
  container and by every GC and STATUS (all of the cache dir's), each a
  bounded attempt; a daemon sharing the cache dir also picks them up.

Every write holds the container's status lock (`multihome.engine.locks.status_lock`)
and reads the file again under it; the file stays until the write is done.
DEL and a new ADD of the container remove the file under the same lock
(`drop`), and DEL's clearing write follows: a late status write can never
overtake the DEL that followed its ADD, nor label a new ADD of the same
container with the old one's networks.  A DEL does not wait for the write
to run its delegates, only to clear.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from multihome import atomicfile
from multihome.cluster.source import Object, Source

from . import locks

log = logging.getLogger(__name__)

_SUFFIX = ".status"
#: How long one attempt may take; the source's own retries run inside it.
ATTEMPT_BUDGET = 15.0
#: How long an attempt waits for the container's lock before leaving it for later.
LOCK_WAIT = 1.0


@dataclass(eq=False)
class PendingStatus:
    container_id: str
    namespace: str
    name: str
    uid: str
    #: The annotation's value (serialised network-status).
    status: str
    #: The manifest directory whose status file it goes to; "" for the cluster source.
    manifest_dir: str = ""
    since: float = 0.0
    attempts: int = 0
    last_error: str = ""

    def pod(self) -> Object:
        """The pod as far as a status write needs it: its key and UID."""
        return {"metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}


def path_of(cache_dir: str | os.PathLike[str], container_id: str) -> str:
    # A str, not a Path: a pathlib part named for a container is interned (`locks.lock_path`).
    return os.path.join(cache_dir, f"{container_id}{_SUFFIX}")


def save(cache_dir: str | os.PathLike[str], pending: PendingStatus, *, sync: bool = True) -> None:
    Path(cache_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(asdict(pending), separators=(",", ":")).encode()  # the C encoder: no indent
    atomicfile.write(path_of(cache_dir, pending.container_id), data, mode=0o600, sync=sync)


async def warn(source: Source, pending: PendingStatus) -> None:
    """The pod's one Warning event: its status write failed and is retried."""
    await source.emit_event(
        pending.pod(),
        type="Warning",
        reason="NetworkStatusPending",
        message="the pod's networks are attached; writing network-status failed "
        f"and is retried: {pending.last_error}",
    )


def load(cache_dir: str | os.PathLike[str], container_id: str) -> PendingStatus | None:
    path = path_of(cache_dir, container_id)
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
        return PendingStatus(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        log.warning("dropping the unreadable pending network-status %s: %s", path, err)
        remove(cache_dir, container_id)
        return None


def remove(cache_dir: str | os.PathLike[str], container_id: str) -> None:
    path = path_of(cache_dir, container_id)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        # A read-only cache dir refuses even to unlink what is not there.
        if os.path.lexists(path):
            raise


def pending_ids(cache_dir: str | os.PathLike[str]) -> list[str]:
    try:
        names = os.listdir(cache_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n[: -len(_SUFFIX)] for n in names if n.endswith(_SUFFIX) and n[0] != ".")


async def drop(cache_dir: str | os.PathLike[str], container_id: str) -> None:
    """Remove what ``container_id`` still owes, once a write of it in progress is done.

    A write in progress holds the status lock and its file exists until the
    write is done: without a file there is nothing to wait for (one lstat).
    """
    if not os.path.lexists(path_of(cache_dir, container_id)):
        return
    async with locks.status_lock(cache_dir, container_id):
        remove(cache_dir, container_id)


async def attempt(
    cache_dir: str | os.PathLike[str],
    container_id: str,
    source_for: Callable[[PendingStatus], Source | None],
    *,
    budget: float = ATTEMPT_BUDGET,
) -> bool:
    """One try to write ``container_id``'s pending status; True once nothing is pending.

    ``source_for`` picks the source a pending write goes to (None: nowhere
    left to write it; it is dropped).
    """
    try:
        # Another write of that container runs (it may take its whole budget): next round.
        async with locks.status_lock(cache_dir, container_id, timeout=LOCK_WAIT):
            return await _attempt(cache_dir, container_id, source_for, budget)
    except locks.LockTimeout:
        return False


async def _attempt(
    cache_dir: str | os.PathLike[str],
    container_id: str,
    source_for: Callable[[PendingStatus], Source | None],
    budget: float,
) -> bool:
    pending = await asyncio.to_thread(load, cache_dir, container_id)
    if pending is None:
        return True  # a DEL (or the write before) took care of it
    source = source_for(pending)
    if source is None:
        await asyncio.to_thread(remove, cache_dir, container_id)
        return True
    try:
        async with asyncio.timeout(budget):
            await source.set_network_status(pending.pod(), pending.status)
    except Exception as err:
        pending.attempts += 1
        pending.last_error = str(err) or type(err).__name__
        await asyncio.to_thread(save, cache_dir, pending)
        if pending.attempts == 1:  # left to a writer by an ADD that did not wait
            try:
                await warn(source, pending)
            except Exception:  # an event must never fail the write's bookkeeping
                log.exception("cannot queue the NetworkStatusPending event")
        log.info(
            "pod %s/%s: network-status still not written (attempt %d): %s",
            pending.namespace,
            pending.name,
            pending.attempts,
            pending.last_error,
        )
        return False
    await asyncio.to_thread(remove, cache_dir, container_id)
    log.info(
        "pod %s/%s: network-status written after %d failed attempts (%.0f s late)",
        pending.namespace,
        pending.name,
        pending.attempts,
        time.time() - pending.since,
    )
    return True


async def attempt_all(
    cache_dir: str | os.PathLike[str],
    source_for: Callable[[PendingStatus], Source | None],
    *,
    budget: float = ATTEMPT_BUDGET,
) -> int:
    """One try for each pending write of ``cache_dir``; how many are still pending."""
    left = 0
    for container_id in pending_ids(cache_dir):
        try:
            if not await attempt(cache_dir, container_id, source_for, budget=budget):
                left += 1
        except OSError as err:
            log.warning("pending network-status of %s: %s", container_id, err)
            left += 1
    return left
