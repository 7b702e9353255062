"""Claims of docs/ that a test can keep true."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from multihome.daemon import install
from multihome.daemon.confgen import FORMATS
from multihome.daemon.server import _CONFGEN_KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _row(doc: str, first_cell: str) -> str:
    for line in (DOCS / doc).read_text().splitlines():
        if line.startswith(f"| {first_cell}"):
            return line
    raise AssertionError(f"{doc} has no row starting with {first_cell}")


def test_the_keys_that_turn_config_generation_on() -> None:
    row = _row("configuration.md", "`cniConfigDir`")
    assert "config generation is on only when this, " in row
    keys = ["cniConfigDir", *re.findall(r"`(\w+)`", row.split("|")[4])]
    assert {k.casefold() for k in keys} == set(_CONFGEN_KEYS)


def test_the_config_formats() -> None:
    row = _row("configuration.md", "`cniConfigFormat`")
    assert all(f"`{name}`" in row for name in FORMATS)


def test_the_documented_thin_install_command_works(tmp_path: Path) -> None:
    text = (DOCS / "configuration.md").read_text()
    [command] = re.findall(r"^    (multihome install .*)$", text, re.M)
    argv = shlex.split(command)[2:]
    assert install.main([*argv, "--bin-dir", str(tmp_path)]) == 0
    assert (tmp_path / install.THIN_NAME).exists()
