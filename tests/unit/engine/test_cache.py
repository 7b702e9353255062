"""The attachment cache survives anything but keeps exact bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from multihome.engine.cache import AttachmentCache, CachedAttachment, CacheRecord

CONFIG = (
    '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"calico","big":18446744073709551617}]}'
)


def _record() -> CacheRecord:
    return CacheRecord(
        container_id="abc123",
        netns="/run/netns/x",
        ifname="eth0",
        cni_version="1.0.0",
        pod_namespace="default",
        pod_name="web",
        pod_uid="u-1",
        attachments=[
            CachedAttachment(
                network="default/nad-a",
                ifname="net1",
                config=CONFIG,
                cni_args=[("IgnoreUnknown", "true"), ("IP", "10.0.0.2/24")],
                capability_args={"ips": ["10.0.0.2/24"]},
                state="added",
                result={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]},
            )
        ],
    )


def test_round_trip_keeps_config_bytes_and_modes(tmp_path: Path) -> None:
    cache = AttachmentCache(tmp_path / "attachments")
    cache.save(_record())
    loaded = cache.load("abc123")
    assert loaded == _record()
    assert loaded is not None and loaded.attachments[0].config == CONFIG
    assert stat.S_IMODE(os.stat(tmp_path / "attachments").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "attachments" / "abc123.json").st_mode) == 0o600
    assert cache.container_ids() == ["abc123"]
    assert os.listdir(tmp_path / "attachments") == ["abc123.json"]  # no temp files left


def test_missing_and_corrupt_records_read_as_none(tmp_path: Path) -> None:
    cache = AttachmentCache(tmp_path)
    assert cache.load("nope") is None
    (tmp_path / "bad.json").write_text("{half")
    assert cache.load("bad") is None
    (tmp_path / "other.json").write_text('{"kind": "something-else"}')
    assert cache.load("other") is None


def test_remove_is_idempotent(tmp_path: Path) -> None:
    cache = AttachmentCache(tmp_path)
    cache.save(_record())
    cache.remove("abc123")
    cache.remove("abc123")
    assert cache.container_ids() == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_container_ids_cannot_escape_the_directory(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid container ID"):
        AttachmentCache(tmp_path).load(bad)


def test_to_dict_is_the_record_entry_without_copying() -> None:
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    attachment = CachedAttachment(
        network="default/lan",
        ifname="net1",
        config='{"cniVersion":"1.0.0","name":"lan","plugins":[{"type":"macvlan"}]}',
        cni_args=[("IgnoreUnknown", "true")],
        capability_args={"mac": "aa:bb:cc:dd:ee:ff"},
        state="added",
        result=result,
    )
    out = attachment.to_dict()
    assert list(out) == [
        "network", "ifname", "config", "primary", "state", "result", "cniArgs", "capabilityArgs"
    ]  # fmt: skip
    assert out["cniArgs"] == [["IgnoreUnknown", "true"]]
    assert out["result"] is result
    assert CachedAttachment.from_dict(out) == attachment
    hot = CachedAttachment.from_dict({**out, "wish": "lan@net1", "origin": "hotplug"}).to_dict()
    assert (hot["wish"], hot["origin"]) == ("lan@net1", "hotplug")
