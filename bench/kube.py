"""3. Kubernetes mode: ADD latency and API requests per ADD, warm cache vs. a pod just created.

Pods and NADs come from the API double (`multihome.testing.apiserver`) with
2 ms added to every request.  The daemon gets a kubeconfig and this node's
name, so it keeps a watch cache of the node's pods and of the NADs; the
requests carry no ``manifestDir``.  Without a daemon, the engine runs on an
event loop in a thread of this process with a `KubeSource` (the same cache).

* warm: the pod has been in the cache for a while; the target is one API
  request per ADD, the network-status PATCH (design.md, quality bars).  The
  AddedInterface event is sent after the CNI answer: it is counted, but
  apart (a harness cannot see whether it left before the answer did);
* cold: the pod is created in the API just before its ADD, so the ADD may
  wait for the watch to deliver it, or GET it;
* thin: the thin plugin ``multihome-cni`` with a kubeconfig (no cache: it
  GETs the pod and the NAD, PATCHes the status and creates the event);
* direct: the same delegates exec'd directly (`bench.direct`), the floor;
* floors: what each design costs before any of multihome's own work, timed
  in the same rounds: the static shim against a daemon that answers at once
  (`bench.shimstart.NoopDaemon`), and two starts of the interpreter, bare
  (``python -I -S -c pass``) and with asyncio imported, one for the ADD and
  one for the DEL of a plugin that is a Python process per call.

Targets (issue 17): warm ADD through the shim <= 1.15x direct, ADD+DEL
<= 1.10x; thin ADD+DEL <= 1.5x direct (per round, the sides interleaved).
Each is shown next to its floor, and the thick ADD's target next to what it
leaves the daemon (the target's margin less the shim's call).

The daemon runs with its default client limits (kube.qps/burst).  A cycle
costs three requests (PATCH and event on ADD, PATCH on DEL); the rounds are
paced to a plausible pace of pods coming and going, every side alike (the
direct one too), so that no side alone starts its cycles after an idle
pause.  A last run of back-to-back cycles shows what the limits do to a
node churning pods.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

from multihome.cluster.kube import KubeConfig, KubeSource
from multihome.cni.request import Request
from multihome.engine.engine import Engine
from multihome.testing.apiserver import ApiServerDouble, run_in_thread
from multihome.testing.lab import CNI_BIN_DIR, lab
from multihome.testing.world import Sandbox, World

from . import node, shimstart
from .context import Settings
from .direct import DirectRuntime
from .report import Panel, Row, Section
from .stats import Summary, Timings, interleaved, paired, ratio_text

NAME = "kube"
NODE = "bench-node"
LATENCY_MS = 2.0
TARGET_WARM = 1
#: Issue 17: thick ADD and ADD+DEL, thin ADD+DEL, each over the delegates alone.
TARGET_ADD, TARGET_ADD_DEL, TARGET_THIN = 1.15, 1.10, 1.5
WARMUP = 2
#: Seconds between two cycles of one side: 2 sides x 3 requests / 0.65 s = 9.2 requests/s.
PERIOD = 0.65
T = TypeVar("T")
Kinds = Counter[tuple[str, str]]


class InProcess:
    """The engine with a `KubeSource`, on an event loop in a thread (its watches keep running)."""

    name = "engine"

    def __init__(self, world: World, kubeconfig: Path, config: dict[str, Any]) -> None:
        self.world = world
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-kube", daemon=True)
        self.thread.start()
        self.source = KubeSource(KubeConfig(kubeconfig=str(kubeconfig), node_name=NODE))
        self._run(self.source.start())
        self._run(self.source.wait_ready(30))
        self.engine = Engine(source=self.source)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, command: str, sandbox: Sandbox) -> str:
        stdin = json.dumps(self.config).encode()
        request = Request.from_env(self.world.env(command, sandbox), stdin)
        return self._run(self.engine.handle(request))

    def close(self) -> None:
        self._run(self.source.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Counting:
    """ADD then DEL of one pod, with the API requests counted while each ran."""

    def __init__(self, api: ApiServerDouble, runtime: node.Runtime | InProcess) -> None:
        self.api = api
        self.runtime = runtime
        self.during_add: list[Kinds] = []
        self.during_del: list[Kinds] = []

    def _since(self, start: int) -> tuple[int, Kinds]:
        log = self.api.request_log()
        return len(log), Counter((r.verb, r.resource) for r in log[start:])

    def cycle(self, sandbox: Sandbox) -> Timings:
        mark = len(self.api.request_log())
        started = time.perf_counter()
        self.runtime.call("ADD", sandbox)
        added = time.perf_counter()
        mark, kinds = self._since(mark)
        self.during_add.append(kinds)
        self.runtime.call("DEL", sandbox)
        deleted = time.perf_counter()
        self.during_del.append(self._since(mark)[1])
        return {"add": added - started, "del": deleted - added, "total": deleted - started}


def own_time(address: str | None) -> dict[str, float]:
    """Per ADD and per DEL the daemon answered: its request time less its plugins' processes.

    From its own histograms (``multihome_cni_request_duration_seconds`` by
    command, ``multihome_delegate_duration_seconds`` by plugin and command),
    so the direct side's noise is not in it: what multihome itself costs, the
    shim and HTTP aside.  Mean over every request of the section.
    """
    if not address:
        return {}
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    sums: defaultdict[tuple[str, str], float] = defaultdict(float)  # (sample, command) -> value
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "command" in sample.labels:
                sums[(sample.name, sample.labels["command"])] += sample.value
    out = {}
    for command in ("ADD", "DEL"):
        count = sums[("multihome_cni_request_duration_seconds_count", command)]
        if count:
            request = sums[("multihome_cni_request_duration_seconds_sum", command)]
            plugins = sums[("multihome_delegate_duration_seconds_sum", command)]
            out[command] = (request - plugins) / count
    return out


class Floors:
    """One round of the floors: the shim's call against a no-op daemon, two Python starts each."""

    def __init__(self) -> None:
        # A short path of its own: a unix socket's name is at most 107 bytes.
        self.directory = tempfile.mkdtemp(prefix="mh-floor-", dir="/tmp")
        self.server = shimstart.NoopDaemon(f"{self.directory}/multihome.sock")
        self.stdin = json.dumps({**shimstart.CONFIG, "daemonSocketDir": self.directory}).encode()
        self.shim = [str(node.shim_binary())]

    def cycle(self) -> Timings:
        def python(*args: str) -> float:
            command = [sys.executable, *args]
            return sum(shimstart.exec_timed(command, stdin=b"", env={})["wall"] for _ in range(2))

        return {
            "shim": shimstart.exec_timed(self.shim, stdin=self.stdin, env=shimstart.ENV)["wall"],
            "python": python("-I", "-S", "-c", "pass"),
            "asyncio": python("-c", "import asyncio"),
        }

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def paced(fn: Callable[[], Timings], period: float) -> Callable[[], Timings]:
    """``fn``, called at most once per ``period`` seconds (the wait is not timed)."""
    last = [0.0]

    def call() -> Timings:
        wait = last[0] + period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last[0] = time.monotonic()
        return fn()

    return call


