"""`multihome node-check`: what a node's files say before the swap from Multus."""

from __future__ import annotations

import io
import json
from pathlib import Path

from multihome.daemon import nodecheck

CID = "a" * 64


def _node(tmp_path: Path, **extra: object) -> tuple[Path, Path]:
    net_d = tmp_path / "net.d"
    cni = tmp_path / "cni"
    bin_dir = tmp_path / "bin"
    for d in (net_d, cni, bin_dir):
        d.mkdir()
    config = tmp_path / "daemon-config.json"
    config.write_text(
        json.dumps(
            {"cniConfigDir": str(net_d), "cniDir": str(cni), "binDir": str(bin_dir), **extra}
        )
    )
    return config, net_d


def _run(config: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = nodecheck.main(["--config", str(config)], stdout=out, stderr=out)
    return code, out.getvalue()


def test_a_node_running_multus(tmp_path: Path) -> None:
    config, net_d = _node(tmp_path)
    (net_d / "00-multus.conf").write_text('{"cniVersion": "1.0.0", "name": "m", "type": "multus"}')
    (net_d / "10-flannel.conflist").write_text(
        '{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "flannel"}]}'
    )
    (tmp_path / "cni" / CID).write_text("[]")  # Multus' cache of an attached sandbox

    code, text = _run(config)

    assert code == 0, text
    assert f"ok       the runtime uses {net_d}/00-multus.conf now" in text
    assert f"the cluster network for 00-multihome.conf will be {net_d}/10-flannel.conflist" in text
    assert "00-multus.conf stays unused" in text
    assert "warning  1 sandboxes were attached by Multus" in text
    assert "multihome-shim is not installed yet" in text


def test_a_node_that_cannot_be_swapped(tmp_path: Path) -> None:
    config, net_d = _node(tmp_path)
    (net_d / "00-aaa.conf").write_text('{"cniVersion": "0.3.1", "name": "x", "type": "bridge"}')

    code, text = _run(config)

    assert code == 1
    assert "problem  00-aaa.conf sorts before 00-multihome.conf" in text
    assert f"the cluster network for 00-multihome.conf will be {net_d}/00-aaa.conf" in text


def test_the_daemons_own_error_for_a_primary_it_cannot_use(tmp_path: Path) -> None:
    config, net_d = _node(tmp_path, cniVersion="1.0.0")
    (net_d / "10-old.conf").write_text('{"cniVersion": "0.3.1", "name": "x", "type": "bridge"}')
    code, text = _run(config)
    assert code == 1
    assert "problem  the primary CNI configuration" in text and "(it has no CHECK)" in text


def test_no_primary_and_a_bad_config(tmp_path: Path) -> None:
    config, _ = _node(tmp_path)
    code, text = _run(config)
    assert code == 1
    assert "no primary CNI configuration" in text
    config.write_text('{"socketName": "a/b"}')
    code, text = _run(config)
    assert code == 2
    assert "socketName" in text
