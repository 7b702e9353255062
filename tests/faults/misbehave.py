"""A CNI plugin that misbehaves on request, for the fault matrix.

Installed into a test bin dir as ``misbehave`` by the ``bad_bin`` fixture
(conftest.py), with this interpreter in its ``#!`` line.  What it does for each command comes from
``behaviour.json`` next to it, so a test can change it between calls even
though the attachment cache keeps the configuration byte for byte:

* ``ok``: print the ``prevResult`` (or an empty result) and exit 0;
* ``hang``: sleep for an hour;
* ``sigkill``: kill itself with SIGKILL;
* ``garbage``: print something that is not JSON (exit 0 on ADD, 1 on DEL);
* ``deep``: print 100,000 nested ``[`` and exit 1;
* ``huge``: print without end;
* ``fork``: start ``sleep 3600`` holding its stdout and stderr, then ``ok``;
* ``ipam``: answer as an IPAM plugin, with one address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    command = os.environ.get("CNI_COMMAND", "")
    conf = json.loads(sys.stdin.read() or "{}")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}))
        return
    here = Path(sys.argv[0]).resolve().parent
    what = json.loads((here / "behaviour.json").read_text()).get(command, "ok")
    if what == "hang":
        time.sleep(3600)
    elif what == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif what == "garbage":
        sys.stdout.write("{{{ this is not JSON")
        sys.exit(1 if command == "DEL" else 0)
    elif what == "deep":
        sys.stdout.write("[" * 100_000)
        sys.exit(1)
    elif what == "huge":
        chunk = b"x" * (1 << 20)
        while True:
            sys.stdout.buffer.write(chunk)
    elif what == "fork":
        subprocess.Popen(["sleep", "3600"])  # inherits the pipes and CNI_CONTAINERID
    if what == "ipam":  # an IPAM plugin's answer
        address = {"address": "192.168.99.5/24"}
        print(json.dumps({"cniVersion": conf.get("cniVersion"), "ips": [address]}))
    elif command == "ADD":
        print(json.dumps(conf.get("prevResult") or {"cniVersion": conf.get("cniVersion")}))


if __name__ == "__main__":
    main()
