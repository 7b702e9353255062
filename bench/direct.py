"""The baseline: a pod's delegates run directly, with no meta plugin in between.

What a container runtime would do if its CNI configuration named the
delegates itself: for each network, exec each plugin of the chain with the
``CNI_*`` environment and the configuration libcni builds (``name``,
``cniVersion``, ``runtimeConfig``, ``prevResult`` injected), ADD in order and
DEL in reverse with the ADD's result as ``prevResult``.

The configurations come from multihome's attachment cache after one ADD, so
both sides run byte-for-byte the same delegate configs, CNI_ARGS, capability
arguments and interface names.  Plugins are exec'd with `subprocess.run`
from this process, synchronously, rather than through
`multihome.cni.invoking.add_network_list`: that keeps multihome's own
invoking layer (and an event loop) out of the baseline, so the ratio charges
multihome for all of its work.  The stdin of each call is built with
`build_plugin_conf` (libcni's ``buildOneConfig``): a fraction of a
millisecond, which libcni spends too.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from multihome.cni import version as versions
from multihome.cni.config import NetConf, NetConfList
from multihome.cni.errors import CNIError
from multihome.cni.finding import find_plugin
from multihome.cni.invoking import build_plugin_conf
from multihome.cni.process import RuntimeConf, plugin_env
from multihome.cni.result import Result
from multihome.engine.cache import AttachmentCache, CacheRecord
from multihome.testing.world import Sandbox


@dataclass
class _Network:
    conf: NetConfList
    rt: RuntimeConf
    paths: list[str]  # each plugin's binary, found once as libcni caches it per call
    result: Result | None = None


class DirectRuntime:
    """ADD and DEL of one container's delegates, from its cached record."""

    name = "direct"

    def __init__(self, record: CacheRecord, *, cni_path: tuple[str, ...]) -> None:
        self.record = record
        self.networks: list[_Network] = []
        for cached in record.attachments:
            conf = NetConfList.parse(cached.config)
            rt = RuntimeConf(
                container_id=record.container_id,
                netns=record.netns,
                ifname=cached.ifname,
                args=tuple(cached.cni_args),
                capability_args=cached.capability_args,
                cni_path=cni_path,
            )
            paths = [find_plugin(p.type, cni_path) for p in conf.plugins]
            self.networks.append(_Network(conf, rt, paths))
        self._path_env = os.environ.get("PATH", "")

    @classmethod
    def from_cache(
        cls, cache_dir: Path, container_id: str, *, cni_path: tuple[str, ...]
    ) -> DirectRuntime:
        record = AttachmentCache(cache_dir).load(container_id)
        if record is None:
            raise RuntimeError(f"no attachment record for {container_id} in {cache_dir}")
        return cls(record, cni_path=cni_path)

    def _exec(
        self, path: str, plugin: NetConf, *, command: str, rt: RuntimeConf, stdin: bytes
    ) -> bytes:
        env = {"PATH": self._path_env, **plugin_env(command, rt)}
        proc = subprocess.run([path], input=stdin, env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise CNIError(999, f"{plugin.type} {command} failed: {proc.stdout!r} {proc.stderr!r}")
        return proc.stdout

    def call(self, command: str, sandbox: Sandbox) -> str:
        if sandbox.container_id != self.record.container_id:
            raise ValueError("a DirectRuntime serves the container it was built from")
        if command == "ADD":
            for network in self.networks:
                prev: Result | None = None
                for path, plugin in zip(network.paths, network.conf.plugins, strict=True):
                    stdin = build_plugin_conf(
                        network.conf,
                        plugin,
                        capability_args=network.rt.capability_args,
                        prev_result=prev,
                    ).text.encode()
                    out = self._exec(path, plugin, command="ADD", rt=network.rt, stdin=stdin)
                    prev = Result.parse(out)
                network.result = prev
        elif command == "DEL":
            for network in reversed(self.networks):
                pairs = list(zip(network.paths, network.conf.plugins, strict=True))
                with_prev = versions.allows_check(network.conf.cni_version)  # libcni: >= 0.4.0
                for path, plugin in reversed(pairs):
                    stdin = build_plugin_conf(
                        network.conf,
                        plugin,
                        capability_args=network.rt.capability_args,
                        prev_result=network.result if with_prev else None,
                    ).text.encode()
                    self._exec(path, plugin, command="DEL", rt=network.rt, stdin=stdin)
                network.result = None
        else:
            raise ValueError(f"the baseline runs ADD and DEL, not {command}")
        return ""
