"""The daemon and the webhook run without aiohttp (issue 17: +14.6 MiB resident).

A fresh interpreter imports the daemon's and the webhook's modules, starts
a daemon (socket and metrics port), asks it over both, and reports which
modules imported aiohttp: none may, and aiohttp must not be loaded at all.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = r"""
import asyncio, builtins, json, sys, tempfile

importers = set()
original = builtins.__import__


def watch(name, globals=None, locals=None, fromlist=(), level=0):
    # Every import statement comes here: record the modules that name aiohttp.
    importer = (globals or {}).get("__name__", "?")
    # (aiohttp's own and importlib's, for a ``from aiohttp import x``, are not news)
    if level == 0 and name.split(".")[0] == "aiohttp":
        if not importer.startswith(("aiohttp", "importlib", "_frozen_importlib")):
            importers.add(importer)
    return original(name, globals, locals, fromlist, level)


builtins.__import__ = watch

import multihome.cli
import multihome.daemon.server
import multihome.doctor.webhook
from multihome.cni.fakeexec import FakeExec
from multihome.daemon.config import DaemonConfig
from multihome.daemon.server import Daemon


async def ask(reader, writer, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    return answer.split(b" ", 2)[1].decode()


async def main():
    root = tempfile.mkdtemp(prefix="mhi-", dir="/tmp")
    config = {"socketDir": root + "/s", "cniDir": root + "/cni", "metricsPort": 0,
              "metricsAddress": "127.0.0.1"}
    daemon = Daemon(DaemonConfig.parse(json.dumps(config), environ={}),
                    executor=FakeExec({}), allow_non_root=True)
    await daemon.start()
    try:
        codes = [await ask(*await asyncio.open_unix_connection(daemon.config.socket_path), p)
                 for p in ("/healthz", "/shim/v1/info")]
        host, port = daemon.metrics_address.rsplit(":", 1)
        codes.append(await ask(*await asyncio.open_connection(host, int(port)), "/metrics"))
    finally:
        await daemon.stop()
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    return codes


codes = asyncio.run(main())
print(json.dumps({"codes": codes, "importers": sorted(importers),
                  "loaded": "aiohttp" in sys.modules,
                  "prometheus_client": "prometheus_client" in sys.modules}))
"""


def test_the_daemon_and_the_webhook_do_not_import_aiohttp() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["codes"] == ["200", "200", "200"]
    assert report["importers"] == []
    assert report["loaded"] is False
    # Nor prometheus-client (+3.9 MiB): the exporter is multihome.daemon.exposition.
    assert report["prometheus_client"] is False
