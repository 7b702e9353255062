"""The daemon's start without click (daemon/start.py, multihome/main.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from multihome.daemon import start


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["daemon"], (start.DEFAULT_CONFIG, False)),
        (["daemon", "--config", "/x.json"], ("/x.json", False)),
        (["daemon", "--config=/x.json", "--allow-non-root"], ("/x.json", True)),
        (["daemon", "--allow-non-root", "--config", "/x.json"], ("/x.json", True)),
    ],
)
def test_the_plain_command_lines_start_the_daemon(
    argv: list[str], expected: tuple[str, bool]
) -> None:
    assert start.from_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["daemon", "--help"],
        ["daemon", "-h"],
        ["daemon", "--config"],
        ["daemon", "--config="],
        ["daemon", "--config", "--allow-non-root"],
        ["daemon", "--confg", "/x.json"],
        ["daemon", "extra"],
    ],
)
def test_every_other_command_line_goes_to_click(argv: list[str]) -> None:
    assert start.from_argv(argv) is None


def test_the_daemon_does_not_load_click() -> None:
    # What `multihome daemon` imports before it serves: click would stay resident for months.
    probe = (
        "import sys, multihome.main, multihome.daemon.server, multihome.cluster.kube\n"
        "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('click.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bad_config_is_a_message_and_exit_1() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multihome", "daemon", "--config", "/nonexistent/daemon.json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("multihome daemon: ")
    assert "/nonexistent/daemon.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_still_comes_from_click() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multihome", "daemon", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--config" in proc.stdout
    assert "Run the node daemon" in proc.stdout
