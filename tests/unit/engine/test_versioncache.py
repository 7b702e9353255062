"""The thin plugin's VERSION cache file: its text, its bounds, and the files it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

from multihome.cni.output import PluginInfo
from multihome.engine import versioncache
from multihome.engine.versioncache import FILE_NAME, MAX_ENTRIES, decode, encode, load, save

INFO = PluginInfo("1.0.0", ("0.3.1", "1.0.0"))


def _binary(tmp_path: Path, name: str) -> tuple[str, tuple[int, int, int]]:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n")
    st = path.stat()
    return str(path), (st.st_mtime_ns, st.st_size, st.st_ino)


def test_encode_and_decode_round_trip_and_keep_the_newest_entries() -> None:
    versions = {f"/bin/p{i}": ((i, 2, 3), INFO) for i in range(MAX_ENTRIES + 10)}
    back = decode(encode(versions))
    assert len(back) == MAX_ENTRIES
    assert "/bin/p9" not in back and back[f"/bin/p{MAX_ENTRIES + 9}"] == (
        (MAX_ENTRIES + 9, 2, 3),
        INFO,
    )


def test_decode_skips_malformed_entries_and_refuses_other_documents() -> None:
    good = {"stamp": [1, 2, 3], "cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}
    doc = {
        "kind": versioncache.KIND,
        "plugins": {
            "/bin/good": good,
            "relative": good,
            "/bin/stamp": {**good, "stamp": [1, 2]},
            "/bin/bool": {**good, "stamp": [1, True, 3]},
            "/bin/versions": {**good, "supportedVersions": "1.0.0"},
            "/bin/list": [],
        },
    }
    assert decode(json.dumps(doc)) == {"/bin/good": ((1, 2, 3), PluginInfo("1.0.0", ("1.0.0",)))}
    for bad in ("[]", '{"kind": "other"}', json.dumps({"kind": versioncache.KIND, "plugins": []})):
        try:
            decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"decoded {bad}")


def test_save_then_load_and_nothing_written_when_nothing_was_learnt(tmp_path: Path) -> None:
    path, stamp = _binary(tmp_path, "bridge")
    assert load(tmp_path) == {}
    save(tmp_path, {path: (stamp, INFO)}, loaded={})
    assert load(tmp_path) == {path: (stamp, INFO)}
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600
    (tmp_path / FILE_NAME).write_text("not touched")
    save(tmp_path, {path: (stamp, INFO)}, loaded={path: (stamp, INFO)})
    assert (tmp_path / FILE_NAME).read_text() == "not touched"


def test_save_merges_the_file_and_drops_changed_or_missing_binaries(tmp_path: Path) -> None:
    a, stamp_a = _binary(tmp_path, "a")
    b, stamp_b = _binary(tmp_path, "b")
    c, stamp_c = _binary(tmp_path, "c")
    save(tmp_path, {a: (stamp_a, INFO), b: (stamp_b, INFO)}, loaded={})
    os.unlink(b)
    # Another ADD's entry for "a" and a stale one for "c": "a" stays, "c" goes.
    save(tmp_path, {c: ((0, 0, 0), INFO)}, loaded={})
    assert load(tmp_path) == {a: (stamp_a, INFO)}
    save(tmp_path, {c: (stamp_c, INFO)}, loaded={})
    assert load(tmp_path) == {a: (stamp_a, INFO), c: (stamp_c, INFO)}


def test_corrupt_oversized_and_symlinked_files_are_ignored(tmp_path: Path) -> None:
    path, stamp = _binary(tmp_path, "bridge")
    cache = tmp_path / FILE_NAME
    cache.write_text("{not json")
    assert load(tmp_path) == {}
    cache.write_bytes(b" " * (versioncache.MAX_BYTES + 1))
    assert load(tmp_path) == {}
    cache.unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(encode({path: (stamp, INFO)}))
    cache.symlink_to(elsewhere)
    assert load(tmp_path) == {}  # a symlink is not followed
    save(tmp_path, {path: (stamp, INFO)}, loaded={})
    assert not cache.is_symlink()  # replaced, not written through
    assert elsewhere.read_bytes() == encode({path: (stamp, INFO)})
    assert load(tmp_path) == {path: (stamp, INFO)}


def test_an_unwritable_directory_is_not_an_error(tmp_path: Path) -> None:
    path, stamp = _binary(tmp_path, "bridge")
    save(tmp_path / "missing", {path: (stamp, INFO)}, loaded={})
    assert load(tmp_path / "missing") == {}
