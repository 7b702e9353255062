"""One CNI command at a time per container, across processes, and GC apart from ADDs.

The daemon serialises the requests of a container in memory
(`multihome.daemon.jobs`), but thin mode runs one process per call, and a
daemon and a thin plugin may share a cache dir: the guarantee has to live
on disk.  Each container has a lock file ``<cache dir>/<id>.lock`` held
with ``flock`` for the whole command (ADD, DEL, CHECK, the status writer);
a process that dies drops its locks with its file descriptors, so a crash
never leaves a container locked.

The file exists only while someone holds or waits for it: the holder
unlinks it before unlocking, and a waiter that then gets the lock on the
unlinked file sees that the path names another inode (or none) and tries
again.  So no lock file outlives its command, and two holders can never
lock different files under one name.

GC and ADD: the runtime lists the attachments it knows and then sends GC;
an ADD already running for a container it has not listed yet must not be
collected, nor its fresh lease released by the cluster network's GC.  An
ADD (and DEL, CHECK) takes the node lock ``<cache dir>/.gc.lock`` shared
while it takes its container lock; GC takes it exclusive for its whole run
and counts every container whose lock is held as valid.  So from the
moment GC holds the node lock the set of commands in flight is fixed and
known, and a new one waits until GC is done.

A container's network-status has a lock of its own, ``<cache dir>/<id>.statuslock``
(`status_lock`): every status write and every change of its pending file
holds it, the daemon's status writer holds only it, and a command takes it
inside its container lock (never the other way round).  So a DEL right after
its ADD runs its delegates while the ADD's status is still being written,
and its own clearing write waits for that one.

Commands of one process (the daemon's requests and its status writer) queue
on an asyncio lock per container first, so a waiter wakes the moment the
holder is done.  Waiting for another process polls a non-blocking ``flock``
(after 1 ms, doubling up to 50 ms): a blocking one in a thread could not be
cancelled when a request misses its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from multihome.cni.errors import CNIError, Code

log = logging.getLogger(__name__)

_NODE_LOCK = ".gc.lock"
_SUFFIX = ".lock"
#: Not ``.status.lock``: GC takes every ``*.lock`` for a container's lock.
_STATUS_SUFFIX = ".statuslock"


class LockTimeout(Exception):
    """The lock was not free in time; the message names the file."""


def lock_path(cache_dir: str | os.PathLike[str], container_id: str, suffix: str = _SUFFIX) -> str:
    # A str, not a Path: pathlib interns each part it parses, and parts named
    # for containers (or process groups) come and go with every request; that
    # churn made CPython resize its interned-string table for good, +0.5 MiB
    # in the daemon (docs/limits.md, "Daemon memory").
    return os.path.join(cache_dir, f"{container_id}{suffix}")


@contextlib.asynccontextmanager
async def container_lock(
    cache_dir: str | os.PathLike[str],
    container_id: str,
    *,
    timeout: float | None = None,
    best_effort: bool = False,
) -> AsyncIterator[None]:
    """Hold ``container_id``'s lock (waiting for GC to finish first).

    A lock that cannot be made (the cache dir is a file, read-only, full) is
    a `CNIError` naming the path; with ``best_effort`` (DEL) the command runs
    without the lock instead: no ADD can record anything there either, so
    nothing can race it, and DEL still releases what it can.
    """
    directory = Path(cache_dir)
    path = lock_path(directory, container_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    async with (
        _in_process(path, deadline),
        _on_disk(directory, path, container_id, deadline, best_effort),
    ):
        yield


@contextlib.asynccontextmanager
async def status_lock(
    cache_dir: str | os.PathLike[str], container_id: str, *, timeout: float | None = None
) -> AsyncIterator[None]:
    """Hold ``container_id``'s status lock (see the module docstring).

    A lock that cannot be made is an `OSError`: status writes are best effort.
    """
    path = lock_path(cache_dir, container_id, _STATUS_SUFFIX)
    deadline = None if timeout is None else time.monotonic() + timeout
    async with _in_process(path, deadline):
        fd = await _acquire_transient(path, deadline)
        try:
            yield
        finally:
            _release_transient(path, fd)


@contextlib.asynccontextmanager
async def _in_process(path: str, deadline: float | None) -> AsyncIterator[None]:
    """The same container's commands in this process queue on an asyncio lock first.

    A waiter wakes the moment the holder is done, where polling the flock
    would find it free only at its next try (a DEL right after its ADD,
    behind the status writer's PATCH, lost up to the poll's doubling delay).
    """
    entry = _LOCAL.setdefault(path, _Local())
    lock = entry.lock
    entry.users += 1
    try:
        if deadline is None:
            await lock.acquire()
        else:
            # At least a moment: wait_for gives up on a zero timeout before the
            # acquire has even run, a free lock included (a "try": timeout 0).
            remaining = max(deadline - time.monotonic(), 0.001)
            try:
                await asyncio.wait_for(lock.acquire(), remaining)
            except TimeoutError:
                raise LockTimeout(f"{path} is held by another command for this container") from None
        try:
            yield
        finally:
            lock.release()
    finally:
        entry.users -= 1
        if entry.users == 0:
            del _LOCAL[path]


class _Local:
    """A lock file's in-process lock, and how many commands hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


