"""Device-info files on the node: copied before a delegate's ADD, read after, removed at DEL.

The format and the names are `multihome.networks.deviceinfo`'s.  As in
Multus, none of this fails an ADD: a device plugin that writes no file
(most do not) just means no ``device-info`` in network-status; a file that
is not valid device-info is logged and left out.  Unlike Multus, an
existing CNI file (left by an ADD that died) is replaced rather than kept.
All of it is blocking file I/O: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from multihome import atomicfile
from multihome.networks import deviceinfo

log = logging.getLogger(__name__)


def copy_from_plugin(source: str, target: str) -> None:
    """The device plugin's file ``source`` as the CNI file ``target`` (mode 0444)."""
    if not source or not target:
        return
    try:
        with open(source, "rb") as f:
            info = deviceinfo.parse(f.read())
    except FileNotFoundError:
        log.debug("no device-info from the device plugin at %s", source)
        return
    except (OSError, ValueError) as err:
        log.warning("device-info %s not copied: %s", source, err)
        return
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomicfile.write(target, deviceinfo.serialise(info).encode(), mode=0o444)
    except OSError as err:
        log.warning("device-info %s not written: %s", target, err)


def read(path: str) -> dict[str, Any] | None:
    """The CNI file's device-info, or None (no file, or not device-info: logged)."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return deviceinfo.parse(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("device-info %s left out of network-status: %s", path, err)
        return None


def remove(path: str) -> None:
    if not path:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("device-info %s not removed: %s", path, err)