def _publish(api: ApiServerDouble, manifest: dict[str, Any], sandbox: Sandbox) -> None:
    """Create ``sandbox``'s pod in the API from ``manifest``, on this node; the API sets the UID."""
    pod = {**manifest, "metadata": {**manifest["metadata"], "name": sandbox.pod}}
    pod["spec"] = {**manifest["spec"], "nodeName": NODE}
    sandbox.uid = api.create(pod)["metadata"]["uid"]


def _manifest(world: World, sandbox: Sandbox) -> dict[str, Any]:
    path = world.manifests / f"pod-{sandbox.namespace}-{sandbox.pod}.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def run(settings: Settings) -> Section:
    section = Section(
        NAME,
        f"Kubernetes mode (API double, +{LATENCY_MS:g} ms per request)",
        settings.command(NAME),
    )
    rounds = settings.pick(25, 6)
    burst = settings.pick(40, 12)
    with lab() as the_lab, run_in_thread(latency_ms=LATENCY_MS) as api:
        world = World(the_lab)
        world.macvlan_nad("lan1", master=the_lab.macvlan_parent("lan"), static=True)
        api.create(json.loads((world.manifests / "nad-default-lan1.json").read_text()))
        lan = world.lan_subnet(1)
        warm = world.pod("warm", [{"name": "lan1", "ips": [world.host(lan, 10) + "/24"]}])
        _publish(api, _manifest(world, warm), warm)
        # Each cold round is a new pod (name, UID, container) in one reused sandbox namespace.
        cold_ns = world.pod("cold", [{"name": "lan1", "ips": [world.host(lan, 11) + "/24"]}])
        cold_manifest = _manifest(world, cold_ns)
        kubeconfig = api.write_kubeconfig(world.root / "kubeconfig")
        with node.maybe_daemon(
            section,
            {
                "kubeconfig": str(kubeconfig),
                "nodeName": NODE,
                # For its own accounting of where an ADD's time goes (`own_time`).
                "metricsPort": 0,
                "metricsAddress": "127.0.0.1",
            },
        ) as daemon:
            runtime: node.Runtime | InProcess
            if daemon is not None:
                runtime = node.shim_runtime(world, socket_dir=daemon.socket_dir)
                runtime.config.pop("manifestDir", None)
            else:
                config = {k: v for k, v in world.config.items() if k != "manifestDir"}
                runtime = InProcess(world, kubeconfig, config)
            warm_side, cold_side = Counting(api, runtime), Counting(api, runtime)
            numbers = iter(range(1, 10**6))
            # The floor: what the multihome side ran for this pod, exec'd directly.
            direct_pod = world.pod(
                "direct", [{"name": "lan1", "ips": [world.host(lan, 12) + "/24"]}]
            )
            _publish(api, _manifest(world, direct_pod), direct_pod)
            runtime.call("ADD", direct_pod)
            direct = DirectRuntime.from_cache(
                world.cni_dir / "multihome",
                direct_pod.container_id,
                cni_path=(CNI_BIN_DIR, CNI_BIN_DIR),
            )
            runtime.call("DEL", direct_pod)
            thin_pod = world.pod("thin", [{"name": "lan1", "ips": [world.host(lan, 13) + "/24"]}])
            _publish(api, _manifest(world, thin_pod), thin_pod)
            # The thin plugin gets its kubeconfig in JSON, as docs/configuration-kube.md
            # advises (no PyYAML import on every call); the daemon reads the YAML one.
            thin_kubeconfig = world.root / "kubeconfig.json"
            thin_kubeconfig.write_text(json.dumps(yaml.safe_load(kubeconfig.read_text())))
            thin = node.thin_runtime(world, kubeconfig=str(thin_kubeconfig))
            thin.config.pop("manifestDir", None)
            thin_side = Counting(api, thin)
            floors = Floors()

            def cold() -> Timings:
                n = next(numbers)
                pod = Sandbox(
                    f"cold-{n}", "default", cold_ns.netns, f"{cold_ns.container_id}x{n}", ""
                )
                _publish(api, cold_manifest, pod)
                try:
                    return cold_side.cycle(pod)
                finally:
                    api.delete("pods", namespace="default", name=pod.pod)

            try:
                samples = interleaved(
                    {
                        "warm": paced(lambda: warm_side.cycle(warm), PERIOD),
                        "cold": paced(cold, PERIOD),
                        "thin": paced(lambda: thin_side.cycle(thin_pod), PERIOD),
                        "direct": paced(lambda: _direct_cycle(direct, direct_pod), PERIOD),
                        "floors": floors.cycle,
                    },
                    rounds=rounds,
                    warmup=WARMUP,
                )
                churn = Counting(api, runtime)
                started = time.perf_counter()
                churned = [churn.cycle(warm) for _ in range(burst)]
                churn_seconds = time.perf_counter() - started
                own = own_time(daemon.info().get("metrics")) if daemon is not None else {}
            finally:
                floors.close()
                if isinstance(runtime, InProcess):
                    runtime.close()
            events = api.count("create", "events")
        found = node.leaks(world, [warm, cold_ns, direct_pod, thin_pod])

    summaries = {s: {k: Summary.of(v) for k, v in t.items()} for s, t in samples.items()}
    counted = {"warm": warm_side.during_add[WARMUP:], "cold": cold_side.during_add[WARMUP:]}
    path = "shim -> daemon" if daemon is not None else "engine + KubeSource in-process"
    for side in ("warm", "cold"):
        section.rows.append(Row(f"{side}: ADD latency ({path})", summaries[side]["add"].ms()))
        section.rows.append(Row(f"{side}: DEL latency", summaries[side]["del"].ms()))
    section.rows.append(
        Row("thin: ADD latency (multihome-cni, no cache)", summaries["thin"]["add"].ms())
    )
    section.rows.append(Row("thin: DEL latency", summaries["thin"]["del"].ms()))
    section.notes.append("thin: the kubeconfig in JSON (read without PyYAML)")
    section.rows.append(
        Row("direct: ADD latency (the delegates alone)", summaries["direct"]["add"].ms())
    )
    section.rows.append(Row("direct: DEL latency", summaries["direct"]["del"].ms()))
    direct_add, direct_total = samples["direct"]["add"], samples["direct"]["total"]
    floor = samples["floors"]
    ratios = {
        "floor_add": paired(_plus(direct_add, floor["shim"]), direct_add),
        "floor_thin": paired(_plus(direct_total, floor["python"]), direct_total),
        "floor_thin_asyncio": paired(_plus(direct_total, floor["asyncio"]), direct_total),
        "warm_add": paired(samples["warm"]["add"], samples["direct"]["add"]),
        "warm_total": paired(samples["warm"]["total"], samples["direct"]["total"]),
        "cold_add": paired(samples["cold"]["add"], samples["direct"]["add"]),
        "thin_add": paired(samples["thin"]["add"], samples["direct"]["add"]),
        "thin_total": paired(samples["thin"]["total"], samples["direct"]["total"]),
    }
    for key, label, target in (
        ("floor_add", "floor: (direct ADD + the shim's call) / direct ADD", None),
        ("warm_add", f"warm ADD / direct ADD ({path}), per round", TARGET_ADD),
        ("warm_total", "warm ADD+DEL / direct ADD+DEL, per round", TARGET_ADD_DEL),
        ("cold_add", "cold ADD / direct ADD, per round", None),
        ("thin_add", "thin ADD / direct ADD, per round", None),
        (
            "floor_thin",
            "floor: (direct ADD+DEL + 2 Python starts, -I -S -c pass) / direct",
            None,
        ),
        (
            "floor_thin_asyncio",
            "floor: (direct ADD+DEL + 2 Python starts importing asyncio) / direct",
            None,
        ),
        ("thin_total", "thin ADD+DEL / direct ADD+DEL, per round", TARGET_THIN),
    ):
        got = ratios[key]
        section.rows.append(
            Row(
                label,
                ratio_text(got),
                f"<= {target}" if target else "",
                got.median <= target if target else None,
            )
        )
    thin_requests = _per_kind(thin_side.during_add[WARMUP:])
    section.rows.append(
        Row(
            "thin: API requests per ADD",
            ", ".join(f"{n:g} {k}" for k, n in thin_requests.items()) or "none",
        )
    )
    requests: dict[str, Any] = {}
    for side, adds in counted.items():
        kinds = sum(adds, Counter())
        events_seen = kinds.pop(("create", "events"), 0)
        per_add = Summary.of([float(sum(c.values()) - c[("create", "events")]) for c in adds])
        requests[side] = {
            "per_add_without_event": per_add.to_dict(),
            "by_kind_per_add": {f"{v} {r}": n / len(adds) for (v, r), n in kinds.items()},
            "events_seen_during_add_per_add": events_seen / len(adds),
        }
        text = ", ".join(f"{n / len(adds):g} {v} {r}" for (v, r), n in sorted(kinds.items()))
        met = per_add.maximum <= TARGET_WARM if side == "warm" else None
        section.rows.append(
            Row(
                f"{side}: API requests per ADD, event aside (max)",
                f"{per_add.maximum:g}  ({text or 'none'})",
                f"<= {TARGET_WARM}" if side == "warm" else "",
                met,
            )
        )
    all_adds = len(warm_side.during_add) + len(cold_side.during_add) + burst
    section.rows.append(
        Row("events created per ADD (sent after the answer)", f"{events / all_adds:.2f}")
    )
    for command, seconds in own.items():
        section.rows.append(
            Row(
                f"the daemon's own time per {command}, its plugin processes aside (mean)",
                f"{seconds * 1e3:.1f} ms",
            )
        )
    # The thick ADD target's margin over the delegates, less the shim's own call.
    left = Summary.of(
        [(TARGET_ADD - 1) * a - s for a, s in zip(direct_add, floor["shim"], strict=True)]
    )
    section.rows.append(
        Row(
            f"what {TARGET_ADD}x direct leaves the daemon per ADD, the shim's call aside", left.ms()
        )
    )
    churn_add = Summary.of([t["add"] for t in churned])
    churn_del = Summary.of([t["del"] for t in churned])
    section.rows.append(
        Row(
            f"back-to-back: {burst} warm ADD+DEL cycles",
            f"{burst / churn_seconds:.1f} cycles/s; ADD {churn_add.ms()}",
        )
    )
    section.rows.append(Row("back-to-back: DEL", churn_del.ms()))
    section.rows.append(Row("leaks after", node.leak_text(found), "0", not any(found.values())))
    section.data = {
        "rounds": rounds,
        "latency_ms": LATENCY_MS,
        "pace_seconds": PERIOD,
        "path": path,
        "ms": {s: {k: v.to_dict(1e3) for k, v in d.items()} for s, d in summaries.items()},
        "requests": requests,
        "ratios_to_direct": {k: v.to_dict() for k, v in ratios.items()},
        "thin_requests_per_add": thin_requests,
        "requests_during_del": _per_kind(
            warm_side.during_del[WARMUP:] + cold_side.during_del[WARMUP:]
        ),
        "events_created": events,
        "daemon_own_seconds": own,
        "target_add_leaves_daemon_ms": left.to_dict(1e3),
        "back_to_back": {
            "cycles": burst,
            "cycles_per_second": burst / churn_seconds,
            "add_ms": churn_add.to_dict(1e3),
            "del_ms": churn_del.to_dict(1e3),
            "requests_per_cycle": _per_kind(
                [a + d for a, d in zip(churn.during_add, churn.during_del, strict=True)]
            ),
        },
        "leaks": found,
    }
    order = [("warm", "add"), ("cold", "add"), ("warm", "del"), ("cold", "del")]
    section.panels.append(
        Panel(
            f"Kubernetes mode, API +{LATENCY_MS:g} ms (median, p10-p90)",
            "bars",
            "ms",
            labels=[f"{s} {k.upper()}" for s, k in order] + ["churn ADD"],
            values=[summaries[s][k].median * 1e3 for s, k in order] + [churn_add.median * 1e3],
            low=[summaries[s][k].p10 * 1e3 for s, k in order] + [churn_add.p10 * 1e3],
            high=[summaries[s][k].p90 * 1e3 for s, k in order] + [churn_add.p90 * 1e3],
        )
    )
    return section


def _direct_cycle(direct: DirectRuntime, sandbox: Sandbox) -> Timings:
    started = time.perf_counter()
    direct.call("ADD", sandbox)
    added = time.perf_counter()
    direct.call("DEL", sandbox)
    deleted = time.perf_counter()
    return {"add": added - started, "del": deleted - added, "total": deleted - started}


def _plus(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)]


def _per_kind(counters: list[Kinds]) -> dict[str, float]:
    total = sum(counters, Counter())
    return {f"{v} {r}": n / max(len(counters), 1) for (v, r), n in sorted(total.items())}
