"""The node's CNI configuration for thick mode: ``00-multihome.conf``.

The container runtime runs the lexically first configuration in its CNI
config directory.  For pods to get their secondary networks that must be
ours, and it must name the network the node already had (calico, flannel,
...: the *primary*) as the cluster network, so that every pod still gets it
on eth0.  This module finds the primary, generates our file from it and from
the daemon config, writes it atomically and keeps it current, as upstream's
config manager does (``pkg/server/config``; research/multus-features.md §5.5).

Where this differs from upstream, on purpose:

* **A primary that cannot be used never empties our file.**  Upstream wrote
  an empty ``00-multus.conf`` when the primary was unreadable or not JSON
  (the runtime then failed every pod); here the last good file stays and the
  reason is logged once.  An installer that writes its file in place is seen
  half-written now and then; the next poll picks up the complete file.
* **Written atomically** (`multihome.daemon.install.replace_file`), mode
  0644 as CNI configs usually are.  Upstream used 0600; nothing in the file
  is secret (only a fixed list of keys is copied from the daemon config:
  paths, names, flags), and tools that run without root (diagnostics,
  node inspection) may read it.  The runtime reads it as root either way.
* **Watched by polling** the candidates' contents every `interval` seconds,
  not with inotify: no dependency, works on every file system, and a
  comparison of contents sees a rewrite that keeps size and timestamp
  (timestamps are coarse) which a stat signature would miss.  The files are
  a few KiB; reading them once a second costs nothing measurable.
* **The primary is chosen again at every poll**: the lexically first
  candidate, as the runtime itself would choose without multihome.  A new
  earlier file, or the removal of the current one while another remains,
  moves our file to it.  Upstream chose once, at start.
* **The primary removed, no other candidate left: our file stays**, still
  pointing at the missing path, and ADDs fail with an error that names it.
  Removing ours would make the runtime run pods without multihome the moment
  a primary reappears, before the next poll.  Upstream does not handle it.
* **Readiness indicator file**: our file exists only while it exists.  When
  it is removed, ours is removed and the status turns unready; when it comes
  back, ours is written again.  Upstream exited with code 2 so the pod
  restarted.  (As upstream, the runtime may then run pods with the primary
  alone until it returns: that is what the indicator asks for.)
* **Removed on exit only with ``cleanupConfigOnExit``** (default false;
  upstream always removed it).  Without our file the runtime silently falls
  back to the primary: pods created while the daemon restarts (a rolling
  upgrade) would start without their secondary networks and never get
  them.  With the file kept, those ADDs wait in the shim for the daemon, or
  fail clearly, and the kubelet retries them.
* ``cniVersion`` may be left out of the daemon config: the primary's is
  used.  ``forceCNIVersion`` skips the version check instead of rewriting the
  primary's file (upstream rewrote another component's file on disk).
* A primary whose plugins are multihome itself is refused: it would loop.

The daemon's start-up: build a `ConfigManager` from the daemon config (bad
settings raise `CNIError`), start its `run` as a task once the socket
listens, report `ConfigManager.status` in ``/readyz``, and cancel the task
at shutdown (it then removes our file if so configured).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multihome.cni import version as versions
from multihome.cni.config import NetConfList, RawObject, parse_network
from multihome.cni.errors import CNIError, Code
from multihome.networks import gojson

from . import configschema as schema
from .install import replace_file

log = logging.getLogger(__name__)

FILE_NAME = "00-multihome.conf"
#: ``cniConfigFormat`` (multihome only): which file to write.  podman reads only
#: ``.conflist`` files; containerd and CRI-O read both.
FORMATS = {"conf": FILE_NAME, "conflist": "00-multihome.conflist"}
SHIM_TYPE = "multihome-shim"
DEFAULT_NETWORK_NAME = "multus-cni-network"
DEFAULT_CNI_CONFIG_DIR = "/etc/cni/net.d"
#: Never a primary: ours, and Multus' own (the generated file of a Multus being replaced).
SKIPPED_PREFIXES = ("00-multihome", "00-multus")
CANDIDATE_EXTENSIONS = (".conf", ".conflist")
#: Plugin types that are multihome: delegating to them would call ourselves.
OUR_TYPES = frozenset({"multihome-shim", "multihome-cni"})
FILE_MODE = 0o644
#: A CNI configuration is small; a bigger file is not one.
MAX_SIZE = 1 << 20

# Keys copied from the daemon config into our file, and those config generation
# reads itself: both from the one description of the daemon config's keys.
# The shim reads daemonSocketDir, socketName and its timeouts; the rest is what
# upstream's generated file carries (the daemon merges its whole config into each
# request anyway, so for the daemon they only document the node's setup).
_COPIED = tuple(key.name for key in schema.KEYS if key.copied)
_OWN = tuple(key.name for key in schema.KEYS if key.use == "confgen")


@dataclass(frozen=True)
class Settings:
    """What config generation reads from the daemon config (research §5.2)."""

    #: Version of our file; empty: the primary's.
    cni_version: str = ""
    #: Where our file is written (``cniConfigDir``).
    conf_dir: str = DEFAULT_CNI_CONFIG_DIR
    #: Where the primary is looked for (``multusAutoconfigDir``; default: ``conf_dir``).
    autoconfig_dir: str = DEFAULT_CNI_CONFIG_DIR
    #: An explicit primary, relative to ``autoconfig_dir`` (``multusMasterCNI``).
    master: str = ""
    #: ``multusConfigFile``: empty for "auto" (generate), else a file copied as it is.
    copy_file: str = ""
    override_network_name: bool = False
    force_cni_version: bool = False
    readiness_file: str = ""
    cleanup_on_exit: bool = False
    #: True capabilities the daemon config itself declares (added to the primary's).
    capabilities: frozenset[str] = frozenset()
    #: Members copied into our file, in a fixed order.
    copied: Mapping[str, Any] = field(default_factory=dict)
    #: Write a configuration list (``cniConfigFormat: conflist``) instead of a single one.
    conflist: bool = False

    @property
    def file_name(self) -> str:
        """Our file's name: the copied file's, else ``00-multihome.conf`` or ``.conflist``."""
        if self.copy_file:
            return posixpath.basename(self.copy_file)
        return FORMATS["conflist" if self.conflist else "conf"]

    @classmethod
    def from_daemon_config(cls, config: Mapping[str, Any]) -> Settings:
        """Read the keys that matter here; `CNIError` names a key of the wrong type.

        Keys match as Go matches them (any letter case); other keys are left
        to the rest of the daemon.
        """
        values = gojson.match_fields(config, [*_OWN, *_COPIED]).values
        for key, value in values.items():
            entry = schema.BY_NAME[key]
            if not entry.accepts(value):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid daemon configuration: {key!r} is {json.dumps(value)}",
                    f"{key!r} must be {entry.rule()}",
                )
        caps = values.get("capabilities", {})
        if not all(isinstance(v, bool) for v in caps.values()):
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid daemon configuration: 'capabilities' is {json.dumps(caps)}",
                "'capabilities' must map capability names to true or false",
            )
        config_format = values.get("cniConfigFormat") or "conf"
        if config_format not in FORMATS:
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"invalid daemon configuration: 'cniConfigFormat' is {json.dumps(config_format)}",
                '\'cniConfigFormat\' must be "conf" (00-multihome.conf) or "conflist" '
                "(00-multihome.conflist, for runtimes such as podman that read only lists)",
            )
        conf_dir = values.get("cniConfigDir") or DEFAULT_CNI_CONFIG_DIR
        copy_file = values.get("multusConfigFile", "auto")
        version = values.get("cniVersion", "")
        if version:
            versions.check_supported(version, "cniVersion of the daemon configuration")
        return cls(
            cni_version=version,
            conf_dir=conf_dir,
            autoconfig_dir=values.get("multusAutoconfigDir") or conf_dir,
            master=values.get("multusMasterCNI", ""),
            copy_file="" if copy_file in ("", "auto") else copy_file,
            override_network_name=values.get("overrideNetworkName", False),
            force_cni_version=values.get("forceCNIVersion", False),
            readiness_file=values.get("readinessindicatorfile", ""),
            cleanup_on_exit=values.get("cleanupConfigOnExit", False),
            capabilities=frozenset(k for k, v in caps.items() if v),
            copied={k: values[k] for k in _COPIED if k in values},
            conflist=config_format == "conflist",
        )


def candidates(names: Iterable[str]) -> list[str]:
    """The names that may be the primary, best first: ``.conf``/``.conflist``, ours skipped.

    Lexical order of the code points, which for UTF-8 names is Go's byte
    order, so the choice is the one upstream and the runtime make.
    """
    return sorted(
        name
        for name in names
        if posixpath.splitext(name)[1] in CANDIDATE_EXTENSIONS
        and not name.startswith(SKIPPED_PREFIXES)
    )


def find_primary(directory: str, *, master: str = "") -> str | None:
    """The path of the primary configuration in ``directory`` now, or None.

    ``master`` names it explicitly (``multusMasterCNI``): it is then that or
    nothing, never another file.
    """
    if master:
        path = posixpath.join(directory, master.lstrip("/"))
        return path if os.path.isfile(path) else None
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries if entry.is_file()]
    except OSError:
        return None
    found = candidates(names)
    return posixpath.join(directory, found[0]) if found else None


def load_primary(path: str, data: bytes | str) -> NetConfList:
    """The primary configuration's content; `CNIError` naming the file and what is wrong.

    A ``.conflist`` is a list; any other file is a single configuration
    unless it has ``plugins`` and no ``type`` (as `multihome.networks.confdir`
    reads ``clusterNetwork`` files).  Plugins chained from a subdirectory
    (CNI 1.1) are not read: their capabilities do not count.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if posixpath.splitext(path)[1] == ".conflist":
            network = NetConfList.parse(text)
        else:
            network = parse_network(text)
    except UnicodeDecodeError as err:
        raise CNIError(
            Code.DECODE_FAILURE, f"failed to load the primary CNI configuration {path}: {err}"
        ) from err
    except CNIError as err:
        raise err.prefixed(f"failed to load the primary CNI configuration {path}") from None
    loops = sorted({p.type for p in network.plugins} & OUR_TYPES)
    if loops:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"failed to use {path} as the primary CNI configuration: it runs {loops[0]!r}, "
            "which is multihome itself",
            "name the cluster network's own configuration with multusMasterCNI, or remove "
            "this leftover file",
        )
    return network


