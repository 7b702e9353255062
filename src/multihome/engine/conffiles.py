"""The node's CNI configuration files, read for the network model.

`multihome.networks.confdir` decides which file a network name or path
means; this is the file system behind its `ConfFiles` protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

#: CNI configuration files are small; a larger one is not a configuration.
MAX_SIZE = 1 << 20


class DiskFiles:
    def list_dir(self, path: str) -> Sequence[str] | None:
        try:
            with os.scandir(path) as entries:
                return sorted(e.name for e in entries if e.is_file())
        except OSError:
            return None

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read(MAX_SIZE)
        except OSError:
            return None
