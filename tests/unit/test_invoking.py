"""Running plugins: safe lookup, every way a plugin can fail, and libcni's chain rules.

Process behaviour (errors, stderr, hangs, environment) is tested with small
shell-script plugins in a temporary bin dir; chain semantics with `FakeExec`.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from multihome.cni.config import NetConfList, parse_network
from multihome.cni.errors import CNIError, Code
from multihome.cni.fakeexec import Call, FakeExec
from multihome.cni.finding import find_plugin
from multihome.cni.invoking import (
    add_network_list,
    build_plugin_conf,
    check_network_list,
    del_network_list,
    exec_plugin,
    exec_plugin_with_result,
    gc_network_list,
    status_network_list,
    version_info,
)
from multihome.cni.output import PluginInfo
from multihome.cni.process import Outcome, RuntimeConf, SubprocessExec
from multihome.cni.result import Interface, IPConfig, Result

CONF = b'{"cniVersion":"1.0.0","name":"net","type":"x"}'


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def write_plugin(bindir: Path, name: str, body: str) -> Path:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def runtime(*paths: Path | str, **changes: Any) -> RuntimeConf:
    values: dict[str, Any] = {
        "container_id": "c1",
        "netns": "/run/netns/pod",
        "ifname": "net1",
        "args": (("K8S_POD_NAME", "web"),),
        "cni_path": tuple(str(p) for p in paths) or ("/opt/cni/bin",),
    }
    values.update(changes)
    return RuntimeConf(**values)


class Spy:
    """Wraps an executor and records every process it is asked to start."""

    def __init__(self, inner: SubprocessExec | FakeExec) -> None:
        self.inner = inner
        self.ran: list[str] = []

    def find(self, plugin_type: str, paths: Sequence[str]) -> str:
        return self.inner.find(plugin_type, paths)

    async def run(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> Outcome:
        self.ran.append(path)
        return await self.inner.run(path, stdin=stdin, env=env)


def wait_dead(pid: int) -> bool:
    """Whether ``pid`` ends within 10 s (a pidfd is readable once it has exited)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], 10)
        return bool(readable)
    finally:
        os.close(fd)


def result(version: str = "1.0.0", address: str = "10.1.1.2/24") -> Result:
    return Result(
        cni_version=version,
        interfaces=(Interface(name="net1", mac="02:00:00:00:00:01", sandbox="/run/netns/pod"),),
        ips=(IPConfig(address=address, gateway="10.1.1.1", interface=0),),
    )


def conflist(*plugins: dict[str, Any], version: str = "1.0.0", **extra: Any) -> NetConfList:
    return NetConfList.parse(
        json.dumps({"cniVersion": version, "name": "chain", **extra, "plugins": list(plugins)})
    )


# -- a type is a file name, never a path ---------------------------------------------------


UNSAFE_TYPES = ["../../bin/sh", "/bin/sh", "", "sh\x00x", ".", "..", "a..b", "../evil"]


@pytest.mark.parametrize("plugin_type", [*UNSAFE_TYPES, "ABSOLUTE"])
async def test_unsafe_types_are_refused_before_anything_runs(
    bindir: Path, tmp_path: Path, plugin_type: str
) -> None:
    marker = tmp_path / "ran"
    evil = write_plugin(tmp_path, "evil", f"touch {marker}\n")
    write_plugin(bindir, "sh", f"touch {marker}\n")
    plugin_type = str(evil) if plugin_type == "ABSOLUTE" else plugin_type
    spy = Spy(SubprocessExec())
    with pytest.raises(CNIError) as caught:
        await exec_plugin(plugin_type, command="ADD", conf=CONF, rt=runtime(bindir), executor=spy)
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert caught.value.msg.startswith(f"invalid plugin type {json.dumps(plugin_type)}")
    assert "file name" in caught.value.details
    assert spy.ran == []
    assert not marker.exists()


