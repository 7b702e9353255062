"""`SubprocessExec` on its own: pipes in both directions, the bounds, a kernel without pidfd.

The failure modes a plugin call reports (timeouts, signals, output) are in
test_invoking.py and tests/faults; these are what the process plumbing
itself promises.
"""

from __future__ import annotations

import errno
import os
import select
import textwrap
from pathlib import Path

import pytest

from multihome.cni.errors import CNIError, Code
from multihome.cni.process import SubprocessExec


def plugin(tmp_path: Path, body: str) -> str:
    path = tmp_path / "p"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def dead(pid: int) -> bool:
    """Whether ``pid`` has exited (its pidfd is readable), waiting up to 10 s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], 10)[0])
    finally:
        os.close(fd)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_configuration_larger_than_a_pipe_arrives_whole(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    copy = tmp_path / "stdin"
    outcome = await SubprocessExec().run(
        plugin(tmp_path, f"cat > {copy}; echo done\n"), stdin=data, env={}
    )
    assert (outcome.returncode, outcome.stdout) == (0, b"done\n")
    assert copy.read_bytes() == data


async def test_a_plugin_that_reads_no_configuration(tmp_path: Path) -> None:
    outcome = await SubprocessExec().run(
        plugin(tmp_path, "echo ok; exit 4\n"), stdin=b"x" * (1 << 20), env={}
    )
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (4, b"ok\n", b"")


async def test_stderr_past_the_limit_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = plugin(
        tmp_path,
        f"sleep 1000 & echo $! > {pids}; head -c 5000 /dev/zero >&2; wait\n",
    )
    with pytest.raises(CNIError) as caught:
        await SubprocessExec(output_limit=4096).run(path, stdin=b"", env={"CNI_COMMAND": "DEL"})
    assert caught.value.code == Code.DECODE_FAILURE
    assert "printed more than 4096 bytes on stderr during DEL" in caught.value.msg
    assert dead(int(pids.read_text()))


async def test_output_up_to_the_limit_is_kept(tmp_path: Path) -> None:
    path = plugin(tmp_path, "head -c 4096 /dev/zero; head -c 4096 /dev/zero >&2\n")
    outcome = await SubprocessExec(output_limit=4096).run(path, stdin=b"", env={})
    assert outcome.stdout == outcome.stderr == bytes(4096)


async def test_a_kernel_without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    executor = SubprocessExec(timeout=1.0)
    outcome = await executor.run(plugin(tmp_path, "cat; exit 3\n"), stdin=b"conf", env={})
    assert (outcome.returncode, outcome.stdout) == (3, b"conf")
    with pytest.raises(CNIError) as caught:
        await executor.run(plugin(tmp_path, "exec sleep 1000\n"), stdin=b"", env={})
    assert caught.value.code == Code.TRY_AGAIN_LATER


async def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    executor = SubprocessExec(timeout=1.0, output_limit=1024)
    before = open_fds()
    await executor.run(plugin(tmp_path, "cat >/dev/null\n"), stdin=b"x" * 100_000, env={})
    for body in ("head -c 2000 /dev/zero; sleep 1000\n", "exec sleep 1000\n"):
        with pytest.raises(CNIError):
            await executor.run(plugin(tmp_path, body), stdin=b"", env={})
    with pytest.raises(CNIError):
        await executor.run(str(tmp_path / "missing"), stdin=b"", env={})
    assert open_fds() == before
    assert executor.running == 0


async def test_the_exit_status_and_the_signal(tmp_path: Path) -> None:
    executor = SubprocessExec()
    exited = await executor.run(plugin(tmp_path, "exit 7\n"), stdin=b"", env={})
    killed = await executor.run(plugin(tmp_path, "kill -TERM $$\n"), stdin=b"", env={})
    assert (exited.returncode, killed.returncode) == (7, -15)


async def test_a_nul_byte_in_the_environment_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(CNIError) as caught:
        await SubprocessExec().run(
            plugin(tmp_path, "exit 0\n"), stdin=b"", env={"CNI_IFNAME": "a\0b"}
        )
    assert caught.value.code == Code.INVALID_ENV
    assert "CNI_IFNAME holds a NUL byte" in caught.value.msg
    assert "a\0b" not in caught.value.msg
