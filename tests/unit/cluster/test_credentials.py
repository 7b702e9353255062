"""Finding the API server: the pod's service account and kubeconfig files."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multihome.cluster.credentials import (
    Credentials,
    CredentialsError,
    TokenSource,
    from_kubeconfig,
    in_cluster,
    load,
)


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("not parsed here")
    return tmp_path


def test_in_cluster_uses_the_service_env_and_the_projected_token(service_account: Path):
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    creds = in_cluster(environ=env, directory=service_account)
    assert creds.server == "https://10.96.0.1:443"
    assert creds.token_file == str(service_account / "token")
    assert creds.ca_file == str(service_account / "ca.crt")
    assert creds.tokens().current() == "sa-token"


def test_in_cluster_brackets_an_ipv6_service_address(service_account: Path):
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert (
        in_cluster(environ=env, directory=service_account).server == "https://[fd00:10:96::1]:443"
    )


def test_outside_a_pod_in_cluster_says_what_is_missing(service_account: Path):
    with pytest.raises(CredentialsError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster(environ={}, directory=service_account)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(CredentialsError, match="token"):
        in_cluster(environ=env, directory=service_account / "nowhere")


def kubeconfig(
    path: Path,
    *,
    user: dict[str, Any],
    cluster: dict[str, Any] | None = None,
    current: str = "main",
    dump: Any = yaml.safe_dump,
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [
            {"name": "prod", "cluster": cluster or {"server": "https://api.example:6443/"}},
            {"name": "lab", "cluster": {"server": "http://127.0.0.1:8080"}},
        ],
        "users": [{"name": "me", "user": user}],
        "contexts": [
            {"name": "main", "context": {"cluster": "prod", "user": "me"}},
            {"name": "other", "context": {"cluster": "lab", "user": "me"}},
        ],
    }
    out = path / "config"
    out.write_text(dump(doc))
    return out


def test_kubeconfig_current_context_with_files_relative_to_it(tmp_path: Path):
    path = kubeconfig(
        tmp_path,
        user={"client-certificate": "me.crt", "client-key": "/abs/me.key", "tokenFile": "tok"},
        cluster={
            "server": "https://api.example:6443/",
            "certificate-authority": "ca.pem",
            "tls-server-name": "kubernetes",
            "insecure-skip-tls-verify": False,
        },
    )
    creds = from_kubeconfig(path)
    assert creds.server == "https://api.example:6443"
    assert creds.ca_file == str(tmp_path / "ca.pem")
    assert creds.cert_file == str(tmp_path / "me.crt")
    assert creds.key_file == "/abs/me.key"
    assert creds.token_file == str(tmp_path / "tok")
    assert creds.tls_server_name == "kubernetes"
    assert "context 'main'" in creds.origin


def test_kubeconfig_named_context_and_inline_data(tmp_path: Path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    path = kubeconfig(
        tmp_path,
        user={"token": "abc", "client-certificate-data": base64.b64encode(pem.encode()).decode()},
    )
    creds = load(str(path), context="other")
    assert creds.server == "http://127.0.0.1:8080"
    assert creds.token == "abc" and creds.cert_data == pem
    assert creds.ssl_context() is None  # plain http


@pytest.mark.parametrize(
    ("user", "current", "message"),
    [
        ({"exec": {"command": "aws"}}, "main", "authenticates with 'exec'"),
        ({"token": "x"}, "missing", "no context named 'missing' (it has: main, other)"),
        ({"client-key-data": "!!!"}, "main", "client-key-data is not base64"),
    ],
)
def test_kubeconfig_errors_name_the_file_and_the_entry(tmp_path, user, current, message):
    path = kubeconfig(tmp_path, user=user, current=current)
    with pytest.raises(CredentialsError) as failure:
        from_kubeconfig(path)
    assert message in str(failure.value)
    assert str(path) in str(failure.value)


INLINE_USER = {
    "token": "abc",
    "client-certificate-data": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
    "tokenFile": "tok",
}
OTHER_FORMS = {
    "json": lambda doc: json.dumps(doc, indent=2),
    "json-one-line": json.dumps,
    "yaml-flow-style": lambda doc: yaml.safe_dump(doc, default_flow_style=True),
}


@pytest.mark.parametrize("form", sorted(OTHER_FORMS))
def test_a_json_or_flow_style_kubeconfig_reads_as_its_block_yaml(tmp_path: Path, form: str):
    as_yaml = from_kubeconfig(kubeconfig(tmp_path, user=INLINE_USER))
    other = from_kubeconfig(kubeconfig(tmp_path, user=INLINE_USER, dump=OTHER_FORMS[form]))
    assert other == as_yaml
    assert other.token_file == str(tmp_path / "tok")


def test_a_json_kubeconfig_is_read_without_importing_pyyaml(tmp_path: Path):
    """PyYAML's import is a tenth of the thin plugin's start-up: a JSON file does without."""
    probe = (
        "import sys\n"
        "from multihome.cluster.credentials import from_kubeconfig\n"
        "assert from_kubeconfig(sys.argv[1]).token == 'abc'\n"
        "print('yaml' in sys.modules)\n"
    )
    as_json = kubeconfig(tmp_path, user=INLINE_USER, dump=json.dumps)
    out = subprocess.run(
        [sys.executable, "-c", probe, str(as_json)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    as_yaml = kubeconfig(tmp_path, user=INLINE_USER)
    out = subprocess.run(
        [sys.executable, "-c", probe, str(as_yaml)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


def test_an_unreadable_kubeconfig_names_the_file(tmp_path: Path):
    with pytest.raises(CredentialsError, match=r"cannot read kubeconfig .*nope"):
        from_kubeconfig(tmp_path / "nope")


def test_insecure_skip_tls_verify_turns_verification_off():
    context = Credentials(server="https://api.example:6443", insecure=True).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_a_bad_ca_file_is_a_credentials_error(tmp_path: Path):
    (tmp_path / "ca.pem").write_text("garbage")
    creds = Credentials(server="https://x:6443", ca_file=str(tmp_path / "ca.pem"), origin="test")
    with pytest.raises(CredentialsError, match="cannot set up TLS from test"):
        creds.ssl_context()


def test_a_token_file_is_reread_when_it_changes_and_when_forced(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("one")
    tokens = TokenSource(path=str(path))
    assert tokens.current() == "one"
    assert tokens.current() == "one" and tokens.reads == 1

    swapped = tmp_path / "token.new"
    swapped.write_text("two")
    swapped.replace(path)  # a new inode, as the kubelet's atomic writer makes
    assert tokens.current() == "two"

    before = os.stat(path)
    path.write_text("six")  # same inode and size; mtime put back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tokens.current() == "two"
    assert tokens.current(force=True) == "six"


def test_a_token_file_being_swapped_keeps_the_last_token(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("one")
    tokens = TokenSource(path=str(path))
    assert tokens.current() == "one"
    path.unlink()
    assert tokens.current() == "one"
