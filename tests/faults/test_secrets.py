"""Credentials never appear in an error or a log line, whatever the kubeconfig holds.

Each kubeconfig below is broken in a way that used to (or could) quote the
secret: a YAML syntax error on the token's line (PyYAML quotes the line),
JSON syntax errors, a token or a client key of the wrong type, a PEM key in
a path field, an exec plugin entry with a secret in its environment.  The
error must say what is wrong, and neither it nor the captured log may hold
any part of the secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import pytest

from multihome.cluster.credentials import CredentialsError, from_kubeconfig
from multihome.cni.errors import CNIError
from multihome.cni.request import Request
from multihome.engine.engine import Engine

SECRET = "sEcReT0123456789abcdefghijklmnopqrstuvwxyzSECRETtail"
KEY = f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"


def _kubeconfig(user: str) -> str:
    return f"""apiVersion: v1
kind: Config
current-context: c
contexts:
- name: c
  context: {{cluster: k, user: u}}
clusters:
- name: k
  cluster: {{server: "http://127.0.0.1:1"}}
users:
- name: u
  user:
{user}
"""


BROKEN = {
    "yaml: unclosed quote on the token line": _kubeconfig(f'    token: "{SECRET}'),
    "yaml: a tab before the token": _kubeconfig(f"    token:\t{SECRET}: x"),
    "yaml: a mapping inside the token line": _kubeconfig(f"    token: {SECRET}: : {SECRET}"),
    "yaml: bad indentation after the token": _kubeconfig(f"    token: {SECRET}\n   x: [") + "  ]",
    "yaml: an unknown escape in the token": _kubeconfig(f'    token: "{SECRET}\\q{SECRET}"'),
    "yaml: a tag on the token": _kubeconfig(f"    token: !{SECRET} x"),
    "yaml: a bad date after the token": _kubeconfig(f"    token: {SECRET}\n    x: 2024-99-99"),
    "json: a missing comma after the token": (
        '{"current-context": "c", "users": [{"name": "u", "user": {"token": "'
        + SECRET
        + '" "x": 1}}]}'
    ),
    "json: an unterminated token": '{"users": [{"user": {"token": "' + SECRET,
    "token is a list": _kubeconfig(f"    token: [{SECRET}]"),
    "token is a mapping": _kubeconfig(f"    token: {{{SECRET}: {SECRET}}}"),
    "token with a line break": _kubeconfig(f'    token: "{SECRET}\\n{SECRET}"'),
    "client-key holds the PEM": _kubeconfig(
        "    client-certificate: /nonexistent/c.crt\n    client-key: " + json.dumps(KEY)
    ),
    "client-key is a list": _kubeconfig(f"    client-key: [{SECRET}]"),
    "client-key-data is not base64": _kubeconfig(
        f"    client-certificate-data: {base64.b64encode(b'x').decode()}\n"
        f"    client-key-data: '{SECRET}!!'"
    ),
    "tokenFile is a mapping": _kubeconfig(f"    tokenFile: {{a: {SECRET}}}"),
    "exec plugin": _kubeconfig(
        "    exec:\n      command: get-token\n      args: [--secret, " + SECRET + "]\n"
        "      env: [{name: TOKEN, value: " + SECRET + "}]"
    ),
    "users is a number": _kubeconfig("    token: x").replace(
        "users:\n- name: u", f"users: 7\nx:\n- name: {SECRET}"
    ),
}


def _fragments(secret: str, size: int = 8) -> list[str]:
    """Every piece of ``size`` characters: a partial secret is as bad as a whole one."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def _assert_no_secret(text: str) -> None:
    leaked = [f for f in _fragments(SECRET) if f in text]
    assert not leaked, f"secret fragments {leaked[:3]} in: {text}"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_kubeconfig_never_shows_its_secret(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(BROKEN[case])
    caplog.set_level(logging.DEBUG)
    try:
        creds = from_kubeconfig(path)
    except CredentialsError as err:
        message = str(err)
        assert str(path) in message
    else:
        # Loading may succeed (the key is read later): TLS setup must not leak then.
        with pytest.raises(CredentialsError) as caught:
            creds.ssl_context()
        message = str(caught.value)
    _assert_no_secret(message)
    _assert_no_secret(caplog.text)


def test_a_yaml_error_says_where(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(BROKEN["yaml: unclosed quote on the token line"])
    with pytest.raises(CredentialsError) as caught:
        from_kubeconfig(path)
    assert "line " in str(caught.value)
    assert "column " in str(caught.value)


def test_the_thin_plugin_error_and_log_hold_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the engine: the CNI error a runtime logs, and the plugin's own log."""
    path = tmp_path / "kubeconfig"
    path.write_text(BROKEN["yaml: unclosed quote on the token line"])
    conf = {
        "cniVersion": "1.0.0",
        "name": "multus",
        "type": "multihome-cni",
        "kubeconfig": str(path),
        "cniDir": str(tmp_path / "cni"),
        "delegates": [{"cniVersion": "1.0.0", "name": "x", "type": "bridge"}],
    }
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(tmp_path),
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
    }
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CNIError) as caught:
        asyncio.run(Engine().handle(Request.from_env(env, json.dumps(conf).encode())))
    assert "kubeconfig" in caught.value.msg
    _assert_no_secret(caught.value.to_json())
    _assert_no_secret(caplog.text)