def generate(
    daemon_config: Mapping[str, Any] | Settings, *, primary_path: str, primary: bytes | str
) -> str:
    """The text of ``00-multihome.conf`` for this primary; `CNIError` when it cannot be made.

    Pure: ``primary_path`` is only written into ``clusterNetwork`` (the path as
    the daemon sees it: the daemon is what loads it).
    """
    settings = (
        daemon_config
        if isinstance(daemon_config, Settings)
        else Settings.from_daemon_config(daemon_config)
    )
    network = load_primary(primary_path, primary)
    theirs = network.cni_version
    ours = settings.cni_version
    if not ours:
        try:
            # A primary without cniVersion runs as 0.1.0; the runtime should not get that.
            ours = versions.check_supported(
                network.declared_version, f"cniVersion of {primary_path}"
            )
        except CNIError as err:
            raise CNIError(
                err.code, err.msg, "set cniVersion in the daemon configuration; " + err.details
            ) from None
    if (
        not settings.force_cni_version
        and versions.at_least(ours, "0.4.0")
        and not versions.at_least(theirs, "0.4.0")
    ):
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"the primary CNI configuration {primary_path} has cniVersion {theirs}, while "
            f"multihome's is {ours}: a network of version 0.4.0 or later cannot delegate "
            "to one older than 0.4.0 (it has no CHECK)",
            f"use cniVersion {theirs!r} in the daemon configuration, raise the primary's "
            "cniVersion to 0.4.0 or later, or turn on forceCNIVersion to skip this check",
        )
    out: dict[str, Any] = {
        "cniVersion": ours,
        "name": network.name if settings.override_network_name else DEFAULT_NETWORK_NAME,
        "type": SHIM_TYPE,
        "clusterNetwork": primary_path,
    }
    capabilities = sorted(settings.capabilities | network.capabilities)
    if capabilities:
        out["capabilities"] = dict.fromkeys(capabilities, True)
    out.update(settings.copied)
    if settings.conflist:
        # The runtime injects the list's name and cniVersion into the plugin's
        # stdin, so the shim and the daemon read the same keys as from a .conf.
        plugin = {k: v for k, v in out.items() if k not in ("cniVersion", "name")}
        out = {"cniVersion": out["cniVersion"], "name": out["name"], "plugins": [plugin]}
    return json.dumps(out, indent=2) + "\n"


