"""Files that are either the old version or the new one, never half of either.

The attachment cache, the generated CNI configuration and the installed
shim are read by other processes (the runtime, a DEL after a crash, a
running shim) at any moment: each is written to a temporary file in the
same directory, synced, renamed over the target, and the directory synced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

#: ``O_EXCL``: a new file or an error, never someone else's; ``O_NOFOLLOW``: not through a link.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int,
    sync: bool = True,
    replacing: bool = False,
) -> None:
    """Make ``path`` hold ``data`` with permission bits ``mode``, atomically.

    ``sync=False``: atomic for every reader and across a crash of the
    writing process, not across a crash of the machine (no fsync).
    ``replacing=True``: ``path`` exists and an earlier `write` made its
    name durable; the data is synced but not the directory, so after a
    crash of the machine ``path`` holds the old data or the new, each
    complete (one fsync less).  Raises `OSError`; after a failure the old
    file is intact and no temporary file is left behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = _temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # fchmod, not the umask: the mode must be exactly what was asked.
            os.fchmod(handle.fileno(), mode)
            if sync:
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if sync and not replacing:
        sync_directory(directory)


def _temporary(directory: str, name: str) -> tuple[int, str]:
    """A new file ``.<name>.<8 random hex digits>.tmp`` in ``directory``, open for writing.

    What ``tempfile.mkstemp`` does, without importing tempfile: its imports
    (shutil, random and the compression modules) cost a one-shot plugin
    more than the write itself.
    """
    for _ in range(100):
        temp = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temp, _NEW_FILE, 0o600), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


def replace(path: str | os.PathLike[str], data: bytes, *, mode: int) -> bool:
    """`write`, unless the file already holds exactly that: then False, nothing touched.

    A CNI runtime reloads its configs on every write it sees, and a rewrite
    of a binary is wasted I/O.  Empty data is refused: an empty CNI config
    fails every pod on the node, an empty binary every exec.
    """
    if not data:
        raise ValueError(f"refusing to write an empty file to {os.fspath(path)}")
    if holds(path, data, mode):
        return False
    write(path, data, mode=mode)
    return True


def holds(path: str | os.PathLike[str], data: bytes, mode: int) -> bool:
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
                return False
            if stat.S_IMODE(info.st_mode) != mode:
                return False
            return handle.read(len(data) + 1) == data
    except OSError:
        return False


def sync_directory(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
