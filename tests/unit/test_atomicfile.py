"""Atomic file writes: the old file or the new one, the exact mode, no temporary file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from multihome import atomicfile


def test_a_write_replaces_the_file_with_exactly_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        atomicfile.write(target, b"new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "record"
    target.mkdir()  # rename over a directory fails once the data is written
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        atomicfile.write(target, b"new", mode=0o600, sync=False)
    assert (target / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record"]


def test_a_temporary_name_taken_is_skipped_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = tmp_path / ".f.00000000.tmp"
    taken.write_text("someone else's")
    draws = iter([b"\0\0\0\0", b"\1\1\1\1"])
    monkeypatch.setattr(atomicfile.os, "urandom", lambda n: next(draws))
    atomicfile.write(tmp_path / "f", b"data", mode=0o600, sync=False)
    assert taken.read_text() == "someone else's"
    assert (tmp_path / "f").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.00000000.tmp", "f"]


@pytest.mark.parametrize(("replacing", "dir_syncs"), [(False, 1), (True, 0)])
def test_a_replacing_write_syncs_the_data_but_not_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replacing: bool, dir_syncs: int
) -> None:
    target = tmp_path / "record"
    target.write_bytes(b"old")
    synced: list[int] = []
    directories: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomicfile.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(atomicfile, "sync_directory", directories.append)
    atomicfile.write(target, b"new", mode=0o600, replacing=replacing)
    assert target.read_bytes() == b"new"
    assert len(synced) == 1  # the data, before the rename
    assert directories == [str(tmp_path)] * dir_syncs
