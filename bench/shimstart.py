"""6. Shim start-up: the static shim alone, against a daemon that answers at once.

A tiny server in this process listens on a unix socket and answers every
request with an empty 200 (``X-CNI-Exit-Code: 0``), so what is timed is the
shim: exec, reading stdin, building the request, one round trip, printing,
exiting.  Interleaved with it, three references: ``multihome-shim -v`` (the
same static binary exec'd without a request: what the request itself adds
shows as the difference), ``/bin/true`` (a dynamically linked exec from this
harness) and the thin plugin answering VERSION (Python's start-up and
multihome's imports, which the shim exists to avoid), next to Python's own
start-up, the floor of any Python plugin (``python -I -S -c pass``; with
``site``, which the launcher needs for the host's site-packages: ``python -c
pass``), and ``python -c 'import asyncio'``, the floor of a Python plugin's
ADD or DEL.  Wall time and the child's CPU time (user + sys, from
``getrusage``) for each.
Target (issue 17): the thin plugin answers VERSION in single-digit ms.
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import node
from .context import Settings
from .report import Panel, Row, Section
from .stats import Summary, Timings, interleaved

NAME = "shim"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-CNI-Exit-Code: 0\r\nConnection: close\r\n\r\n"
CONFIG = {
    "cniVersion": "1.0.0",
    "name": "multihome-cni-network",
    "type": "multihome-shim",
    "clusterNetwork": "/etc/cni/net.d/10-cluster.conflist",
    "cniDir": "/var/lib/cni/multihome",
    "binDir": "/opt/cni/bin",
}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "0123456789abcdef" * 4,
    "CNI_NETNS": "/run/netns/bench",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
}


class NoopDaemon:
    """Answers every HTTP request on a unix socket with an empty 200, one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.served = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, name="noop-daemon", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                header, _, body = head.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in header.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                conn.sendall(ANSWER)
                self.served += 1

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def exec_timed(argv: list[str], *, stdin: bytes, env: dict[str, str]) -> Timings:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {proc.stdout!r} {proc.stderr!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def run(settings: Settings) -> Section:
    section = Section(NAME, "Shim start-up against a no-op daemon", settings.command(NAME))
    rounds = settings.pick(100, 20)
    directory = Path(tempfile.mkdtemp(prefix="mh-shim-", dir="/tmp"))
    server = NoopDaemon(str(directory / "multihome.sock"))
    try:
        stdin = json.dumps({**CONFIG, "daemonSocketDir": str(directory)}).encode()
        true = shutil.which("true") or "/bin/true"
        shim = str(node.shim_binary())
        version = {"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}
        samples = interleaved(
            {
                "exec /bin/true": lambda: exec_timed([true], stdin=b"", env={}),
                "shim -v (no request)": lambda: exec_timed([shim, "-v"], stdin=b"", env={}),
                "shim -> no-op daemon": lambda: exec_timed([shim], stdin=stdin, env=ENV),
                "thin plugin VERSION": lambda: exec_timed(
                    node.thin_argv(), stdin=b'{"cniVersion":"1.0.0"}', env=version
                ),
                "python -I -S -c pass (the floor)": lambda: exec_timed(
                    [sys.executable, "-I", "-S", "-c", "pass"], stdin=b"", env={}
                ),
                "python -c pass": lambda: exec_timed(
                    [sys.executable, "-c", "pass"], stdin=b"", env={}
                ),
                # What any call of a Python plugin on asyncio pays before its own work
                # (the thin plugin's ADD and DEL; VERSION does without).
                "python -c 'import asyncio'": lambda: exec_timed(
                    [sys.executable, "-c", "import asyncio"], stdin=b"", env={}
                ),
            },
            rounds=rounds,
            warmup=3,
        )
        served = server.served
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)

    summaries = {side: {k: Summary.of(v) for k, v in t.items()} for side, t in samples.items()}
    for side, summary in summaries.items():
        section.rows.append(
            Row(side, f"{summary['wall'].ms()}; CPU {summary['cpu'].median * 1e3:.1f} ms")
        )
    shim_cost = summaries["shim -> no-op daemon"]["wall"].median
    floor = summaries["shim -v (no request)"]["wall"].median
    section.rows.append(
        Row("the request's part (shim - shim -v)", f"{(shim_cost - floor) * 1e3:.2f} ms")
    )
    thin = summaries["thin plugin VERSION"]["wall"].median
    python = summaries["python -I -S -c pass (the floor)"]["wall"].median
    section.rows.append(Row("thin plugin VERSION", f"{thin * 1e3:.1f} ms", "< 10 ms", thin < 0.010))
    section.rows.append(
        Row(
            "thin VERSION over Python's start-up (VERSION - floor)",
            f"{(thin - python) * 1e3:.1f} ms",
        )
    )
    with_site = summaries["python -c pass"]["wall"].median
    section.rows.append(
        Row(
            "thin VERSION over python -c pass (site: the launcher needs it)",
            f"{(thin - with_site) * 1e3:.1f} ms",
        )
    )
    section.data = {
        "rounds": rounds,
        "requests_served": served,
        "shim_size_bytes": Path(shim).stat().st_size,
        "ms": {s: {k: v.to_dict(1e3) for k, v in d.items()} for s, d in summaries.items()},
    }
    order = list(summaries)
    section.panels.append(
        Panel(
            "Start-up: wall time per exec (median, p10-p90)",
            "bars",
            "ms",
            labels=[s.replace(" ", "\n", 1) for s in order],
            values=[summaries[s]["wall"].median * 1e3 for s in order],
            low=[summaries[s]["wall"].p10 * 1e3 for s in order],
            high=[summaries[s]["wall"].p90 * 1e3 for s in order],
        )
    )
    return section
