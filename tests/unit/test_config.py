"""Network configurations keep every field a plugin owns byte-for-byte."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multihome.cni.config import NetConf, NetConfList, RawJSON, RawObject, parse_network
from multihome.cni.errors import CNIError, Code

CALICO = (
    '{"cniVersion": "0.3.1", "name": "k8s-pod-network", "plugins": [\n'
    '  {"type": "calico", "mtu": 0, "nodename_file_optional": false, "big": 18446744073709551617,\n'
    '   "ratio": 1.50, "exp": 1e5, "esc": "caf\\u00e9 <&>",\n'
    '   "kubernetes": {"kubeconfig": "/etc/k"}},\n'
    '  {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}]}'
)


def test_edit_keeps_untouched_members_byte_for_byte() -> None:
    raw = RawObject.parse('{"a" : 1.50, "big": 123456789012345678901234567890, "n": {"x": 1e5}}')
    edited = raw.edit({"a": 2, "c": RawJSON('{"z":1}')}, remove=["missing"])
    assert edited.text == '{"a":2,"big":123456789012345678901234567890,"n":{"x": 1e5},"c":{"z":1}}'
    assert raw.edit().text is raw.text
    assert raw.edit(remove=["n"]).text == '{"a":1.50,"big":123456789012345678901234567890}'


def test_conflist_plugins_keep_their_text() -> None:
    conflist = NetConfList.parse(CALICO)
    calico, portmap = conflist.plugins
    assert calico.type == "calico"
    for fragment in (
        '"big": 18446744073709551617',
        '"ratio": 1.50',
        '"exp": 1e5',
        "caf\\u00e9 <&>",
    ):
        assert fragment in calico.text
    assert portmap.capabilities == {"portMappings"}
    assert conflist.capabilities == {"portMappings"}
    assert conflist.cni_version == "0.3.1"


def test_duplicate_keys_last_wins_like_json_decoders() -> None:
    raw = RawObject.parse('{"type": "a", "type": "b"}')
    assert raw.get("type") == "b"
    assert raw.edit({"x": 1}).text == '{"type":"b","x":1}'


def test_cni_versions_list_picks_the_highest_known() -> None:
    conflist = NetConfList.parse(
        '{"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0", "9.9.9"], "name": "n",'
        ' "plugins": [{"type": "bridge"}]}'
    )
    assert conflist.cni_version == "1.1.0"


def test_a_conf_becomes_a_one_plugin_list() -> None:
    conflist = parse_network('{"cniVersion":"1.0.0","name":"x","type":"macvlan","foo":1.0}')
    assert [p.type for p in conflist.plugins] == ["macvlan"]
    assert (
        conflist.plugins[0].text == '{"cniVersion":"1.0.0","name":"x","type":"macvlan","foo":1.0}'
    )
    assert json.loads(conflist.text)["plugins"][0]["foo"] == 1.0


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("{", Code.DECODE_FAILURE, "failed to decode"),
        ("[]", Code.DECODE_FAILURE, "expected '{'"),
        ('{"a": NaN}', Code.DECODE_FAILURE, "NaN"),
        ('{"a": 1} x', Code.DECODE_FAILURE, "unexpected data"),
        ('{"cniVersion": "1.0.0", "name": "x"}', Code.INVALID_NETWORK_CONFIG, "neither 'type' nor"),
        ('{"cniVersion": "1.0.0", "name": "x", "type": ""}', Code.INVALID_NETWORK_CONFIG, "'type'"),
        (
            '{"cniVersion": "1.0.0", "type": "bridge"}',
            Code.INVALID_NETWORK_CONFIG,
            "'name' is missing",
        ),
        ('{"cniVersion": "x", "name": "n", "type": "b"}', Code.INCOMPATIBLE_VERSION, "'x'"),
        (
            '{"cniVersion": "1.0.0", "name": "n", "type": "b", "capabilities": {"mac": 1}}',
            Code.INVALID_NETWORK_CONFIG,
            "capabilities",
        ),
        (
            '{"cniVersion": "1.0.0", "name": "n", "plugins": []}',
            Code.INVALID_NETWORK_CONFIG,
            "plugins",
        ),
        (
            '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": 3}]}',
            Code.INVALID_NETWORK_CONFIG,
            "plugins[0]",
        ),
        (
            '{"cniVersion": "1.0.0", "name": "n", "type": "b", "ipam": []}',
            Code.INVALID_NETWORK_CONFIG,
            "ipam",
        ),
    ],
)
def test_bad_configs_name_the_field(text: str, code: int, words: str) -> None:
    with pytest.raises(CNIError) as err:
        parse_network(text)
    assert err.value.code == code
    assert words in str(err.value)


def test_plugin_in_list_needs_no_name_or_version() -> None:
    conf = NetConf.parse('{"type": "tuning"}', in_list=True)
    assert (conf.name, conf.cni_version, conf.capabilities) == ("", "", frozenset())


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _json))
def test_any_object_round_trips_and_edits_preserve_others(value: dict[str, object]) -> None:
    text = json.dumps(value, indent=1)
    raw = RawObject.parse(text)
    assert raw.to_dict() == json.loads(text)
    edited = raw.edit({"injected": [1, 2]})
    assert json.loads(edited.text) == {**json.loads(text), "injected": [1, 2]}


@given(st.text())
def test_any_text_parses_or_gives_a_cni_error(text: str) -> None:
    try:
        parse_network(text)
    except CNIError as err:
        assert err.code in (
            Code.DECODE_FAILURE,
            Code.INVALID_NETWORK_CONFIG,
            Code.INCOMPATIBLE_VERSION,
        )
