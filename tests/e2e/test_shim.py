"""The static C shim against a fake daemon: what it sends, what it prints, how it fails.

The fake daemon is a plain HTTP server on a unix socket that records each
request and answers with raw bytes chosen by the test, so the tests pin the
wire protocol of shim/README.md from both sides.  Set MULTIHOME_SHIM to test
another build (``make -C shim check`` runs them against a sanitizer build).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingUnixStreamServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.cni.version import version_text

ROOT = Path(__file__).resolve().parents[2]
SHIM_DIR = ROOT / "shim"
RESULT = b'{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"02:00:00:00:00:01"}]}'
NOT_RUNNING = "multihome daemon is not running"

Env = Mapping[str, str] | Mapping[bytes, bytes]


# ---- the shim binary ----


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim, built first if it is missing or older than its source."""
    override = os.environ.get("MULTIHOME_SHIM")
    if override:
        return Path(override)
    binary = SHIM_DIR / "multihome-shim"
    # xdist workers share the parent of their base temp dirs: one builds, the others wait.
    lock = tmp_path_factory.getbasetemp().parent / "multihome-shim-build.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        newest = max(
            p.stat().st_mtime for p in (SHIM_DIR / "multihome-shim.c", SHIM_DIR / "Makefile")
        )
        if not binary.exists() or binary.stat().st_mtime < newest:
            subprocess.run(["make", "-C", str(SHIM_DIR)], check=True, capture_output=True)
    return binary


def shim_env(env: Env) -> dict[bytes, bytes]:
    """Only what the test gives, plus the sanitizer settings of ``make check``."""
    inherited = {k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")}
    return {os.fsencode(k): os.fsencode(v) for k, v in [*inherited.items(), *env.items()]}


def run(
    shim: Path, stdin: bytes, env: Env, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(shim), *args],
        check=False,
        input=stdin,
        env=shim_env(env),
        capture_output=True,
        timeout=60,
    )


def cni_error(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The shim's own failure: exit 1 and one CNI error object on stdout."""
    assert proc.returncode == 1, proc
    error: dict[str, Any] = json.loads(proc.stdout)
    assert set(error) == {"cniVersion", "code", "msg", "details"}
    assert isinstance(error["code"], int)
    return error


# ---- the fake daemon ----


@dataclass
class Request:
    line: str
    headers: Message
    body: bytes


Reply = bytes | None | Callable[[Request], bytes | None]


class FakeDaemon:
    """Records each request; answers with the raw bytes of `reply` (None: never answers)."""

    def __init__(self, path: Path, reply: Reply = None) -> None:
        self.path = path
        self.reply: Reply = reply if reply is not None else answer(RESULT)
        self.requests: list[Request] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = Request(self.requestline, self.headers, body)
                fake.requests.append(request)
                raw = fake.reply(request) if callable(fake.reply) else fake.reply
                if raw is None:
                    fake.release.wait()
                    return
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingUnixStreamServer(str(path), Handler)
        self.server.daemon_threads = True

    def __enter__(self) -> FakeDaemon:
        # shutdown() waits for the loop to look at its flag again: look often.
        loop = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)

    def only_request(self) -> Request:
        assert len(self.requests) == 1
        return self.requests[0]