#: Per lock file.  One event loop per process: the daemon's, or a thin call's own.
_LOCAL: dict[str, _Local] = {}


@contextlib.asynccontextmanager
async def _on_disk(
    directory: Path, path: str, container_id: str, deadline: float | None, best_effort: bool
) -> AsyncIterator[None]:
    fd: int | None = None
    try:
        # Not in a thread: two syscalls, and thin mode would start a pool for them.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        async with _flock(directory / _NODE_LOCK, fcntl.LOCK_SH, deadline):
            fd = await _acquire_transient(path, deadline)
    except OSError as err:
        if not best_effort:
            raise _unusable(directory, err) from err
        log.warning("no lock for container %s in %s: %s", container_id, directory, err)
    try:
        yield
    finally:
        if fd is not None:
            _release_transient(path, fd)


@contextlib.asynccontextmanager
async def gc_lock(cache_dir: str | os.PathLike[str]) -> AsyncIterator[set[str]]:
    """Hold the node lock exclusively; yields the containers whose commands are in flight."""
    directory = Path(cache_dir)
    async with contextlib.AsyncExitStack() as stack:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            await stack.enter_async_context(_flock(directory / _NODE_LOCK, fcntl.LOCK_EX, None))
        except OSError as err:
            raise _unusable(directory, err) from err
        yield await asyncio.to_thread(_held, directory)


def _unusable(directory: Path, err: OSError) -> CNIError:
    return CNIError(
        Code.IO_FAILURE,
        f"cannot lock in the attachment cache {directory}: {err.strerror or err}",
        "the cache dir (cniDir/multihome) must be a writable directory with free space",
    )


def try_container_lock(cache_dir: str | os.PathLike[str], container_id: str) -> int | None:
    """The lock's descriptor when it is free now, else None (GC's own use, under `gc_lock`)."""
    return _open_if_current(lock_path(cache_dir, container_id), fcntl.LOCK_EX | fcntl.LOCK_NB)


def release(cache_dir: str | os.PathLike[str], container_id: str, fd: int) -> None:
    _release_transient(lock_path(cache_dir, container_id), fd)


def _held(directory: Path) -> set[str]:
    busy = set()
    for entry in os.scandir(directory):
        if entry.name.startswith(".") or not entry.name.endswith(_SUFFIX):
            continue
        container_id = entry.name[: -len(_SUFFIX)]
        fd = _open_if_current(entry.path, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
        if fd is None:
            busy.add(container_id)
        else:
            # Free: a lock file left by nobody (it is unlinked on release); tidy it.
            _release_transient(entry.path, fd)
    return busy


@contextlib.asynccontextmanager
async def _flock(path: Path, operation: int, deadline: float | None) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await _wait(lambda: _try(fd, operation), path, deadline)
        yield
    finally:
        os.close(fd)  # closing drops the lock


async def _acquire_transient(path: str, deadline: float | None) -> int:
    fd: int | None = None

    def attempt() -> bool:
        nonlocal fd
        fd = _open_if_current(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd is not None

    await _wait(attempt, path, deadline)
    assert fd is not None
    return fd


def _open_if_current(path: str, operation: int, *, create: bool = True) -> int | None:
    """Lock ``path``; the descriptor once the lock is on the file the path names now."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None if not create else _open_if_current(path, operation)
    try:
        if not _try(fd, operation):
            os.close(fd)
            return None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            # The holder before us unlinked it: our lock is on a file nobody else sees.
            os.close(fd)
            return None if not create else _open_if_current(path, operation)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _release_transient(path: str, fd: int) -> None:
    # Unlinked while still locked: a waiter that gets this inode next sees it is stale.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _try(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def _wait(attempt: Callable[[], bool], path: str | Path, deadline: float | None) -> None:
    # From 1 ms, doubling to 50 ms: another process's command or status write
    # usually holds a lock for a few milliseconds.
    delay = 0.001
    while not attempt():
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(f"{path} is held by another command for this container")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
