"""Putting files in place on the node: the shim into the CNI bin dir, configs into net.d.

The container runtime may be executing the old ``multihome-shim`` at the very
moment a new one is installed, and it may read the CNI config directory at
any moment.  A file is therefore never written where it will be used:

* writing into an executable that a process is running fails with ETXTBSY
  ("text file busy") on most kernels, and where it does not, the running
  process's pages change under it;
* a reader of a file written in place can see it empty or half written.

So every file is written to a temporary file in the target directory (the
same file system, so the rename is atomic), flushed to disk, and renamed
over the old one; then the directory itself is flushed, so the new entry
survives a power cut.  A process already running the old binary keeps its
inode; every later exec or read sees the complete new file.  The temporary
name starts with a dot and ends in ``.tmp``, an extension neither the
runtime's CNI loader nor `multihome.daemon.confgen` ever picks up.

Upstream's ``install_multus`` does the same for its binaries (temp file +
rename), but writes ``00-multus.conf`` in place.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

from multihome import LAUNCHER_ENV, __version__, atomicfile
from multihome.cni.errors import CNIError, Code
from multihome.cni.version import version_text

#: Where the daemon image keeps the shim it installs (deploy/ puts it there).
DEFAULT_SHIM = "/usr/lib/multihome/multihome-shim"
DEFAULT_BIN_DIR = "/opt/cni/bin"
SHIM_NAME = "multihome-shim"
THIN_NAME = "multihome-cni"
EXECUTABLE_MODE = 0o755


def replace_file(path: str, data: bytes, *, mode: int) -> bool:
    """Atomically make ``path`` hold ``data`` (see `multihome.atomicfile.replace`)."""
    return atomicfile.replace(path, data, mode=mode)


def launcher(python: str) -> bytes:
    """The ``multihome-cni`` plugin file for a host that has Python and multihome.

    The thin plugin is the package's entry point; the runtime needs a plain
    executable in its bin dir.  This is a shell script: it answers VERSION
    itself (1-3 ms, against 13-15 ms for the interpreter's start alone) and
    execs ``python`` (the host's interpreter that has multihome installed)
    for everything else.  ``-P``: neither the runtime's working directory
    nor the bin dir goes on ``sys.path``.  The VERSION text is this
    multihome's; the thin plugin warns when it runs under a launcher that
    another version wrote (`LAUNCHER_ENV`).
    """
    if not os.path.isabs(python) or any(c in python for c in " \t\n'\"\\$`"):
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid Python interpreter {python!r} for the thin plugin launcher",
            "give an absolute path without spaces or quotes, e.g. /usr/bin/python3",
        )
    return (
        "#!/bin/sh\n"
        f"# multihome-cni: the thin multihome CNI plugin (written by `multihome install`,\n"
        f"# multihome {__version__}).  VERSION is answered here, without Python; run\n"
        "# `multihome install --thin-python` again after upgrading multihome.\n"
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        "    cat >/dev/null  # the runtime's write must not meet a closed pipe\n"
        f"    echo '{version_text()}'\n"
        "    exit 0\n"
        "fi\n"
        f"{LAUNCHER_ENV}={__version__} exec {python} -P -c "
        "'from multihome.thin import main; main()' \"$@\"\n"
    ).encode()


@dataclass(frozen=True)
class Installed:
    path: str
    #: False when the file was already in place, byte for byte.
    changed: bool


def install_bytes(data: bytes, *, bin_dir: str, name: str) -> Installed:
    """Put an executable ``name`` holding ``data`` into ``bin_dir`` (see the module docstring)."""
    if not os.path.isdir(bin_dir):
        raise CNIError(
            Code.IO_FAILURE,
            f"failed to install {name!r}: the CNI bin dir {bin_dir} is not a directory",
            "mount the host's CNI bin dir (usually /opt/cni/bin) and pass it as --bin-dir",
        )
    path = os.path.join(bin_dir, name)
    try:
        return Installed(path, replace_file(path, data, mode=EXECUTABLE_MODE))
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"failed to install {name!r} as {path}: {err}") from err


def install_binary(source: str, *, bin_dir: str, name: str | None = None) -> Installed:
    """Copy the executable ``source`` into ``bin_dir``, as ``name`` or its own name."""
    try:
        with open(source, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise IsADirectoryError(f"{source} is not a regular file")
            data = handle.read()
    except OSError as err:
        raise CNIError(
            Code.IO_FAILURE,
            f"failed to read {source} to install it: {err.strerror or err}",
            "pass the shim built by `make -C shim` with --shim",
        ) from err
    if not data:
        raise CNIError(Code.IO_FAILURE, f"failed to install {source}: the file is empty")
    return install_bytes(data, bin_dir=bin_dir, name=name or os.path.basename(source))


def install(
    *, bin_dir: str, shim: str | None = DEFAULT_SHIM, thin_python: str | None = None
) -> list[Installed]:
    """Install the shim (unless ``shim`` is None) and, given ``thin_python``, the thin plugin.

    Raises `CNIError` naming the file and the cause.
    """
    done = []
    if shim is not None:
        done.append(install_binary(shim, bin_dir=bin_dir, name=SHIM_NAME))
    if thin_python is not None:
        done.append(install_bytes(launcher(thin_python), bin_dir=bin_dir, name=THIN_NAME))
    return done


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """``multihome install``: the exit code (0 installed or already in place, 1 failed)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="multihome install",
        description="Copy multihome-shim (and optionally the thin plugin multihome-cni) into the "
        "CNI bin dir, atomically: a shim that is running right now is not disturbed.",
    )
    parser.add_argument(
        "--bin-dir", default=DEFAULT_BIN_DIR, help=f"the CNI bin dir (default {DEFAULT_BIN_DIR})"
    )
    parser.add_argument(
        "--shim", default=DEFAULT_SHIM, help=f"the shim binary to install (default {DEFAULT_SHIM})"
    )
    parser.add_argument("--no-shim", action="store_true", help="do not install the shim")
    parser.add_argument(
        "--thin-python",
        metavar="PYTHON",
        help="also install multihome-cni, the thin plugin, run by this Python of the host "
        "(which must have multihome installed)",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        done = install(
            bin_dir=args.bin_dir,
            shim=None if args.no_shim else args.shim,
            thin_python=args.thin_python,
        )
    except CNIError as error:
        err.write(f"multihome install: {error}\n")
        return 1
    if args.output == "json":
        out.write(json.dumps([asdict(item) for item in done]) + "\n")
    else:
        for item in done:
            out.write(f"{'installed' if item.changed else 'unchanged'} {item.path}\n")
    return 0
