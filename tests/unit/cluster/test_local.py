"""The manifest-directory source reads what `kubectl apply -f DIR` would take."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from multihome.cluster.local import LocalSource, ManifestError

MANIFESTS = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    k8s.v1.cni.cncf.io/networks: iot-vlan
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: iot-vlan, namespace: default}
spec:
  config: '{"cniVersion": "1.0.0", "type": "macvlan"}'
"""


def test_pods_and_nads_by_namespace_and_name(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MANIFESTS)
    (tmp_path / "b.json").write_text(
        '{"kind": "List", "items": [{"kind": "Pod",'
        ' "metadata": {"name": "db", "namespace": "prod"}}]}'
    )
    (tmp_path / "notes.txt").write_text("not a manifest: {")
    source = LocalSource(tmp_path)
    pod = asyncio.run(source.get_pod("default", "web"))
    assert pod is not None and pod["metadata"]["annotations"]
    assert asyncio.run(source.get_pod("prod", "db")) is not None
    assert asyncio.run(source.get_pod("default", "db")) is None
    nad = asyncio.run(source.get_nad("default", "iot-vlan"))
    assert nad is not None and nad["spec"]["config"].startswith("{")
    assert asyncio.run(source.get_nad("default", "web")) is None


def test_status_and_events_are_written_back(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MANIFESTS)
    source = LocalSource(tmp_path)
    pod = asyncio.run(source.get_pod("default", "web"))
    assert pod is not None
    asyncio.run(source.set_network_status(pod, '[{"name": "x", "interface": "eth0"}]'))
    assert source.network_status("default", "web") == [{"name": "x", "interface": "eth0"}]
    asyncio.run(source.emit_event(pod, type="Warning", reason="InvalidMAC", message="bad mac"))
    assert [(e["pod"], e["reason"]) for e in source.events()] == [("web", "InvalidMAC")]
    asyncio.run(source.set_network_status(pod, None))
    assert source.network_status("default", "web") is None
    # Written files never become manifests themselves.
    assert [o["kind"] for o in source.objects()] == ["Pod", "NetworkAttachmentDefinition"]


def test_broken_manifest_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    with pytest.raises(ManifestError, match=r"bad\.yaml"):
        LocalSource(tmp_path).objects()
    with pytest.raises(ManifestError, match="does not exist"):
        LocalSource(tmp_path / "nope").objects()


def test_an_edited_or_removed_manifest_shows_at_the_next_lookup(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MANIFESTS)
    source = LocalSource(tmp_path)
    assert asyncio.run(source.get_nad("default", "iot-vlan")) is not None
    (tmp_path / "a.yaml").write_text(MANIFESTS.replace("iot-vlan", "iot-lan"))
    assert asyncio.run(source.get_nad("default", "iot-vlan")) is None
    assert asyncio.run(source.get_nad("default", "iot-lan")) is not None
    (tmp_path / "a.yaml").unlink()
    assert source.objects() == []


def test_status_is_written_only_for_the_incarnation_it_is_about(tmp_path: Path) -> None:
    (tmp_path / "web.json").write_text(
        '{"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "new"}}'
    )
    source = LocalSource(tmp_path)
    old = {"metadata": {"name": "web", "namespace": "default", "uid": "old"}}
    new = {"metadata": {"name": "web", "namespace": "default", "uid": "new"}}
    asyncio.run(source.set_network_status(old, "[]"))
    assert source.network_status("default", "web") is None
    asyncio.run(source.set_network_status(new, '[{"name": "a"}]'))
    asyncio.run(source.set_network_status(old, None))
    assert source.network_status("default", "web") == [{"name": "a"}]
    asyncio.run(source.set_network_status(new, None))
    assert source.network_status("default", "web") is None