async def test_a_chain_with_an_unsafe_type_runs_none_of_it(bindir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write_plugin(bindir, "ok", f'touch {marker}; echo \'{{"cniVersion":"1.0.0"}}\'\n')
    spy = Spy(SubprocessExec())
    chain = conflist({"type": "../ok"}, {"type": "ok"})
    with pytest.raises(
        CNIError, match=r'plugin type="\.\./ok" failed \(add\): invalid plugin type'
    ):
        await add_network_list(chain, runtime(bindir), executor=spy)
    assert spy.ran == []
    assert not marker.exists()


def test_the_fake_refuses_the_same_types() -> None:
    fake = FakeExec({"sh": None})
    for plugin_type in UNSAFE_TYPES:
        with pytest.raises(CNIError) as caught:
            fake.find(plugin_type, ["/opt/cni/bin"])
        assert caught.value.code == Code.INVALID_NETWORK_CONFIG


def test_missing_plugin_names_the_type_and_the_dirs(bindir: Path, tmp_path: Path) -> None:
    (bindir / "adir").mkdir()  # a directory of that name is not a plugin
    with pytest.raises(CNIError) as caught:
        find_plugin("adir", [str(bindir), str(tmp_path / "nowhere")])
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert (
        caught.value.msg
        == f'failed to find plugin "adir" in path [{bindir} {tmp_path / "nowhere"}]'
    )


def test_the_first_dir_that_has_the_plugin_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_plugin(second, "p", "")
    write_plugin(first, "p", "")
    assert find_plugin("p", ["", str(first), str(second)]) == str(first / "p")


# -- how a plugin can fail -------------------------------------------------------------------


async def run_one(bindir: Path, body: str, *, command: str = "ADD", timeout: float = 30) -> bytes:
    write_plugin(bindir, "p", body)
    return await exec_plugin(
        "p",
        command=command,
        conf=CONF,
        rt=runtime(bindir),
        executor=SubprocessExec(timeout=timeout),
    )


async def test_a_json_error_keeps_its_code_message_and_details(bindir: Path) -> None:
    body = (
        """echo '{"cniVersion":"1.0.0","code":7,"msg":"bad master","details":"eth9"}'; exit 1\n"""
    )
    with pytest.raises(CNIError) as caught:
        await run_one(bindir, body)
    assert caught.value == CNIError(7, "bad master", "eth9")


async def test_stderr_is_the_message_when_stdout_is_not_an_error(bindir: Path) -> None:
    with pytest.raises(CNIError) as caught:
        await run_one(bindir, "echo 'panic: runtime error' >&2; exit 2\n")
    assert caught.value.code == Code.INTERNAL
    assert caught.value.msg == 'plugin "p" failed with exit status 2: panic: runtime error'


async def test_garbage_on_stdout_of_a_failing_plugin(bindir: Path) -> None:
    with pytest.raises(CNIError) as caught:
        await run_one(bindir, "echo 'oops, not json'; exit 1\n")
    assert caught.value.code == Code.DECODE_FAILURE
    assert 'plugin "p" failed with exit status 1' in caught.value.msg
    assert "oops, not json" in caught.value.msg


async def test_a_silent_failure_gives_its_exit_status(bindir: Path) -> None:
    with pytest.raises(CNIError) as caught:
        await run_one(bindir, "exit 3\n")
    assert caught.value == CNIError(
        Code.INTERNAL, 'plugin "p" failed with exit status 3 and printed no error message'
    )


async def test_garbage_instead_of_a_result(bindir: Path) -> None:
    write_plugin(bindir, "p", "echo 'hello'\n")
    with pytest.raises(CNIError) as caught:
        await exec_plugin_with_result("p", conf=CONF, rt=runtime(bindir))
    assert caught.value.code == Code.DECODE_FAILURE
    assert caught.value.msg.startswith('failed to decode the result of plugin "p"')
    assert "hello" in caught.value.details


async def test_a_result_without_version_is_in_the_confs_version(bindir: Path) -> None:
    write_plugin(bindir, "p", """echo '{"ips":[{"address":"10.1.1.2/24"}]}'\n""")
    got = await exec_plugin_with_result("p", conf=CONF, rt=runtime(bindir))
    assert got.cni_version == "1.0.0"
    assert got.ips[0].address == "10.1.1.2/24"


async def test_a_file_that_cannot_be_executed(bindir: Path) -> None:
    (bindir / "p").write_text("not a program")
    (bindir / "p").chmod(0o644)
    with pytest.raises(CNIError) as caught:
        await exec_plugin("p", command="ADD", conf=CONF, rt=runtime(bindir))
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG  # permanent: never "try again"
    assert "failed to execute plugin" in caught.value.msg


async def test_a_hung_plugin_is_killed_with_its_children(bindir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"echo $$ > {pids}; sleep 1000 & echo $! >> {pids}; wait\n"
    with pytest.raises(CNIError) as caught:
        await run_one(bindir, body, timeout=1.0)
    assert caught.value.code == Code.TRY_AGAIN_LATER
    assert "did not finish ADD within 1 s" in caught.value.msg
    plugin_pid, child_pid = (int(line) for line in pids.read_text().split())
    assert wait_dead(plugin_pid)
    assert wait_dead(child_pid)


async def test_a_cancelled_call_kills_the_plugin(bindir: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    write_plugin(bindir, "p", f"sleep 1000 & echo $! > {pids}; wait\n")
    call = exec_plugin(
        "p", command="ADD", conf=CONF, rt=runtime(bindir), executor=SubprocessExec(timeout=None)
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call, 1.0)
    assert wait_dead(int(pids.read_text()))


async def test_environment_and_stdin(
    bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIHOME_TEST_SECRET", "do-not-leak")
    dump = tmp_path / "env"
    write_plugin(bindir, "p", f"env > {dump}; cat > {tmp_path / 'stdin'}\n")
    rt = runtime(bindir, "/other", args=(("A", "1"), ("B", "2")))
    await exec_plugin("p", command="DEL", conf=CONF, rt=rt)
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert seen["CNI_COMMAND"] == "DEL"
    assert seen["CNI_CONTAINERID"] == "c1"
    assert seen["CNI_NETNS"] == "/run/netns/pod"
    assert seen["CNI_IFNAME"] == "net1"
    assert seen["CNI_ARGS"] == "A=1;B=2"
    assert seen["CNI_PATH"] == f"{bindir}:/other"
    assert seen["PATH"] == os.environ["PATH"]
    assert "MULTIHOME_TEST_SECRET" not in seen
    assert (tmp_path / "stdin").read_bytes() == CONF


# -- VERSION ------------------------------------------------------------------------------


async def test_version_info_is_cached_per_binary_and_mtime(bindir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    answer = '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'
    path = write_plugin(bindir, "p", f"echo run >> {runs}; echo '{answer}'\n")
    executor = SubprocessExec()
    info = await version_info("p", cni_path=[str(bindir)], executor=executor)
    assert info == PluginInfo("1.0.0", ("0.3.1", "0.4.0", "1.0.0"))
    assert info.supports("0.4.0")
    assert not info.supports("1.1.0")
    await version_info("p", cni_path=[str(bindir)], executor=executor)
    assert runs.read_text().count("run") == 1
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await version_info("p", cni_path=[str(bindir)], executor=executor)
    assert runs.read_text().count("run") == 2


async def test_the_daemons_metered_runner_shares_the_version_cache(
    bindir: Path, tmp_path: Path
) -> None:
    from multihome.daemon.metrics import MeteredExec, Metrics

    runs = tmp_path / "runs"
    answer = '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}'
    write_plugin(bindir, "p", f"echo run >> {runs}; echo '{answer}'\n")
    executor = MeteredExec(SubprocessExec(), Metrics())
    for _ in range(3):
        await version_info("p", cni_path=[str(bindir)], executor=executor)
    assert runs.read_text().count("run") == 1


async def test_version_of_a_plugin_older_than_the_version_command(bindir: Path) -> None:
    write_plugin(
        bindir, "p", """echo '{"code":100,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1\n"""
    )
    info = await version_info("p", cni_path=[str(bindir)])
    assert info.supported_versions == ("0.1.0",)


async def test_version_answer_that_is_garbage(bindir: Path) -> None:
    write_plugin(bindir, "p", "echo '{\"supportedVersions\": []}'\n")
    with pytest.raises(CNIError) as caught:
        await version_info("p", cni_path=[str(bindir)])
    assert caught.value.code == Code.DECODE_FAILURE
    assert 'plugin "p"' in caught.value.msg


# -- a chain of real processes ---------------------------------------------------------


async def test_a_chain_of_scripts_runs_in_order_and_deletes_in_reverse(
    bindir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    for number, name in enumerate(("a", "b", "c"), start=1):
        # Each plugin logs its name, command and stdin; ADD returns an address of its own.
        write_plugin(
            bindir,
            name,
            f"""\
            conf=$(cat)
            echo "{name} $CNI_COMMAND" >> {log}
            printf '%s' "$conf" > {tmp_path}/{name}.$CNI_COMMAND.json
            [ "$CNI_COMMAND" = ADD ] && echo '{{"ips":[{{"address":"10.9.0.{number}/24"}}]}}'
            exit 0
            """,
        )
    chain = conflist({"type": "a"}, {"type": "b"}, {"type": "c"})
    got = await add_network_list(chain, runtime(bindir))
    assert got.ips[0].address == "10.9.0.3/24"
    prev = json.loads((tmp_path / "c.ADD.json").read_text())["prevResult"]
    assert prev["cniVersion"] == "1.0.0"
    assert prev["ips"][0]["address"] == "10.9.0.2/24"
    await del_network_list(chain, runtime(bindir), prev_result=got)
    assert json.loads((tmp_path / "a.DEL.json").read_text())["prevResult"] == got.to_dict()
    assert log.read_text().split("\n")[:-1] == [
        "a ADD", "b ADD", "c ADD", "c DEL", "b DEL", "a DEL",
    ]  # fmt: skip


# -- chain rules, with the fake ---------------------------------------------------------


CALICO_LIKE = (
    '{"cniVersion":"1.0.0","name":"chain","plugins":['
    '{"type":"macvlan","master":"eth0","big": 18446744073709551617,"ratio": 1.50},'
    '{"type":"tuning","cniVersion":"0.3.1","capabilities":{"mac":true,"ips":false}},'
    '{"type":"portmap","capabilities":{"portMappings":false},"runtimeConfig":{"keep":1}}]}'
)
CAPS = {"mac": "02:11:22:33:44:55", "ips": ["10.1.1.9/24"], "portMappings": [{"hostPort": 80}]}


async def test_a_list_without_cni_version_gives_its_plugins_an_empty_one() -> None:
    # libcni's buildOneConfig injects the list's version, "" here; skel reads it as 0.1.0.
    conf = NetConfList.parse('{"name": "n", "plugins": [{"type": "a"}, {"type": "b"}]}')
    fake = FakeExec({"a": lambda call: {"ip4": {"ip": "10.1.1.2/24"}}, "b": None})
    got = await add_network_list(conf, runtime(), executor=fake)
    assert [c.conf["cniVersion"] for c in fake.calls] == ["", ""]
    assert fake.calls[1].conf["prevResult"]["ip4"]["ip"] == "10.1.1.2/24"
    assert got.cni_version == "0.1.0" and got.ips[0].address == "10.1.1.2/24"


async def test_runtime_config_only_for_declared_capabilities() -> None:
    fake = FakeExec({"macvlan": lambda call: result(), "tuning": None, "portmap": None})
    await add_network_list(parse_network(CALICO_LIKE), runtime(capability_args=CAPS), executor=fake)
    macvlan, tuning, portmap = (call.conf for call in fake.calls)
    assert "runtimeConfig" not in macvlan
    assert tuning["runtimeConfig"] == {"mac": "02:11:22:33:44:55"}
    assert portmap["runtimeConfig"] == {"keep": 1}  # nothing granted: left as it was


async def test_name_and_version_come_from_the_list_other_fields_keep_their_bytes() -> None:
    fake = FakeExec({"macvlan": lambda call: result(), "tuning": None, "portmap": None})
    await add_network_list(parse_network(CALICO_LIKE), runtime(), executor=fake)
    macvlan_text = fake.calls[0].stdin.decode()
    # Values keep their bytes (a float64 round trip would make these 18446744073709552000, 1.5).
    assert '"big":18446744073709551617' in macvlan_text
    assert '"ratio":1.50' in macvlan_text
    assert all(call.conf["name"] == "chain" for call in fake.calls)
    assert all(call.conf["cniVersion"] == "1.0.0" for call in fake.calls)


async def test_prev_result_chains_in_the_lists_version() -> None:
    first = result("0.4.0")
    second = result("1.0.0", address="10.1.1.3/24")
    fake = FakeExec({"a": lambda call: first, "b": lambda call: second, "c": None})
    got = await add_network_list(
        conflist({"type": "a"}, {"type": "b"}, {"type": "c"}), runtime(), executor=fake
    )
    a, b, c = fake.calls
    assert "prevResult" not in a.conf
    assert b.conf["prevResult"] == first.to_dict("1.0.0")
    assert b.conf["prevResult"]["cniVersion"] == "1.0.0"
    assert c.conf["prevResult"] == second.to_dict()
    assert got == second  # c passed it through


async def test_an_error_in_a_chain_keeps_its_code_and_stops_the_add() -> None:
    def fail(call: Call) -> None:
        raise CNIError(7, "bad vlan", "vlan 5000 > 4094")

    fake = FakeExec({"a": lambda call: result(), "b": fail, "c": None})
    chain = conflist({"type": "a"}, {"type": "b", "name": "inner"}, {"type": "c"})
    with pytest.raises(CNIError) as caught:
        await add_network_list(chain, runtime(), executor=fake)
    assert caught.value == CNIError(
        7, 'plugin type="b" name="inner" failed (add): bad vlan', "vlan 5000 > 4094"
    )
    assert fake.commands() == [("a", "ADD"), ("b", "ADD")]


async def test_garbage_from_a_chained_plugin_names_it() -> None:
    fake = FakeExec({"a": lambda call: Outcome(0, b"\x00garbage")})
    with pytest.raises(CNIError) as caught:
        await add_network_list(conflist({"type": "a"}), runtime(), executor=fake)
    assert caught.value.code == Code.DECODE_FAILURE
    assert caught.value.msg.startswith(
        'plugin type="a" failed (add): failed to decode the result of plugin "a"'
    )


async def test_add_checks_the_attachment_before_running_anything() -> None:
    fake = FakeExec({"a": None})
    with pytest.raises(CNIError) as caught:
        await add_network_list(conflist({"type": "a"}), runtime(ifname="a:b"), executor=fake)
    assert caught.value.code == Code.INVALID_ENV
    assert fake.calls == []


async def test_a_missing_plugin_in_a_chain() -> None:
    fake = FakeExec({"a": None})
    with pytest.raises(CNIError) as caught:
        await add_network_list(conflist({"type": "a"}, {"type": "nope"}), runtime(), executor=fake)
    assert (
        caught.value.msg
        == 'plugin type="nope" failed (add): failed to find plugin "nope" in path [/opt/cni/bin]'
    )


@pytest.mark.parametrize(
    ("version", "gets_prev"), [("0.3.1", False), ("0.4.0", True), ("1.0.0", True)]
)
async def test_del_runs_in_reverse_with_the_cached_result(version: str, gets_prev: bool) -> None:
    fake = FakeExec({"a": None, "b": None, "c": None})
    chain = conflist({"type": "a"}, {"type": "b"}, {"type": "c"}, version=version)
    await del_network_list(chain, runtime(), prev_result=result(version), executor=fake)
    assert fake.commands() == [("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    assert all(("prevResult" in call.conf) == gets_prev for call in fake.calls)


async def test_del_goes_on_past_a_failure_and_reports_the_first() -> None:
    def fail(code: int) -> Any:
        def behaviour(call: Call) -> None:
            raise CNIError(code, f"failed {code}")

        return behaviour

    fake = FakeExec({"a": fail(5), "b": None, "c": fail(11)})
    chain = conflist({"type": "a"}, {"type": "b"}, {"type": "c"})
    with pytest.raises(CNIError) as caught:
        await del_network_list(chain, runtime(), executor=fake)
    assert fake.commands() == [("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    assert caught.value.code == 11
    assert caught.value.msg == 'plugin type="c" failed (delete): failed 11'
    assert 'plugin type="a" failed (delete): failed 5' in caught.value.details


async def test_check_gets_the_prev_result() -> None:
    fake = FakeExec({"a": None, "b": None})
    chain = conflist({"type": "a"}, {"type": "b", "capabilities": {"mac": True}})
    rt = runtime(capability_args={"mac": "02:00:00:00:00:09"})
    await check_network_list(chain, rt, prev_result=result(), executor=fake)
    assert fake.commands() == [("a", "CHECK"), ("b", "CHECK")]
    assert fake.calls[1].conf["prevResult"] == result().to_dict()
    assert fake.calls[1].conf["runtimeConfig"] == {"mac": "02:00:00:00:00:09"}


async def test_check_needs_0_4_0_and_honours_disable_check() -> None:
    fake = FakeExec({"a": None})
    with pytest.raises(CNIError) as caught:
        await check_network_list(
            conflist({"type": "a"}, version="0.3.1"), runtime(), prev_result=None, executor=fake
        )
    assert caught.value.code == Code.INCOMPATIBLE_VERSION
    assert '"0.3.1"' in caught.value.msg
    await check_network_list(
        conflist({"type": "a"}, disableCheck=True), runtime(), prev_result=None, executor=fake
    )
    assert fake.calls == []


async def test_gc_tells_every_plugin_the_valid_attachments() -> None:
    fake = FakeExec({"a": None, "b": None})
    chain = conflist({"type": "a", "x": 1}, {"type": "b"}, version="1.1.0")
    await gc_network_list(
        chain,
        valid_attachments=[("c1", "net1"), ("c2", "eth0")],
        cni_path=["/opt/cni/bin"],
        executor=fake,
    )
    assert fake.commands() == [("a", "GC"), ("b", "GC")]
    for call in fake.calls:
        assert call.conf["cni.dev/valid-attachments"] == [
            {"containerID": "c1", "ifname": "net1"},
            {"containerID": "c2", "ifname": "eth0"},
        ]
        assert call.env["CNI_PATH"] == "/opt/cni/bin"
        assert call.env["CNI_CONTAINERID"] == ""
    assert fake.calls[0].conf["x"] == 1


@pytest.mark.parametrize(
    "chain",
    [
        conflist({"type": "a"}, version="1.0.0"),
        conflist({"type": "a"}, version="1.1.0", disableGC=True),
    ],
)
async def test_gc_is_skipped_before_1_1_0_and_when_disabled(chain: NetConfList) -> None:
    fake = FakeExec({"a": None})
    await gc_network_list(chain, valid_attachments=[], cni_path=["/opt/cni/bin"], executor=fake)
    assert fake.calls == []


async def test_status_passes_the_plugins_error_through_unchanged() -> None:
    def unavailable(call: Call) -> None:
        raise CNIError(Code.PLUGIN_NOT_AVAILABLE, "no IPs left")

    fake = FakeExec({"a": None, "b": unavailable, "c": None})
    chain = conflist({"type": "a"}, {"type": "b"}, {"type": "c"}, version="1.1.0")
    with pytest.raises(CNIError) as caught:
        await status_network_list(chain, cni_path=["/opt/cni/bin"], executor=fake)
    assert caught.value == CNIError(Code.PLUGIN_NOT_AVAILABLE, "no IPs left")
    assert fake.commands() == [("a", "STATUS"), ("b", "STATUS")]
    old = FakeExec({"a": unavailable})
    await status_network_list(conflist({"type": "a"}), cni_path=["/x"], executor=old)
    assert old.calls == []


async def test_fake_answers_version_from_its_registration() -> None:
    fake = FakeExec()
    fake.register("a", supported_versions=("0.4.0", "1.0.0"))
    info = await version_info("a", cni_path=["/opt/cni/bin"], executor=fake)
    assert info == PluginInfo("1.0.0", ("0.4.0", "1.0.0"))


async def test_fake_accepts_async_behaviours() -> None:
    async def later(call: Call) -> Result:
        await asyncio.sleep(0)
        return result()

    fake = FakeExec({"a": later})
    assert await add_network_list(conflist({"type": "a"}), runtime(), executor=fake) == result()


def test_build_plugin_conf_touches_only_injected_members() -> None:
    chain = parse_network(CALICO_LIKE)
    built = build_plugin_conf(chain, chain.plugins[0], capability_args=CAPS, prev_result=None)
    assert built.text == (
        '{"type":"macvlan","master":"eth0","big":18446744073709551617,"ratio":1.50,'
        '"name":"chain","cniVersion":"1.0.0"}'
    )


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 waits with a pidfd by itself")
def test_plugins_are_waited_for_with_a_pidfd_not_a_thread() -> None:
    import warnings

    from multihome.cni.process import use_pidfd_child_watcher

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before = asyncio.get_child_watcher()
        try:
            use_pidfd_child_watcher()
            assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        finally:
            asyncio.set_child_watcher(before)
