"""One description of the daemon config's keys: parsing, defaults, warnings and the doc."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from multihome.cluster.kube import KubeConfig, _camel
from multihome.daemon import configschema as schema
from multihome.daemon.confgen import Settings
from multihome.daemon.config import _ATTRS, DaemonConfig, DaemonConfigError

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_the_doc_table_is_the_schema() -> None:
    text = (DOCS / "configuration.md").read_text()
    start = text.index("<!-- generated from src/multihome/daemon/configschema.py")
    start = text.index("\n", start) + 1
    end = text.index("<!-- end of generated table -->")
    assert text[start:end] == schema.markdown_table(), (
        "docs/configuration.md is stale: "
        "python -m multihome.daemon.configschema --write docs/configuration.md"
    )


def test_every_kube_setting_is_documented() -> None:
    text = (DOCS / "configuration-kube.md").read_text()
    for field in dataclasses.fields(KubeConfig):
        assert f"`{_camel(field.name)}`" in text, field.name


def test_daemon_config_defaults_are_the_schemas() -> None:
    defaults = DaemonConfig()
    for attr, name in _ATTRS.items():
        assert getattr(defaults, attr) == schema.DEFAULTS[name], name
    assert DaemonConfig.parse("{}", environ={}) == dataclasses.replace(
        defaults, raw=DaemonConfig.parse("{}", environ={}).raw
    )


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("sockDir", "socketDir"), ("metricsport", None), ("maxConcurentRequests",
      "maxConcurrentRequests"), ("clusterNetwrk", "clusterNetwork")],
)  # fmt: skip
def test_a_misspelt_key_is_named_with_the_closest_known_one(
    key: str, suggestion: str | None
) -> None:
    config = DaemonConfig.parse(json.dumps({key: 1 if "port" in key else "x"}), environ={})
    if suggestion is None:  # any letter case matches, as in Go: not unknown
        assert config.notices == ()
        return
    [notice] = config.notices
    assert f"unknown key {key!r} is ignored; did you mean {suggestion!r}?" in notice


def test_request_keys_and_unrelated_keys() -> None:
    # Keys of the multus configuration override requests: known, no warning.
    assert DaemonConfig.parse('{"confDir": "/x", "defaultNetworks": []}', environ={}).notices == ()
    [notice] = DaemonConfig.parse('{"zzz": 1}', environ={}).notices
    assert notice == "daemon configuration: unknown key 'zzz' is ignored"


def test_confgen_and_the_daemon_agree_on_each_key() -> None:
    # A wrong type is refused by both readers with the schema's rule.
    for key in ("cniConfigDir", "forceCNIVersion", "globalNamespaces", "shimRequestTimeoutSeconds"):
        entry = schema.BY_NAME[key]
        with pytest.raises(DaemonConfigError, match=f"{key} is .*; it must be {entry.rule()}"):
            DaemonConfig.parse(json.dumps({key: {"no": 1}}), environ={})
        with pytest.raises(Exception, match=f"'{key}' must be"):
            Settings.from_daemon_config({key: {"no": 1}})


def test_a_misspelt_kube_setting_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="multihome.cluster.kube"):
        assert KubeConfig.from_mapping({"podWiat": 3}) == KubeConfig()
    assert "did you mean 'podWait'?" in caplog.text
