"""Installing the shim: atomic, idempotent, harmless to a shim that is running."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from multihome.cni.errors import CNIError
from multihome.daemon.install import SHIM_NAME, THIN_NAME, install, main, replace_file

SLEEP = shutil.which("sleep") or "/bin/sleep"
TRUE = shutil.which("true") or "/bin/true"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def test_install_copies_the_shim_executable(bin_dir: Path) -> None:
    [done] = install(bin_dir=str(bin_dir), shim=TRUE)
    target = bin_dir / SHIM_NAME
    assert done.path == str(target) and done.changed
    assert target.read_bytes() == Path(TRUE).read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert subprocess.run([str(target)], check=False).returncode == 0
    assert os.listdir(bin_dir) == [SHIM_NAME]


def test_installing_the_same_bytes_again_changes_nothing(bin_dir: Path) -> None:
    install(bin_dir=str(bin_dir), shim=TRUE)
    before = (bin_dir / SHIM_NAME).stat()
    [done] = install(bin_dir=str(bin_dir), shim=TRUE)
    after = (bin_dir / SHIM_NAME).stat()
    assert not done.changed
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_a_wrong_mode_is_repaired(bin_dir: Path) -> None:
    install(bin_dir=str(bin_dir), shim=TRUE)
    (bin_dir / SHIM_NAME).chmod(0o600)
    [done] = install(bin_dir=str(bin_dir), shim=TRUE)
    assert done.changed
    assert stat.S_IMODE((bin_dir / SHIM_NAME).stat().st_mode) == 0o755


def test_install_over_a_shim_that_is_running(bin_dir: Path) -> None:
    target = bin_dir / SHIM_NAME
    shutil.copy(SLEEP, target)
    # Popen returns once the child has exec'd (its error pipe closes at exec).
    running = subprocess.Popen([str(target), "600"])
    try:
        [done] = install(bin_dir=str(bin_dir), shim=TRUE)
        assert done.changed
        assert running.poll() is None  # undisturbed
        # It runs the old file, which is no longer in the directory.
        assert os.readlink(f"/proc/{running.pid}/exe") == f"{target} (deleted)"
        assert target.read_bytes() == Path(TRUE).read_bytes()
        assert subprocess.run([str(target)], check=False).returncode == 0
        assert os.listdir(bin_dir) == [SHIM_NAME]
    finally:
        running.kill()
        running.wait()


def test_a_failed_replace_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    target.mkdir()
    with pytest.raises(OSError):
        replace_file(str(target), b"{}", mode=0o644)
    assert target.is_dir()
    assert os.listdir(tmp_path) == ["conf"]


def test_replace_file_refuses_empty_content(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        replace_file(str(tmp_path / "x"), b"", mode=0o644)
    assert os.listdir(tmp_path) == []


def test_errors_name_the_file(tmp_path: Path, bin_dir: Path) -> None:
    with pytest.raises(CNIError, match=f"failed to read {tmp_path / 'nope'}"):
        install(bin_dir=str(bin_dir), shim=str(tmp_path / "nope"))
    with pytest.raises(CNIError, match="is not a directory"):
        install(bin_dir=str(tmp_path / "missing"), shim=TRUE)
    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(CNIError, match="empty"):
        install(bin_dir=str(bin_dir), shim=str(empty))
    assert os.listdir(bin_dir) == []


def test_the_thin_plugin_launcher_runs_the_thin_plugin(bin_dir: Path) -> None:
    [done] = install(bin_dir=str(bin_dir), shim=None, thin_python=sys.executable)
    assert done.path == str(bin_dir / THIN_NAME)
    assert stat.S_IMODE((bin_dir / THIN_NAME).stat().st_mode) == 0o755
    answer = subprocess.run(
        [done.path],
        input=b'{"cniVersion": "1.0.0"}',
        env={**os.environ, "CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert "1.0.0" in json.loads(answer.stdout)["supportedVersions"]


def test_the_launchers_interpreter_finds_its_installed_packages(bin_dir: Path) -> None:
    """No ``-S``: the launcher is written (from a container) for the host's Python, whose
    site-packages and ``.pth`` files (editable installs, distro paths) only ``site`` knows."""
    [done] = install(bin_dir=str(bin_dir), shim=None, thin_python=sys.executable)
    interpreter = Path(done.path).read_text().splitlines()[0].removeprefix("#!").split()
    probe = "import sys, h11, multihome.thin; print(sys.flags.no_site)"
    found = subprocess.run(
        [*interpreter, "-c", probe], capture_output=True, text=True, check=False, env={}
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "0"


def test_the_launcher_needs_an_absolute_interpreter(bin_dir: Path) -> None:
    with pytest.raises(CNIError, match="absolute path"):
        install(bin_dir=str(bin_dir), shim=None, thin_python="python3")


def test_main(bin_dir: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--bin-dir", str(bin_dir), "--shim", TRUE], stdout=out, stderr=err) == 0
    assert out.getvalue() == f"installed {bin_dir / SHIM_NAME}\n"
    out = io.StringIO()
    assert main(["--bin-dir", str(bin_dir), "--shim", TRUE, "-o", "json"], stdout=out) == 0
    assert json.loads(out.getvalue()) == [{"path": str(bin_dir / SHIM_NAME), "changed": False}]
    err = io.StringIO()
    assert main(["--bin-dir", str(bin_dir / "x"), "--shim", TRUE], stderr=err) == 1
    assert err.getvalue().startswith("multihome install: failed to install 'multihome-shim'")
