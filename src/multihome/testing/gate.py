"""A CNI plugin that stops where a test wants it to, for forcing interleavings.

`Gate` installs ``mh-gate`` (a small Python script) into a bin dir of the
world's own, next to links to the reference plugins, and a NAD whose chain
is macvlan + host-local and then the gate.  On the commands it is told to
hold, the gate writes ``<container ID> <command>`` to its marker file and
waits until the release file exists (or forever, ``hang``); SIGTERM can be
ignored, as a stuck plugin would.  On the others it passes ``prevResult``
through.  Tests wait for the marker with a bound, never for a fixed time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from .lab import CNI_BIN_DIR
from .world import World

SCRIPT = """\
import json, os, signal, sys, time
command = os.environ.get("CNI_COMMAND")
if command == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
conf = json.load(sys.stdin)
if command in conf["hold"]:
    if conf.get("ignoreTerm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(conf["marker"], "a") as marker:
        marker.write(os.environ["CNI_CONTAINERID"] + " " + command + "\\n")
    while not os.path.exists(conf["release"]):
        time.sleep(0.02)
if command == "ADD":
    print(json.dumps(conf["prevResult"]))
"""

WAIT = 30.0  # the bound of every wait; never reached when things work


class Gate:
    """A NAD named ``name`` whose chain ends in the gate, and the files that steer it."""

    def __init__(
        self,
        world: World,
        name: str = "gated",
        *,
        hold: tuple[str, ...] = ("ADD",),
        ignore_term: bool = False,
    ) -> None:
        self.world = world
        self.name = name
        self.marker = world.root / f"{name}.held"
        self.release_file = world.root / f"{name}.release"
        bin_dir = world.root / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir()
            for plugin in Path(CNI_BIN_DIR).iterdir():
                (bin_dir / plugin.name).symlink_to(plugin)
            script = bin_dir / "mh-gate"
            script.write_text(f"#!{sys.executable} -S\n" + SCRIPT)
            script.chmod(0o755)
        world.config["binDir"] = str(bin_dir)
        lan = world.lab.macvlan_parent(name[:4])
        world.nad(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {
                        "type": "macvlan",
                        "master": lan,
                        "mode": "bridge",
                        "ipam": {
                            "type": "host-local",
                            "dataDir": str(world.ipam_dir),
                            "ranges": [[{"subnet": world.lan_subnet(3)}]],
                        },
                    },
                    {
                        "type": "mh-gate",
                        "hold": list(hold),
                        "ignoreTerm": ignore_term,
                        "marker": str(self.marker),
                        "release": str(self.release_file),
                    },
                ],
            },
        )

    def held(self) -> list[str]:
        """``<container ID> <command>`` for every call that reached the gate."""
        return self.marker.read_text().splitlines() if self.marker.exists() else []

    def wait_held(self, count: int = 1) -> None:
        wait_for(f"{count} calls to reach the gate", lambda: len(self.held()) >= count)

    def release(self) -> None:
        self.release_file.touch()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def holds_open(pid: int, path: str | Path) -> bool:
    """Whether process ``pid`` has ``path`` open (it waits on a lock there, say)."""
    target = str(path)
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if str(fd.readlink()) == target:
                return True
        except OSError:
            continue
    return False