def answer(
    body: bytes, *, status: int = 200, exit_code: int | None = 0, headers: tuple[str, ...] = ()
) -> bytes:
    head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", *headers]
    if exit_code is not None:
        head.append(f"X-CNI-Exit-Code: {exit_code}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def short_dir(prefix: str) -> Iterator[Path]:
    """A directory of its own in /tmp, removed after: not tmp_path, because unix
    socket paths hold at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_dir("mh-shim-") as path:
        yield path


@pytest.fixture
def daemon(sock_dir: Path) -> Iterator[FakeDaemon]:
    with FakeDaemon(sock_dir / "multihome.sock") as fake:
        yield fake


def config(sock_dir: Path, **members: Any) -> bytes:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "multihome-shim"}
    return json.dumps({**conf, "daemonSocketDir": str(sock_dir), **members}).encode()


ADD = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x"}


# ---- what the shim sends ----


def test_forwards_the_cni_environment_and_stdin_exactly(
    shim: Path, sock_dir: Path, daemon: FakeDaemon
) -> None:
    env: dict[bytes, bytes] = {
        b"CNI_COMMAND": b"ADD",
        b"CNI_CONTAINERID": b'quote " backslash \\ slash /',
        b"CNI_NETNS": b"/proc/1/ns/net\n\t\r\x01\x1f\x7f",
        b"CNI_IFNAME": "n\u00e9t\u2713\U0001f600".encode(),
        # not UTF-8: lone bytes, overlong '/', an encoded surrogate, a cut sequence, > U+10FFFF
        b"CNI_ARGS": b"K8S_POD_NAME=\xff\xfe;X=\xc0\xaf\xed\xa0\x80\xe2\x82;Y=\xf4\x90\x80\x80z",
        b"CNI_PATH": b"/opt/cni/bin:/usr/lib/cni",
        b"CNI_FUTURE_\xff": b"forwarded too",
        b"PATH": b"/usr/bin",
        b"MULTIHOME_SHIM_TIMEOUT": b"5",
    }
    stdin = config(sock_dir)[:-1] + (
        b', "quoted": "a \\" b", "nl": "\n", "raw": "\x00\xff\xc3(", "u": "\xe2\x9c\x93"}\n'
    )
    proc = run(shim, stdin, env)
    assert (proc.returncode, proc.stdout) == (0, RESULT)

    request = daemon.only_request()
    assert request.line == "POST /shim/v1/cni HTTP/1.1"
    assert request.headers["Host"] == "multihome"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Connection"] == "close"
    assert re.fullmatch(r"[0-9a-f]{32}", request.headers["X-Multihome-Request-Id"])
    body = json.loads(request.body)
    forwarded = {k: v for k, v in env.items() if k.startswith(b"CNI_")}
    # Not-UTF-8 bytes travel as lone surrogates: the Python daemon gets the exact bytes back.
    assert body == {
        "env": {
            k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in forwarded.items()
        },
        "config": base64.b64encode(stdin).decode(),
    }
    assert {
        k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
        for k, v in body["env"].items()
    } == forwarded


def test_sends_only_the_variables_that_are_set(
    shim: Path, sock_dir: Path, daemon: FakeDaemon
) -> None:
    proc = run(shim, config(sock_dir), {"CNI_COMMAND": "DEL", "CNI_ARGS": ""})
    assert proc.returncode == 0
    assert json.loads(daemon.only_request().body)["env"] == {"CNI_COMMAND": "DEL", "CNI_ARGS": ""}


def test_each_request_has_its_own_id(shim: Path, sock_dir: Path, daemon: FakeDaemon) -> None:
    for _ in range(2):
        run(shim, config(sock_dir), ADD)
    ids = {r.headers["X-Multihome-Request-Id"] for r in daemon.requests}
    assert len(ids) == 2


@pytest.mark.parametrize("stdin", [b"", b'{"daemonSocketDir": ""}', b"not json"])
def test_without_a_socket_dir_the_default_socket_is_used(shim: Path, stdin: bytes) -> None:
    default = Path("/run/multihome/multihome.sock")
    if default.exists():
        pytest.skip(f"{default} exists on this machine")
    error = cni_error(run(shim, stdin, {**ADD, "MULTIHOME_SHIM_TIMEOUT": "0"}))
    assert error["cniVersion"] == "1.0.0"
    assert error["details"].startswith(f"no daemon answered at {default} after 0 s")


# ---- what the shim prints ----


@pytest.mark.parametrize(
    ("reply", "stdout", "code"),
    [
        (answer(RESULT, exit_code=0), RESULT, 0),
        (answer(b'{"code":7,"msg":"bad \xc3\xa9"}', status=400, exit_code=7), None, 7),
        (answer(RESULT, exit_code=None), RESULT, 0),
        (answer(b'{"code":999,"msg":"boom"}', status=500, exit_code=None), None, 1),
        (answer(b"", exit_code=0), b"", 0),  # DEL prints nothing
        (answer(b"", status=204, exit_code=0), b"", 0),
        (answer(b'  {"code":1}\n', status=200, exit_code=255), None, 255),
    ],
)
def test_prints_the_daemon_answer_and_exits_with_its_code(
    shim: Path, sock_dir: Path, reply: bytes, stdout: bytes | None, code: int
) -> None:
    with FakeDaemon(sock_dir / "multihome.sock", reply):
        proc = run(shim, config(sock_dir), ADD)
    assert proc.returncode == code
    assert proc.stdout == (stdout if stdout is not None else reply.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize(
    "raw",
    [
        b'HTTP/1.1 200 OK\r\nx-cni-exit-code:3\r\ncontent-length: 7\r\n\r\n{"a":1} and more',
        b'HTTP/1.0 200 OK\r\nX-CNI-Exit-Code:  3 \r\n\r\n{"a":1}',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nX-CNI-Exit-Code: 3\r\n\r\n"
        b'2\r\n{"\r\n5;ext=1\r\na":1}\r\n0\r\nTrailer: x\r\n\r\n',
    ],
    ids=["content-length", "until-close", "chunked"],
)
def test_reads_any_http_framing(shim: Path, sock_dir: Path, raw: bytes) -> None:
    with FakeDaemon(sock_dir / "multihome.sock", raw):
        proc = run(shim, config(sock_dir), ADD)
    assert (proc.returncode, proc.stdout) == (3, b'{"a":1}')


@pytest.mark.parametrize(
    "stdin",
    [
        b'{"cniVersion":"1.0.0"}',  # what libcni sends: no socket settings at all
        json.dumps({"cniVersion": "1.0.0", "daemonSocketDir": "/nonexistent/multihome"}).encode(),
    ],
    ids=["default-socket", "missing-socket-dir"],
)
def test_version_is_answered_by_the_shim_without_any_io(shim: Path, stdin: bytes) -> None:
    # podman asks VERSION before every ADD: it must not wait for (or need) the daemon.
    trace = shutil.which("strace")
    argv = [trace, "-f", "-qq", "-e", "trace=socket,connect", str(shim)] if trace else [str(shim)]
    env = shim_env({"CNI_COMMAND": "VERSION"})
    proc = subprocess.run(argv, check=False, input=stdin, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout) == json.loads(version_text())
    assert b"socket(" not in proc.stderr and b"connect(" not in proc.stderr


def test_version_never_reaches_a_running_daemon(shim: Path, sock_dir: Path) -> None:
    with FakeDaemon(sock_dir / "multihome.sock") as fake:
        proc = run(shim, config(sock_dir), {"CNI_COMMAND": "VERSION"})
    assert (proc.returncode, json.loads(proc.stdout)) == (0, json.loads(version_text()))
    assert fake.requests == []


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_flag(shim: Path, flag: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = run(shim, b"", {}, (flag,))
    assert (proc.returncode, proc.stdout) == (0, f"multihome-shim {version}\n".encode())


# ---- where the shim connects ----


def test_honours_daemon_socket_dir_and_socket_name(shim: Path, sock_dir: Path) -> None:
    escaped = json.dumps(str(sock_dir) + "/", ensure_ascii=True).replace("/", "\\/")
    escaped = escaped.replace("m", "\\u006d")  # \u escapes in the value are decoded
    stdin = (
        b'{"daemonSocketDir":"/nonexistent", "cniVersion":"1.0.0",'  # the last one wins
        b'"args":{"daemonSocketDir":"/nonexistent","socketName":"x"},'
        b'"note":"\\"daemonSocketDir\\": \\"/nonexistent\\"","daemonSocketDir":'
        + escaped.encode()
        + b',"socketName":"multus.sock","plugins":[{"daemonSocketDir":"/nonexistent"}]}'
    )
    with FakeDaemon(sock_dir / "multus.sock") as fake:
        proc = run(shim, stdin, ADD)
    assert (proc.returncode, proc.stdout) == (0, RESULT)
    assert base64.b64decode(json.loads(fake.only_request().body)["config"]) == stdin


def test_nested_daemon_socket_dir_is_ignored(shim: Path, sock_dir: Path) -> None:
    (sock_dir / "top").mkdir()
    stdin = json.dumps(
        {
            "cniVersion": "0.4.0",
            "delegates": [{"daemonSocketDir": str(sock_dir)}],
            "daemonSocketDir": str(sock_dir / "top"),
            "args": {"cni": {"daemonSocketDir": str(sock_dir)}},
        }
    ).encode()
    with FakeDaemon(sock_dir / "multihome.sock") as fake:
        proc = run(shim, stdin, {**ADD, "MULTIHOME_SHIM_TIMEOUT": "0"})
    error = cni_error(proc)
    assert error["details"].startswith(f"no daemon answered at {sock_dir}/top/multihome.sock")
    assert error["cniVersion"] == "0.4.0"
    assert fake.requests == []


# ---- daemon not (yet) there ----


@pytest.mark.parametrize(
    ("socket_file", "stdin_version", "reported"),
    [("missing", "0.4.0", "0.4.0"), ("not listening", None, "1.0.0")],
)
def test_daemon_down_gives_the_explained_error(
    shim: Path, sock_dir: Path, socket_file: str, stdin_version: str | None, reported: str
) -> None:
    path = sock_dir / "multihome.sock"
    listener = socket.socket(socket.AF_UNIX)
    if socket_file == "not listening":
        listener.bind(str(path))  # connect() now fails with ECONNREFUSED
    stdin = json.loads(config(sock_dir))
    if stdin_version:
        stdin["cniVersion"] = stdin_version
    else:
        del stdin["cniVersion"]
    try:
        proc = run(shim, json.dumps(stdin).encode(), {**ADD, "MULTIHOME_SHIM_TIMEOUT": "1"})
    finally:
        listener.close()
    assert cni_error(proc) == {
        "cniVersion": reported,
        "code": 11,
        "msg": NOT_RUNNING,
        "details": f"no daemon answered at {path} after 1 s; "
        "check the multihome DaemonSet on this node",
    }


def test_readiness_bound_comes_from_the_config(shim: Path, sock_dir: Path) -> None:
    proc = run(shim, config(sock_dir, shimReadinessTimeoutSeconds=0.2), ADD)
    assert cni_error(proc)["details"].endswith(
        "after 0.2 s; check the multihome DaemonSet on this node"
    )


def test_daemon_that_starts_late_is_picked_up(shim: Path, sock_dir: Path) -> None:
    proc = subprocess.Popen(
        [str(shim)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=shim_env({**ADD, "MULTIHOME_SHIM_TIMEOUT": "60"}),
    )
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        proc.stdin.write(config(sock_dir))
        proc.stdin.close()
        # The shim says on stderr when its first attempt found no daemon: start it only then.
        assert b"no daemon at" in proc.stderr.readline()
        with FakeDaemon(sock_dir / "multihome.sock") as fake:
            stdout = proc.stdout.read()
            assert proc.wait(timeout=60) == 0
        assert stdout == RESULT
        assert len(fake.requests) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_daemon_that_never_answers_times_out(shim: Path, sock_dir: Path) -> None:
    with FakeDaemon(sock_dir / "multihome.sock", lambda _request: None):
        proc = run(shim, config(sock_dir), {**ADD, "MULTIHOME_SHIM_REQUEST_TIMEOUT": "0.3"})
    error = cni_error(proc)
    assert (error["code"], error["msg"]) == (11, "multihome daemon did not answer")
    assert str(sock_dir / "multihome.sock") in error["details"]


# ---- every other local failure is a CNI error too ----


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (b"", 11, "closed the connection without an answer"),
        (b"hello\r\n\r\n", 5, "HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", 5, "ends inside its headers"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 5, "without ':'"),
        (answer(b"{}", exit_code=None, headers=("X-CNI-Exit-Code: 256",)), 5, "X-CNI-Exit-Code"),
        (answer(b"{}", exit_code=None, headers=("X-CNI-Exit-Code: -1",)), 5, "X-CNI-Exit-Code"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 11, "got 5 of 10 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 5, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 5, "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 5, "inside a chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 5, "chunk size"),
        (answer(b"Server got itself in trouble", status=500, exit_code=None), 11, "in trouble"),
        (answer(b"", status=404, exit_code=None), 5, "HTTP 404 with 0 bytes"),
        (answer(b"oops", status=200, exit_code=2), 5, "not a CNI error"),
    ],
)
def test_bad_answers_give_a_cni_error(
    shim: Path, sock_dir: Path, reply: bytes, code: int, words: str
) -> None:
    with FakeDaemon(sock_dir / "multihome.sock", reply):
        proc = run(shim, config(sock_dir, cniVersion="0.3.1"), ADD)
    error = cni_error(proc)
    assert (error["cniVersion"], error["code"]) == ("0.3.1", code)
    assert words in f"{error['msg']}: {error['details']}"
    assert str(sock_dir / "multihome.sock") in error["details"]


@pytest.mark.parametrize(
    ("members", "env", "code", "words"),
    [
        ({"daemonSocketDir": 42}, {}, 7, "daemonSocketDir must be a JSON string"),
        ({"daemonSocketDir": "/a\u0000b"}, {}, 7, "daemonSocketDir must be a JSON string"),
        ({"socketName": "a/b"}, {}, 7, "socketName must be a JSON string naming a file"),
        ({"daemonSocketDir": "/" + "d" * 120}, {}, 7, "a unix socket path holds at most 107"),
        ({"shimReadinessTimeoutSeconds": "10"}, {}, 7, "shimReadinessTimeoutSeconds must be"),
        ({"shimReadinessTimeoutSeconds": -1}, {}, 7, "shimReadinessTimeoutSeconds must be"),
        ({"shimRequestTimeoutSeconds": 1e9}, {}, 7, "shimRequestTimeoutSeconds must be"),
        ({}, {"MULTIHOME_SHIM_TIMEOUT": "soon"}, 4, "MULTIHOME_SHIM_TIMEOUT must be"),
        ({}, {"MULTIHOME_SHIM_REQUEST_TIMEOUT": "0x10"}, 4, "MULTIHOME_SHIM_REQUEST_TIMEOUT"),
    ],
)
def test_bad_shim_settings_give_a_cni_error(
    shim: Path, sock_dir: Path, members: dict[str, Any], env: dict[str, str], code: int, words: str
) -> None:
    proc = run(shim, config(sock_dir, **members), {**ADD, **env})
    error = cni_error(proc)
    assert error["code"] == code
    assert words in error["details"]


def test_socket_dir_that_is_a_file_is_not_retried(shim: Path, sock_dir: Path) -> None:
    (sock_dir / "file").write_text("")
    proc = run(shim, config(sock_dir / "file"), {**ADD, "MULTIHOME_SHIM_TIMEOUT": "60"})
    error = cni_error(proc)
    assert (error["code"], error["msg"]) == (11, "cannot connect to the multihome daemon")
    assert error["details"] == f"connect {sock_dir}/file/multihome.sock: Not a directory"


def test_too_large_stdin_gives_a_cni_error(shim: Path, sock_dir: Path) -> None:
    stdin = config(sock_dir, cniVersion="0.4.0")[:-1] + b',"pad":"' + b"x" * (16 << 20) + b'"}'
    error = cni_error(run(shim, stdin, ADD))
    assert error == {
        "cniVersion": "0.4.0",
        "code": 5,
        "msg": "network config too large",
        "details": "stdin holds more than 16 MiB",
    }


def test_large_stdin_within_the_cap_is_forwarded(
    shim: Path, sock_dir: Path, daemon: FakeDaemon
) -> None:
    stdin = config(sock_dir)[:-1] + b',"pad":"' + b"\xff" * (4 << 20) + b'"}'
    assert run(shim, stdin, ADD).returncode == 0
    assert base64.b64decode(json.loads(daemon.only_request().body)["config"]) == stdin


# ---- the binary ----


def test_binary_is_statically_linked(shim: Path) -> None:
    if os.environ.get("MULTIHOME_SHIM"):
        pytest.skip("MULTIHOME_SHIM names another build (the sanitizer build is dynamic)")
    assert (
        "statically linked"
        in subprocess.run(
            ["file", "-L", str(shim)], capture_output=True, text=True, check=True
        ).stdout
    )
    ldd = subprocess.run(["ldd", str(shim)], check=False, capture_output=True, text=True)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr


# ---- light fuzzing: the shim never crashes and always prints JSON ----

# `make fuzz` runs many more.
FUZZ_EXAMPLES = int(os.environ.get("MULTIHOME_FUZZ_EXAMPLES", "0"))

env_values = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b""))
env_names = st.one_of(
    st.sampled_from([b"CNI_COMMAND", b"CNI_CONTAINERID", b"CNI_NETNS", b"CNI_ARGS", b"CNI_PATH"]),
    env_values.map(lambda b: b"CNI_" + b.replace(b"=", b"")),
)
json_text = st.text(max_size=30)
shim_members = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.one_of(json_text, st.integers(), st.none()),
        "socketName": st.one_of(json_text, st.sampled_from(["multihome.sock", "a/b", ""])),
        "shimRequestTimeoutSeconds": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), json_text, st.booleans()
        ),
        "nested": st.recursive(
            st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), json_text),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3)
            ),
            max_leaves=8,
        ),
    },
)


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    with short_dir("mh-fuzz-") as path:
        yield path


@pytest.fixture(scope="module")
def fuzz_daemon(fuzz_dir: Path) -> Iterator[FakeDaemon]:
    with FakeDaemon(fuzz_dir / "multihome.sock") as fake:
        yield fake


@settings(max_examples=FUZZ_EXAMPLES or 200)
@given(env=st.dictionaries(env_names, env_values, max_size=6), tail=st.binary(max_size=200))
def test_fuzz_requests_arrive_intact(
    shim: Path, fuzz_daemon: FakeDaemon, env: dict[bytes, bytes], tail: bytes
) -> None:
    fuzz_daemon.requests.clear()
    # The socket dir comes first, so whatever follows it cannot hide it from the scanner.
    sock_dir = json.dumps(str(fuzz_daemon.path.parent)).encode()
    stdin = b'{"daemonSocketDir":' + sock_dir + b"," + tail
    proc = run(shim, stdin, env)
    assert (proc.returncode, proc.stdout) == (0, RESULT)
    body = json.loads(fuzz_daemon.only_request().body)
    assert base64.b64decode(body["config"]) == stdin
    sent = {
        k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
        for k, v in body["env"].items()
    }
    assert sent == env


@pytest.fixture(scope="module")
def no_daemon_dir() -> Iterator[Path]:
    # Apart from fuzz_dir: a config cut short can name any prefix of its socket
    # dir, and fuzz_dir is where the other fuzz test's daemon listens.
    with short_dir("mh-nodaemon-") as path:
        yield path


@settings(max_examples=FUZZ_EXAMPLES or 150)
@given(
    members=shim_members,
    ascii_only=st.booleans(),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.binary(max_size=20),
)
def test_fuzz_failures_are_cni_errors(
    shim: Path,
    no_daemon_dir: Path,
    members: dict[str, Any],
    ascii_only: bool,
    cut: int,
    junk: bytes,
) -> None:
    whole = json.dumps(
        {"daemonSocketDir": str(no_daemon_dir / "none"), **members}, ensure_ascii=ascii_only
    ).encode()
    stdin = whole[:cut] + junk if cut < len(whole) else whole
    proc = run(shim, stdin, {"CNI_COMMAND": "ADD", "MULTIHOME_SHIM_TIMEOUT": "0"})
    error = cni_error(proc)
    assert error["code"] in (5, 7, 11)
    version = members.get("cniVersion")
    if stdin == whole and isinstance(version, str) and "\x00" not in version:
        assert error["cniVersion"] == version
