"""``multihome node-check``: is this node ready to swap Multus for multihome (or back)?

Run on the node (or in the daemon's image with the node's directories
mounted) before labelling it for multihome; docs/migrate-from-multus.md
uses it at each step.  It reads, never writes:

* which configuration the runtime uses now (the lexically first
  ``*.conf``/``*.conflist`` of the CNI config dir), and which one it will
  use once ``00-multihome.conf`` is written (ours sorts before
  ``00-multus.conf``, so Multus' file may stay for a rollback);
* the primary multihome would generate its file from, and whether it can:
  the same code as the daemon (`multihome.daemon.confgen`), so an error here
  is the one the daemon would report;
* sandboxes attached by Multus (its cache, ``<cniDir>/<containerID>``)
  that multihome has no record of: their DEL recomputes what to delete from
  the pod and its NADs, which must then still exist and be unchanged;
* the shim in the CNI bin dir.

Exit code 0: ready (warnings may be printed); 1: a problem to fix first;
2: the daemon configuration cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, TextIO

from multihome.cni.errors import CNIError

from . import confgen
from .config import DEFAULT_PATH, DaemonConfig, DaemonConfigError
from .install import SHIM_NAME

Level = Literal["ok", "warning", "problem"]
#: Multus names its cache files by container ID (64 hex digits for CRI runtimes).
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str


def check(config: DaemonConfig) -> list[Finding]:
    """What this node's files say about a swap, most important first."""
    out: list[Finding] = []
    conf_dir = config.cni_config_dir
    try:
        names = sorted(n for n in os.listdir(conf_dir) if os.path.isfile(os.path.join(conf_dir, n)))
    except OSError as err:
        return [Finding("problem", f"cannot list the CNI config dir {conf_dir}: {err.strerror}")]
    in_use = [n for n in names if os.path.splitext(n)[1] in confgen.CANDIDATE_EXTENSIONS]
    ours = confgen.FILE_NAME
    if in_use:
        out.append(Finding("ok", f"the runtime uses {os.path.join(conf_dir, in_use[0])} now"))
        if in_use[0] != ours and sorted([*in_use, ours])[0] != ours:
            out.append(
                Finding(
                    "problem",
                    f"{in_use[0]} sorts before {ours}: the runtime would keep using it; "
                    "rename it or remove it",
                )
            )
    if "00-multus.conf" in names:
        out.append(
            Finding(
                "ok",
                f"00-multus.conf stays unused once {ours} is written (it sorts after it); "
                "keep it until the rollback window is over",
            )
        )
    out.extend(_primary(config))
    out.extend(_multus_sandboxes(config.cni_dir))
    shim = os.path.join(config.bin_dir, SHIM_NAME)
    if os.access(shim, os.X_OK):
        out.append(Finding("ok", f"{shim} is installed"))
    else:
        out.append(
            Finding("warning", f"{shim} is not installed yet (the DaemonSet's init container does)")
        )
    return out


def _primary(config: DaemonConfig) -> list[Finding]:
    try:
        settings = confgen.Settings.from_daemon_config(config.raw.to_dict())
    except CNIError as err:
        return [Finding("problem", str(err))]
    path = confgen.find_primary(settings.autoconfig_dir, master=settings.master)
    if path is None:
        return [
            Finding(
                "problem",
                f"no primary CNI configuration in {settings.autoconfig_dir}: the cluster "
                "network (calico, flannel, ...) must be installed first",
            )
        ]
    try:
        with open(path, "rb") as handle:
            confgen.generate(settings, primary_path=path, primary=handle.read())
    except OSError as err:
        return [Finding("problem", f"cannot read {path}: {err.strerror}")]
    except CNIError as err:
        return [Finding("problem", str(err))]
    return [Finding("ok", f"the cluster network for {confgen.FILE_NAME} will be {path}")]


def _multus_sandboxes(cni_dir: str) -> list[Finding]:
    try:
        names = os.listdir(cni_dir)
    except FileNotFoundError:
        return []
    except OSError as err:
        return [Finding("warning", f"cannot list {cni_dir}: {err.strerror}")]
    ours = os.path.join(cni_dir, "multihome")
    theirs = [
        n
        for n in names
        if _CONTAINER_ID.match(n)
        and os.path.isfile(os.path.join(cni_dir, n))
        and not os.path.exists(os.path.join(ours, n + ".json"))
    ]
    if not theirs:
        return [Finding("ok", f"no sandbox attached by Multus is left ({cni_dir})")]
    return [
        Finding(
            "warning",
            f"{len(theirs)} sandboxes were attached by Multus ({cni_dir}/<containerID>) and "
            "multihome has no record of them: their DEL works out what to remove using the "
            "pod and its NADs, so keep those NADs until the pods are gone, or drain the node "
            "first (kubectl drain)",
        )
    ]


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="multihome node-check",
        description="Check a node's CNI files before swapping Multus for multihome (read only).",
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_PATH,
        help="the daemon configuration whose directories to check; a missing file means "
        f"the defaults (default {DEFAULT_PATH})",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        config = DaemonConfig.load(args.config) if os.path.exists(args.config) else DaemonConfig()
    except DaemonConfigError as error:
        err.write(f"multihome node-check: {error}\n")
        return 2
    findings = check(config)
    if args.output == "json":
        out.write(json.dumps([asdict(f) for f in findings], indent=2) + "\n")
    else:
        for finding in findings:
            out.write(f"{finding.level:8} {finding.what}\n")
    return 1 if any(f.level == "problem" for f in findings) else 0
