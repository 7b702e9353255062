"""A CNI request is read from the environment with libcni skel's rules and codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multihome.cni.errors import CNIError, Code
from multihome.cni.request import (
    K8sArgs,
    Request,
    parse_args,
    validate_container_id,
    validate_ifname,
    validate_network_name,
)

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "0123abcd",
    "CNI_NETNS": "/run/netns/pod",
    "CNI_IFNAME": "net1",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
    "K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=5f1c",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}


def env(**changes: str | None) -> dict[str, str]:
    out = dict(ADD_ENV)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_a_full_add_request() -> None:
    request = Request.from_env(ADD_ENV, b'{"cniVersion":"1.0.0"}')
    assert request.command == "ADD"
    assert request.container_id == "0123abcd"
    assert request.netns == "/run/netns/pod"
    assert request.ifname == "net1"
    assert request.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert request.args[0] == ("IgnoreUnknown", "1")
    assert request.k8s == K8sArgs("default", "web-0", "0123abcd", "5f1c")
    assert request.arg("K8S_POD_NAME") == "web-0"
    assert request.arg("MAC") is None
    assert request.stdin == b'{"cniVersion":"1.0.0"}'


def test_to_env_round_trips() -> None:
    request = Request.from_env(ADD_ENV, b"{}")
    assert request.to_env() == ADD_ENV
    assert Request.from_env(request.to_env(), b"{}") == request


# Which variables each command needs: (command, variable removed, is it an error?)
REQUIRED = [
    ("ADD", "CNI_CONTAINERID", True),
    ("ADD", "CNI_NETNS", True),
    ("ADD", "CNI_IFNAME", True),
    ("ADD", "CNI_PATH", True),
    ("ADD", "CNI_ARGS", False),
    ("CHECK", "CNI_NETNS", True),
    ("CHECK", "CNI_IFNAME", True),
    ("DEL", "CNI_NETNS", False),  # the namespace may be gone already
    ("DEL", "CNI_CONTAINERID", True),
    ("DEL", "CNI_IFNAME", True),
    ("DEL", "CNI_PATH", True),
    ("GC", "CNI_CONTAINERID", False),
    ("GC", "CNI_IFNAME", False),
    ("GC", "CNI_NETNS", False),
    ("GC", "CNI_PATH", True),
    ("STATUS", "CNI_CONTAINERID", False),
    ("STATUS", "CNI_PATH", True),
    ("VERSION", "CNI_PATH", False),
    ("VERSION", "CNI_CONTAINERID", False),
]


@pytest.mark.parametrize(("command", "variable", "required"), REQUIRED)
def test_required_variables_per_command(command: str, variable: str, required: bool) -> None:
    environment = env(CNI_COMMAND=command, **{variable: None})
    if not required:
        assert Request.from_env(environment).command == command
        return
    with pytest.raises(CNIError) as caught:
        Request.from_env(environment)
    assert caught.value.code == Code.INVALID_ENV
    assert caught.value.msg == f"required env variables [{variable}] missing"
    assert f"CNI_COMMAND={command} needs" in caught.value.details


def test_all_missing_variables_are_named_at_once() -> None:
    with pytest.raises(CNIError) as caught:
        Request.from_env({"CNI_COMMAND": "ADD"})
    assert caught.value.msg == (
        "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
    )


def test_an_empty_variable_counts_as_missing() -> None:
    with pytest.raises(CNIError, match=r"\[CNI_IFNAME\] missing"):
        Request.from_env(env(CNI_IFNAME=""))


@pytest.mark.parametrize("command", ["", "add", "GET", "DELETE"])
def test_unknown_or_missing_command(command: str) -> None:
    with pytest.raises(CNIError) as caught:
        Request.from_env(env(CNI_COMMAND=command))
    assert caught.value.code == Code.INVALID_ENV
    assert "ADD, DEL, CHECK, GC, STATUS, VERSION" in caught.value.details
    if command:
        assert caught.value.msg == f'unknown CNI_COMMAND: "{command}"'
    else:
        assert "CNI_COMMAND" in caught.value.msg


def test_version_ignores_stdin_and_other_variables() -> None:
    request = Request.from_env({"CNI_COMMAND": "VERSION"}, b"anything")
    assert request.stdin == b""
    assert request.path == ()


@pytest.mark.parametrize(
    ("container_id", "valid"),
    [
        ("abc", True),
        ("0", True),
        ("a-b_c.d", True),
        ("A1" * 64, True),
        ("-abc", False),
        ("_abc", False),
        (".abc", False),
        ("a/b", False),
        ("a b", False),
        ("abc\n", False),
        ("ü", False),
    ],
)
def test_container_id(container_id: str, valid: bool) -> None:
    if valid:
        assert validate_container_id(container_id) == container_id
        assert Request.from_env(env(CNI_CONTAINERID=container_id)).container_id == container_id
        return
    with pytest.raises(CNIError) as caught:
        Request.from_env(env(CNI_CONTAINERID=container_id))
    assert caught.value.code == Code.INVALID_ENV
    assert "CNI_CONTAINERID" in caught.value.msg
    assert repr(container_id)[1:-1] in caught.value.msg or container_id in caught.value.msg
    assert "letters, digits" in caught.value.details


def test_a_missing_container_id_alone_is_container_unknown() -> None:
    with pytest.raises(CNIError) as caught:
        validate_container_id("")
    assert caught.value.code == Code.CONTAINER_UNKNOWN


@pytest.mark.parametrize(
    ("ifname", "reason"),
    [
        ("eth0", None),
        ("net1", None),
        ("a" * 15, None),
        ("ü" * 7, None),  # 14 bytes
        ("a" * 16, "16 bytes long"),
        ("ü" * 8, "16 bytes long"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("eth0:1", "'/', ':' or whitespace"),
        ("a/b", "'/', ':' or whitespace"),
        ("a b", "'/', ':' or whitespace"),
        ("a\tb", "'/', ':' or whitespace"),
        ("\0", "a NUL byte"),
    ],
)
def test_interface_name(ifname: str, reason: str | None) -> None:
    if reason is None:
        assert validate_ifname(ifname) == ifname
        return
    with pytest.raises(CNIError) as caught:
        Request.from_env(env(CNI_IFNAME=ifname))
    assert caught.value.code == Code.INVALID_ENV
    assert caught.value.msg.startswith("invalid CNI_IFNAME")
    assert reason in caught.value.msg
    assert "1 to 15 bytes" in caught.value.details


def test_interface_name_is_not_checked_for_gc() -> None:
    assert Request.from_env(env(CNI_COMMAND="GC", CNI_IFNAME="a/b")).ifname == "a/b"


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("", ()),
        ("A=1", (("A", "1"),)),
        ("A=1;B=", (("A", "1"), ("B", ""))),
        ("A=1;", (("A", "1"),)),
        ("B=2;A=1;B=3", (("B", "2"), ("A", "1"), ("B", "3"))),
    ],
)
def test_cni_args_pairs_keep_their_order(text: str, pairs: tuple[tuple[str, str], ...]) -> None:
    assert parse_args(text) == pairs


@pytest.mark.parametrize("bad", ["A", "=1", "A=1=2", "A=1;B", "A=1;;=x"])
def test_malformed_cni_args(bad: str) -> None:
    with pytest.raises(CNIError) as caught:
        Request.from_env(env(CNI_ARGS=bad))
    assert caught.value.code == Code.INVALID_ENV
    assert caught.value.msg.startswith("invalid CNI_ARGS pair")
    assert bad in caught.value.msg
    assert "KEY=VALUE" in caught.value.details


def test_k8s_args_later_pairs_win_and_absent_ones_are_empty() -> None:
    args = K8sArgs.from_pairs((("K8S_POD_NAME", "a"), ("K8S_POD_NAME", "b")))
    assert args == K8sArgs(name="b")


def test_network_name() -> None:
    assert validate_network_name("macvlan-conf.1") == "macvlan-conf.1"
    for bad in ("", "a/b", "-x"):
        with pytest.raises(CNIError) as caught:
            validate_network_name(bad)
        assert caught.value.code == Code.INVALID_NETWORK_CONFIG


_keys = st.text(st.characters(blacklist_characters=";=", blacklist_categories=["Cs"]), min_size=1)
_values = st.text(st.characters(blacklist_characters=";=", blacklist_categories=["Cs"]))


@given(st.lists(st.tuples(_keys, _values), max_size=6))
def test_cni_args_round_trip(pairs: list[tuple[str, str]]) -> None:
    request = Request(
        command="DEL", container_id="c", ifname="eth0", args=tuple(pairs), path=("/b",)
    )
    assert Request.from_env(request.to_env()).args == tuple(pairs)


@given(st.dictionaries(st.sampled_from(list(ADD_ENV)), st.text(max_size=20)))
def test_any_environment_gives_a_request_or_a_cni_error(changes: dict[str, str]) -> None:
    try:
        Request.from_env(env(**changes))
    except CNIError as err:
        assert err.code in (Code.INVALID_ENV, Code.CONTAINER_UNKNOWN)
        assert err.msg
