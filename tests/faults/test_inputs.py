"""Bad input is a CNI error with the spec's code, never "internal error" or a traceback.

Each case once gave code 999 (and a traceback from the thin plugin): a
container ID too long for a cache file name, a byte that is not UTF-8 in
CNI_IFNAME, stdin nested 100,000 deep, ``cniDir`` or ``manifestDir`` being
a regular file.  The thin plugin's ``run`` is called as the runtime calls
the binary; one case goes through the binary itself, with real bytes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multihome import thin
from multihome.cni.errors import Code


def _env(**overrides: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    env.update(overrides)
    return env


def _config(tmp_path: Path, **overrides: Any) -> bytes:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "multus",
        "type": "multihome-cni",
        "cniDir": str(tmp_path / "cni"),
        "delegates": [{"cniVersion": "1.0.0", "name": "x", "type": "bridge"}],
    }
    conf.update(overrides)
    return json.dumps(conf).encode()


def _run(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = thin.run(env, io.BytesIO(stdin), out, err)
    return code, json.loads(out.getvalue()), err.getvalue()


def _assert_cni_error(answer: dict[str, Any], code: int, *words: str) -> None:
    assert answer["code"] == code, answer
    text = answer["msg"] + " " + answer.get("details", "")
    for word in words:
        assert word in text, (word, answer)


def test_a_container_id_too_long_for_a_file_name(tmp_path: Path) -> None:
    code, answer, stderr = _run(_env(CNI_CONTAINERID="a" * 245), _config(tmp_path))
    assert code == 1
    assert code == 1
    _assert_cni_error(answer, Code.INVALID_ENV, "CNI_CONTAINERID", "too long", "200")
    assert len(answer["msg"]) < 300, "the value is shortened"
    assert "Traceback" not in stderr


def test_an_ifname_that_is_not_utf8(tmp_path: Path) -> None:
    # os.environ holds a byte that is not UTF-8 as a surrogate escape.
    code, answer, _ = _run(_env(CNI_IFNAME="eth\udcff"), _config(tmp_path))
    assert code == 1
    _assert_cni_error(answer, Code.INVALID_ENV, "CNI_IFNAME", "not valid UTF-8")


@pytest.mark.parametrize("where", ["top", "inside"])
def test_stdin_nested_deeply(tmp_path: Path, where: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    stdin = deep if where == "top" else _config(tmp_path)[:-1] + b', "x": ' + deep + b"}"
    code, answer, stderr = _run(_env(), stdin)
    assert code == 1
    _assert_cni_error(answer, Code.DECODE_FAILURE, "nests more than 64 levels")
    assert "Traceback" not in stderr


def test_cni_dir_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    stdin = _config(tmp_path, cniDir=str(tmp_path / "file"))
    code, answer, stderr = _run(_env(), stdin)
    assert code == 1
    _assert_cni_error(answer, Code.IO_FAILURE, str(tmp_path / "file" / "multihome"))
    assert "Traceback" not in stderr


def test_manifest_dir_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    stdin = _config(tmp_path, manifestDir=str(tmp_path / "file"))
    env = _env(CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p")
    code, answer, stderr = _run(env, stdin)
    assert code == 1
    _assert_cni_error(answer, Code.IO_FAILURE, str(tmp_path / "file"), "not a directory")
    assert "Traceback" not in stderr


def test_the_binary_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    env = {k.encode(): v.encode() for k, v in _env().items()}
    env[b"CNI_IFNAME"] = b"eth\xff"
    env[b"CNI_CONTAINERID"] = b"c\xfe1"
    proc = subprocess.run(
        [sys.executable, "-m", "multihome.thin"],
        input=_config(tmp_path),
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    _assert_cni_error(answer, Code.INVALID_ENV, "CNI_CONTAINERID")
    assert b"Traceback" not in proc.stderr
