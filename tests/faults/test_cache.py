"""Attachment records that are broken, hostile or cannot be written, through the engine.

A record that is truncated, garbage, a FIFO, a symlink to another
container's record or a copy of one is not used: DEL falls back to what
the configuration names and releases this container's attachments, never
another's, and never blocks.  A cache directory that is full or read-only
is a CNI error naming the path, with nothing left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from multihome.cni.errors import CNIError, Code

if TYPE_CHECKING:
    from conftest import Node

pytestmark = pytest.mark.netns


def _break(record: Path, how: str, other: Path) -> None:
    if how == "truncated":
        data = record.read_bytes()
        record.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        record.write_bytes(b"\x00\xff not a record {{{")
    elif how == "a FIFO":
        record.unlink()
        os.mkfifo(record, 0o600)
    elif how == "a symlink to another record":
        record.unlink()
        record.symlink_to(other)
    elif how == "a copy of another record":
        shutil.copyfile(other, record)
    elif how == "huge":
        with record.open("ab") as handle:
            handle.truncate(64 << 20)  # sparse: 64 MiB on paper


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "garbage",
        "a FIFO",
        "a symlink to another record",
        "a copy of another record",
        "huge",
    ],
)
def test_a_broken_record_releases_this_container_only(node: Node, how: str) -> None:
    node.behave()
    victim = node.world.pod("victim", "bad")
    pod = node.world.pod("web", "bad")
    node.call("ADD", victim)
    node.call("ADD", pod)
    victim_before = node.leftovers(victim).own()
    _break(node.record_path(pod), how, node.record_path(victim))

    node.call("DEL", pod)

    node.assert_clean(pod, root=False)  # the victim's host veth is still there
    victim_after = node.leftovers(victim).own()
    assert victim_after == victim_before, "another container's attachments changed"
    node.call("DEL", victim)
    node.assert_clean(victim)
    node.assert_clean(pod)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[None]:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True
    )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def test_a_full_cache_dir_is_an_error_naming_it(node: Node) -> None:
    cache = node.world.cni_dir / "multihome"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    with _tmpfs(cache, "64k"):
        with contextlib.suppress(OSError):
            (cache / "filler").write_bytes(b"x" * (1 << 20))
        pod = node.world.pod("web", "bad")

        with pytest.raises(CNIError) as caught:
            node.call("ADD", pod)

        assert caught.value.code == Code.IO_FAILURE
        assert str(cache) in caught.value.msg
        assert "No space left on device" in caught.value.msg
        node.assert_clean(pod)


def test_a_read_only_cache_dir(node: Node) -> None:
    cache = node.world.cni_dir / "multihome"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    with _tmpfs(cache, "4m"):
        pod = node.world.pod("web", "bad")
        node.call("ADD", pod)
        _remount(cache, "ro")

        # ADD of another pod: refused before any plugin ran.
        other = node.world.pod("other", "bad")
        with pytest.raises(CNIError) as caught:
            node.call("ADD", other)
        assert caught.value.code == Code.IO_FAILURE
        assert str(cache) in caught.value.msg
        node.assert_clean(other, root=False)  # the first pod's host veth is there

        # DEL: every attachment released; the record cannot go, so "I/O error", retried.
        with pytest.raises(CNIError) as caught:
            node.call("DEL", pod)
        assert caught.value.code == Code.IO_FAILURE
        assert str(node.record_path(pod)) in caught.value.msg
        held = node.leftovers(pod)
        assert (held.pod_links, held.leases) == ({}, {})

        _remount(cache, "rw")
        node.call("DEL", pod)
        node.assert_clean(pod)
        node.assert_clean(other)
