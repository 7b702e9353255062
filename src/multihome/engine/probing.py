"""Asking the bin dirs about a plugin type before anything runs: found, executable, VERSION.

The ADD's pre-flight check and `multihome lint --node` ask the same way, so
that a missing or too old plugin is the same finding from both.  VERSION
answers are cached per binary path and mtime (`multihome.cni.invoking`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from multihome.cni.errors import CNIError
from multihome.cni.invoking import version_info
from multihome.cni.process import Exec, ExecFailure
from multihome.networks.plugins import Probe

#: Seconds a plugin may take to answer VERSION before the ADD goes on without the answer.
PROBE_TIMEOUT = 5.0


async def probe_plugin(executor: Exec, plugin_type: str, cni_path: Sequence[str]) -> Probe:
    """What the bin dirs say about ``plugin_type``; never raises for the plugin's faults."""
    try:
        path = executor.find(plugin_type, cni_path)
    except CNIError:
        return Probe()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            info = await version_info(plugin_type, cni_path=cni_path, executor=executor)
    except ExecFailure as err:
        return Probe(path, problem=err.msg, executable=False)
    except CNIError as err:
        return Probe(path, problem=err.msg)
    except TimeoutError:
        return Probe(path, problem=f"no answer within {PROBE_TIMEOUT:g} s")
    return Probe(path, info)
