"""Plugin process groups on disk, so that no plugin outlives a killed daemon for long.

Each plugin runs in a process group of its own (`multihome.cni.process`);
its IPAM plugins run in the same group.  A daemon that is SIGKILLed (OOM,
``kubectl delete --force``, a node agent) cannot kill them, and a plugin
that never exits would run for ever: nobody reads its answer any more.  So
the daemon writes ``<socketDir>/plugins/<pgid>`` (the container ID and the
deadline) when a group starts and removes it when the group is gone; the
next daemon, before it listens, kills every group a file names, then
removes the files.

It kills them at once rather than at their deadline: their caller is gone,
their answer is lost, and the runtime's retry of that ADD or DEL must not
run beside a plugin still changing the same namespace and leases.  A
process is killed only when it is in the recorded group *and* carries the
recorded ``CNI_CONTAINERID`` (process IDs are reused).

Why not ``PR_SET_PDEATHSIG``: it needs a ``preexec_fn`` (unsafe with the
daemon's threads, and it makes Python fork instead of spawn), it reaches
the direct child only (not the IPAM plugin it runs), and it fires when the
*thread* that forked exits, not the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)


class PluginGroups:
    """`multihome.cni.process.GroupWatcher` writing one small file per running group."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def started(self, pgid: int, *, deadline: float, container_id: str) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = {"pgid": pgid, "containerId": container_id, "deadline": deadline}
            # A str path: pathlib would intern each new group's name (`engine.locks.lock_path`).
            with open(os.path.join(self.directory, str(pgid)), "w") as file:
                file.write(json.dumps(data))
        except OSError as err:
            # Bookkeeping for a crash: it never fails the plugin call itself.
            log.warning("cannot record plugin group %d in %s: %s", pgid, self.directory, err)

    def ended(self, pgid: int) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.directory, str(pgid)))

    def kill_leftovers(self) -> int:
        """Kill the groups an earlier daemon recorded; how many processes were killed."""
        try:
            entries = sorted(self.directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return 0
        killed = 0
        for entry in entries:
            try:
                data = json.loads(entry.read_text())
                pgid, container_id = int(data["pgid"]), str(data["containerId"])
            except (OSError, ValueError, KeyError, TypeError):
                pgid, container_id = 0, ""
            if pgid > 1:
                killed += _kill_group_of(pgid, container_id)
            with contextlib.suppress(OSError):
                entry.unlink()
        if killed:
            log.warning(
                "killed %d plugin processes left running by an earlier daemon "
                "(their requests are retried by the runtime)",
                killed,
            )
        return killed


def _kill_group_of(pgid: int, container_id: str) -> int:
    needle = f"CNI_CONTAINERID={container_id}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(entry.path, "stat").read_text()
            # The fields after the command name (which may hold spaces): state, ppid, pgrp.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            if needle not in Path(entry.path, "environ").read_bytes().split(b"\0"):
                continue
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed
