"""Capability arguments, and the runtimeConfig each plugin of a chain receives.

A pod's per-attachment requests (``ips``, ``mac``, ``portMappings``, ...)
reach plugins as *capability arguments*: libcni puts into a plugin's
``runtimeConfig`` only the keys whose capability the plugin declares
``true`` (``libcni/api.go`` ``injectRuntimeConfig``).  The injection itself
happens in `multihome.cni.invoking`; this module predicts it, so findings can
say "no plugin of this chain will see your MAC", and tests can check what a
plan gives each plugin without running one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multihome.cni.config import NetConf, NetConfList

#: The capability that carries each request field of the selection annotation.
CAPABILITY_OF: dict[str, str] = {
    "ips": "ips",
    "mac": "mac",
    "portMappings": "portMappings",
    "bandwidth": "bandwidth",
    "infiniband-guid": "infinibandGUID",
    "deviceID": "deviceID",
}


def plugin_runtime_config(plugin: NetConf, capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``runtimeConfig`` libcni gives ``plugin``: the args of its true capabilities."""
    declared = plugin.capabilities
    return {key: value for key, value in capability_args.items() if key in declared}


def runtime_configs(conf: NetConfList, capability_args: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`plugin_runtime_config` for each plugin of the chain, in order."""
    return [plugin_runtime_config(plugin, capability_args) for plugin in conf.plugins]


def declares(conf: NetConfList, capability: str) -> bool:
    """Whether at least one plugin of the chain declares ``capability`` true."""
    return capability in conf.capabilities
