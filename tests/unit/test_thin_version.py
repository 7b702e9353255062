"""The thin plugin answers VERSION before importing the engine, with the engine's answer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from multihome.cni import version
from multihome.cni.request import Request
from multihome.engine.engine import Engine


def test_the_version_text_is_what_json_writes() -> None:
    expected = {"cniVersion": version.LATEST, "supportedVersions": list(version.ALL)}
    assert version.version_text() == json.dumps(expected)


def test_thin_version_imports_nothing_heavy_and_answers_as_the_engine() -> None:
    probe = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('multihome.thin', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    heavy = {'asyncio', 'logging', 'typing', 'json', 'multihome.engine.engine'}\n"
        "    print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
        "    raise\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        input=b'{"cniVersion": "1.0.0"}',
        env={**os.environ, "CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().strip() == "[]"
    request = Request.from_env({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert json.loads(proc.stdout) == json.loads(asyncio.run(Engine().handle(request)))