@dataclass(frozen=True)
class Status:
    """Where config generation stands, for ``/readyz`` and for logs."""

    #: Our file is in place and the readiness indicator (if any) exists.
    ready: bool
    #: Why not ready; or, when ready, the problem being tolerated (an invalid or
    #: missing primary while the last good file stays).  Empty when all is well.
    reason: str = ""
    #: The file our config points at (the primary, or the file copied).
    source: str = ""


class ConfigManager:
    """Keeps ``00-multihome.conf`` (or the configured copied file) current; see the module doc.

    `poll_once` does one round synchronously (tests call it; it never
    sleeps); `run` repeats it every ``interval`` seconds with the injected
    ``sleep``.  Everything runs on the caller's thread: a poll is a directory
    listing and a few small reads, and a write only happens on a change.
    """

    def __init__(
        self,
        daemon_config: Mapping[str, Any] | Settings,
        *,
        interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = (
            daemon_config
            if isinstance(daemon_config, Settings)
            else Settings.from_daemon_config(daemon_config)
        )
        if not interval > 0:
            raise ValueError(f"the poll interval must be > 0 seconds, not {interval!r}")
        self.interval = interval
        self._sleep = sleep
        #: Our file.
        self.path = posixpath.join(self.settings.conf_dir, self.settings.file_name)
        if self.settings.master:
            master = posixpath.join(self.settings.autoconfig_dir, self.settings.master.lstrip("/"))
            if posixpath.normpath(master) == posixpath.normpath(self.path):
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG,
                    f"invalid daemon configuration: multusMasterCNI {self.settings.master!r} "
                    f"is {self.path}, the file multihome writes",
                    "name the cluster network's own configuration file",
                )
        #: The last input read (path and bytes): unchanged input is not processed again.
        self._seen: tuple[str, bytes] | None = None
        #: The content our file must have (the last good one), and what it points at.
        self._good: bytes | None = None
        self._good_source = ""
        #: What is wrong with the current input, and with writing our file.
        self._problem = ""
        self._write_problem = ""
        self._last_logged = ""
        self._status = Status(False, "the configuration has not been generated yet")

    @property
    def status(self) -> Status:
        return self._status

    def poll_once(self) -> Status:
        """Look at the inputs once and bring our file in line; the new status."""
        readiness = self.settings.readiness_file
        if readiness and not os.path.exists(readiness):
            self._forget()
            if self._remove():
                self._note(
                    logging.WARNING,
                    f"the readiness indicator file {readiness} is gone: removed {self.path}",
                )
            return self._set(Status(False, f"waiting for the readiness indicator file {readiness}"))

        source = self._source()
        if source is None:
            self._seen = None
            self._problem = self._missing_message()
        else:
            self._consider(source)
        if self._good is not None:
            self._put_in_place()
        return self._set(self._current())

    async def run(self) -> None:
        """Poll until cancelled; then remove our file if configured (`on_exit`)."""
        try:
            while True:
                self.poll_once()
                await self._sleep(self.interval)
        finally:
            self.on_exit()

    def on_exit(self) -> bool:
        """At shutdown: remove our file only with ``cleanupConfigOnExit``; whether removed."""
        if not self.settings.cleanup_on_exit:
            return False
        removed = self._remove()
        if removed:
            log.info("removed %s (cleanupConfigOnExit)", self.path)
        return removed

    # -- one poll, step by step --

    def _source(self) -> str | None:
        if self.settings.copy_file:
            return self.settings.copy_file if os.path.isfile(self.settings.copy_file) else None
        directory = os.path.abspath(self.settings.autoconfig_dir)
        return find_primary(directory, master=self.settings.master)

    def _missing_message(self) -> str:
        if self.settings.copy_file:
            wanted = f"the configuration file {self.settings.copy_file} (multusConfigFile)"
        elif self.settings.master:
            wanted = (
                f"the primary CNI configuration {self.settings.master} (multusMasterCNI) "
                f"in {self.settings.autoconfig_dir}"
            )
        else:
            wanted = f"a *.conf or *.conflist file in {self.settings.autoconfig_dir}"
        if self._good is None:
            return f"waiting for {wanted}"
        return f"{self._good_source} is gone and there is no {wanted}; keeping {self.path}"

    def _consider(self, source: str) -> None:
        try:
            data = _read(source)
        except OSError as err:
            self._seen = None
            self._problem = f"failed to read {source}: {err.strerror or err}"
            return
        if self._seen == (source, data):
            return
        self._seen = (source, data)
        try:
            text = self._render(source, data)
        except CNIError as err:
            self._problem = str(err)
            return
        self._problem = ""
        self._good = text.encode()
        self._good_source = source

    def _render(self, source: str, data: bytes) -> str:
        if not self.settings.copy_file:
            return generate(self.settings, primary_path=source, primary=data)
        try:
            RawObject.parse(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise CNIError(
                Code.DECODE_FAILURE, f"failed to decode {source} (multusConfigFile): {err}"
            ) from err
        return data.decode()

    def _put_in_place(self) -> None:
        assert self._good is not None
        try:
            if replace_file(self.path, self._good, mode=FILE_MODE):
                self._note(logging.INFO, f"wrote {self.path} for {self._good_source}")
            self._write_problem = ""
        except OSError as err:
            self._write_problem = f"failed to write {self.path}: {err.strerror or err}"
            return
        self._remove_other_format()

    def _remove_other_format(self) -> None:
        """Our file of the other format, left by an earlier setting, would still be read."""
        if self.settings.copy_file:
            return
        for name in FORMATS.values():
            other = posixpath.join(self.settings.conf_dir, name)
            if other == self.path:
                continue
            try:
                os.unlink(other)
            except FileNotFoundError:
                continue
            except OSError as err:
                self._note(logging.ERROR, f"failed to remove {other}: {err.strerror or err}")
                continue
            self._note(logging.INFO, f"removed {other}: cniConfigFormat names {self.path}")

    def _current(self) -> Status:
        problem = self._write_problem or self._problem
        if problem:
            self._note(logging.WARNING, problem)
        ready = self._good is not None and not self._write_problem
        return Status(ready, problem, self._good_source)

    def _set(self, status: Status) -> Status:
        self._status = status
        return status

    def _forget(self) -> None:
        self._seen = None
        self._good = None
        self._good_source = ""
        self._problem = ""
        self._write_problem = ""

    def _remove(self) -> bool:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as err:
            # Logged, not raised: the poll loop must outlive a stuck file.
            self._note(logging.ERROR, f"failed to remove {self.path}: {err.strerror or err}")
            return False
        return True

    def _note(self, level: int, message: str) -> None:
        # Once per distinct message: a poll every second must not repeat itself.
        if message != self._last_logged:
            self._last_logged = message
            log.log(level, "%s", message)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise OSError(f"{path} is larger than {MAX_SIZE} bytes: not a CNI configuration")
    return data
