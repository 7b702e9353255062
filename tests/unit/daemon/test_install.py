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

from multihome import __version__
from multihome.cni.errors import CNIError
from multihome.cni.version import version_text
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


def test_the_thin_plugin_launcher_answers_version_without_python(bin_dir: Path) -> None:
    # An interpreter that does not exist: VERSION never gets as far as Python.
    [done] = install(bin_dir=str(bin_dir), shim=None, thin_python="/nonexistent/python3")
    assert done.path == str(bin_dir / THIN_NAME)
    assert stat.S_IMODE((bin_dir / THIN_NAME).stat().st_mode) == 0o755
    answer = subprocess.run(
        [done.path],
        input=b'{"cniVersion": "1.0.0"}' * 10_000,  # more than a pipe holds: it is read
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.decode() == version_text() + "\n"
    assert json.loads(answer.stdout) == json.loads(version_text())


def _refused_add(path: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # An ADD with a configuration the thin plugin refuses: its error proves it ran.
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "e"}
    return subprocess.run(
        [path], input="{}", env=env, capture_output=True, text=True, check=False, cwd=cwd
    )


def test_the_launcher_runs_the_thin_plugin_with_the_hosts_packages(
    bin_dir: Path, tmp_path: Path
) -> None:
    """``-P``, not ``-S`` or ``-I``: the host's site-packages and ``.pth`` files (editable
    installs, distro paths) are found; the working directory is not on ``sys.path``."""
    [done] = install(bin_dir=str(bin_dir), shim=None, thin_python=sys.executable)
    # A module in the working directory that would shadow the package's own.
    (tmp_path / "multihome").mkdir()
    (tmp_path / "multihome" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    answer = _refused_add(done.path, cwd=tmp_path)
    assert answer.returncode == 1, answer.stderr
    error = json.loads(answer.stdout)
    assert error["code"] == 4, error  # CNI_PATH is missing: the thin plugin said so
    assert "warning" not in answer.stderr.lower()


def test_a_launcher_of_another_version_is_named(bin_dir: Path) -> None:
    [done] = install(bin_dir=str(bin_dir), shim=None, thin_python=sys.executable)
    path = Path(done.path)
    path.write_text(path.read_text().replace(f"={__version__} exec", "=0.0.1 exec"))
    answer = _refused_add(done.path)
    assert "written by multihome 0.0.1" in answer.stderr
    assert "multihome install --thin-python" in answer.stderr


def test_the_launcher_needs_an_absolute_interpreter(bin_dir: Path) -> None:
    with pytest.raises(CNIError, match="absolute path"):
        install(bin_dir=str(bin_dir), shim=None, thin_python="python3")
    with pytest.raises(CNIError, match="without spaces or quotes"):
        install(bin_dir=str(bin_dir), shim=None, thin_python="/usr/bin/python3'; rm -rf /")


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
