"""Finding codes, their documentation, and the one CNI error they become at ADD."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from multihome.cni.errors import Code
from multihome.networks.findings import RULES, Finding, Findings, errors, finding, to_cni_error

DOC = Path(__file__).resolve().parents[3] / "docs" / "findings.md"
ROW = re.compile(r"^\| `(?P<code>[a-z0-9-]+)` \| (?P<severity>error|warning|info) \| .+ \| .+ \|$")


def test_every_code_is_documented_with_its_severity_and_nothing_else_is() -> None:
    documented = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            documented[match["code"]] = match["severity"]
    assert documented == {code: rule.severity for code, rule in RULES.items()}


def test_codes_are_stable_kebab_case() -> None:
    for code in RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code), code


def test_finding_takes_severity_and_default_hint_from_its_rule() -> None:
    item = finding("mac-zero", "networks[0].mac", "MAC is zero")
    assert item == Finding(
        "mac-zero", "error", "networks[0].mac", "MAC is zero", RULES["mac-zero"].fix
    )
    assert str(item) == f"error: networks[0].mac: MAC is zero ({RULES['mac-zero'].fix})"
    assert item.to_dict()["code"] == "mac-zero"
    assert finding("mac-zero", "p", "m", hint="custom").hint == "custom"
    with pytest.raises(KeyError):
        finding("no-such-code", "p", "m")


def test_collector() -> None:
    collected = Findings()
    collected.add("mac-universal", "a", "m")
    assert not collected.has_errors
    collected.add("mac-zero", "b", "m")
    assert collected.has_errors
    assert len(collected) == 2
    assert [f.code for f in errors(collected)] == ["mac-zero"]


def test_no_errors_no_cni_error() -> None:
    assert to_cni_error([]) is None
    assert to_cni_error([finding("mac-universal", "p", "m")]) is None


def test_one_error() -> None:
    error = to_cni_error([finding("mac-zero", "networks[0].mac", "MAC '00:..' is all zeros")])
    assert error is not None
    assert error.code == Code.INVALID_NETWORK_CONFIG
    assert error.msg == "networks[0].mac: MAC '00:..' is all zeros"
    assert error.details == RULES["mac-zero"].fix


def test_several_errors_are_listed_in_one_message_with_hints_once() -> None:
    error = to_cni_error(
        [
            finding("mac-zero", "networks[0].mac", "zero"),
            finding("mac-universal", "networks[0].mac", "not an error"),
            finding("nad-not-found", "networks[1]", "missing"),
            finding("mac-zero", "networks[2].mac", "zero again"),
        ]
    )
    assert error is not None
    assert error.msg == (
        "3 errors: networks[0].mac: zero; networks[1]: missing; networks[2].mac: zero again"
    )
    assert error.details == f"{RULES['mac-zero'].fix}; {RULES['nad-not-found'].fix}"


def test_code_follows_the_rules_when_they_agree() -> None:
    error = to_cni_error([finding("cni-version-unsupported", "p", "m")])
    assert error is not None and error.code == Code.INCOMPATIBLE_VERSION
    error = to_cni_error(
        [finding("cni-version-unsupported", "p", "m"), finding("mac-zero", "q", "m")]
    )
    assert error is not None and error.code == Code.INVALID_NETWORK_CONFIG
