"""Fuzzing the thin plugin's ``run``: configuration, environment, annotation, NAD config.

Each input is a whole CNI call on a real node (a `World` with the cluster
network and a LAN): the pod's networks annotation and one NAD are written
as manifests, then ``run`` gets the environment and the stdin.  The oracle:

* no exception escapes, and the answer on stdout is JSON: a result (ADD)
  or a CNI error with an integer code; never multihome's own "internal
  error" (999 passes only as a delegate's own answer);
* after a failed ADD nothing is left (links with addresses in the pod and
  root namespaces, leases, cache files, processes); after a good one, a DEL
  succeeds and then nothing is left.

Safety: the inputs never choose directories, binaries or namespaces on
their own (no ``cniDir``, ``binDir``, ``logFile``, no ``host-device``, no
path to the root namespace): whatever they hold, plugins act only inside
the lab.  The normal suite tries a few dozen inputs; ``make fuzz`` tries
many (``MULTIHOME_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multihome import thin
from multihome.cni.errors import CNIError
from multihome.cni.request import validate_container_id
from multihome.cni.result import Result
from multihome.testing import leaks
from multihome.testing.lab import Lab
from multihome.testing.world import Sandbox, World

pytestmark = pytest.mark.netns

EXAMPLES = int(os.environ.get("MULTIHOME_FUZZ_EXAMPLES", "0")) or 25
#: Codes multihome itself answers; a delegate's own code passes through.
SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}

text = st.text(max_size=24)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), text)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


class Node:
    """One world for every input: a pod sandbox reused, emptied after each call."""

    def __init__(self, lab: Lab) -> None:
        self.world = World(lab, mode="thin")
        self.lan = lab.macvlan_parent("lan")
        # Made here: the bridge plugin never deletes a bridge, as on a real node.
        self.bridge = lab.bridge("fzbr")
        self.sandbox = self.world.pod("web", None)
        #: (command, "ok" or the error code) -> how many inputs: what the fuzz reached.
        self.outcomes: Counter[tuple[str, str]] = Counter()
        # Warm up: the cluster bridge stays after its first use, as on a node.
        self.world.add(self.sandbox)
        self.world.delete(self.sandbox)
        self.before = leaks.baseline(lab)

    def reset(self) -> None:
        """Empty the sandbox: after a failed input, its leftovers must not fail the next
        ones (Hypothesis then shrinks toward the input that leaked, not toward any)."""
        for name in self.world.lab.links(self.sandbox.netns):
            if name != "lo":
                self.world.lab.run(self.sandbox.netns, "ip", "link", "del", name, check=False)
        shutil.rmtree(self.world.cni_dir / "multihome", ignore_errors=True)

    def leftovers(self, container_id: str) -> leaks.Leftovers:
        return leaks.account(
            container_id,
            lab=self.world.lab,
            netns=self.sandbox.netns,
            before=self.before,
            ipam_dirs=[self.world.ipam_dir],
            cache_dirs=[self.world.cni_dir],
        )


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    the_lab = Lab()
    try:
        made = Node(the_lab)
        yield made
        report = os.environ.get("MULTIHOME_FUZZ_REPORT")
        if report:  # make fuzz: how many inputs reached which answer
            rows = sorted(made.outcomes.items(), key=lambda kv: -kv[1])
            lines = [f"{n:7d}  {cmd} -> {what}" for (cmd, what), n in rows]
            total = sum(made.outcomes.values())
            Path(report).write_text(f"{total} inputs\n" + "\n".join(lines) + "\n")
    finally:
        the_lab.cleanup()


# -- the inputs ------------------------------------------------------------------------------


@st.composite
def ipam(draw: st.DrawFn, node: Node) -> dict[str, Any]:
    kind = draw(st.sampled_from(["host-local", "static", "none", "garbage"]))
    if kind == "host-local":
        subnet = draw(st.sampled_from([node.world.lan_subnet(3), "10.0.0.0/33", "x", ""]))
        out: dict[str, Any] = {
            "type": "host-local",
            "dataDir": str(node.world.ipam_dir),  # never the machine's own store
            "ranges": draw(st.sampled_from([[[{"subnet": subnet}]], [], [[{}]], "x"])),
        }
        if draw(st.booleans()):
            out["routes"] = draw(st.lists(st.fixed_dictionaries({"dst": text}), max_size=2))
        return out
    if kind == "static":
        addresses = st.lists(
            st.fixed_dictionaries(
                {"address": st.sampled_from(["192.168.77.5/24", "x", "", "::1/200"])}
            ),
            max_size=2,
        )
        return {"type": "static", "addresses": draw(addresses)}
    if kind == "none":
        return {}
    return {"type": draw(st.sampled_from(["", "../x", "nope", "host-local/x"]))}


@st.composite
def nad_config(draw: st.DrawFn, node: Node) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(text, json_value.map(json.dumps)))
    plugin_type = draw(st.sampled_from(["macvlan", "bridge", "tuning", "nope", "", "a/b", ".."]))
    plugin: dict[str, Any] = {"type": plugin_type}
    if plugin_type == "macvlan":
        plugin["master"] = draw(st.sampled_from([node.lan, node.lan + "x", ""]))
        plugin["mode"] = draw(st.sampled_from(["bridge", "private", "wrong"]))
    elif plugin_type == "bridge":
        plugin["bridge"] = node.bridge  # never a name outside the lab
    if draw(st.booleans()):
        plugin["ipam"] = draw(ipam(node))
    if draw(st.booleans()):
        plugin["capabilities"] = draw(
            st.dictionaries(st.sampled_from(["mac", "ips", "x"]), st.booleans(), max_size=2)
        )
    plugins = [plugin]
    if draw(st.booleans()):
        plugins.append({"type": "tuning", "capabilities": {"mac": True}})
    version = draw(st.sampled_from(["1.0.0", "0.4.0", "0.3.1", "1.1.0", "9.9.9", ""]))
    conf: dict[str, Any] = {"cniVersion": version, "name": draw(st.sampled_from(["fz", "", "a b"]))}
    if draw(st.booleans()):
        conf["plugins"] = plugins
    else:
        conf.update(plugins[0])
    if draw(st.integers(0, 4)) == 0:
        conf[draw(text)] = draw(json_value)
    return json.dumps(conf)


selection = st.fixed_dictionaries(
    {"name": st.sampled_from(["fz", "missing", "", "default/fz", "other/fz"])},
    optional={
        "namespace": st.sampled_from(["default", "other", ""]),
        "interface": st.sampled_from(["net1", "eth0", "", "x" * 16, "a/b", "net2"]),
        "ips": st.lists(st.sampled_from(["192.168.77.9/24", "x", "::1/64"]), max_size=2),
        "mac": st.sampled_from(["02:00:00:00:00:01", "zz", ""]),
        "default-route": st.lists(st.sampled_from(["192.168.77.1", "x"]), max_size=1),
        "cni-args": json_value,
    },
)
annotation = st.one_of(
    st.none(),
    st.sampled_from(["fz", "fz@net5", "fz,fz", "default/fz", "missing", " ,", "fz@"]),
    text,
    st.lists(selection, max_size=3).map(json.dumps),
    json_value.map(json.dumps),
)

config_members = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.sampled_from(["1.0.0", "0.3.1", "1.1.0", "0.1.0", "2.0.0", ""]),
        "name": text,
        "clusterNetwork": st.one_of(st.sampled_from(["cluster", "missing", ""]), text),
        "defaultNetworks": st.one_of(st.lists(st.sampled_from(["fz", "missing"]), max_size=2)),
        "systemNamespaces": st.lists(st.sampled_from(["default", "kube-system"]), max_size=2),
        "namespaceIsolation": json_scalar,
        "parallelDelegates": json_scalar,
        "maxParallelDelegates": st.one_of(st.integers(-2, 3), json_scalar),
        "logLevel": st.one_of(st.sampled_from(["debug", "error", "loud"]), json_scalar),
        "multusNamespace": st.sampled_from(["default", "kube-system", ""]),
        "delegates": st.one_of(st.just([]), st.lists(json_value, max_size=1)),
    },
)

env_members = st.fixed_dictionaries(
    {},
    optional={
        "CNI_COMMAND": st.sampled_from(["DEL", "CHECK", "VERSION", "GC", "STATUS", "add", ""]),
        "CNI_CONTAINERID": st.one_of(st.sampled_from(["", "-x", "a" * 245, "c\udcff"]), text),
        "CNI_IFNAME": st.one_of(st.sampled_from(["", "eth0", "x" * 16, "e/1", "e\udcff"]), text),
        "CNI_NETNS": st.sampled_from(["", "/nonexistent/ns", "relative", "/dev/null", "/x\udcff"]),
        "CNI_ARGS": st.one_of(
            st.sampled_from(["", "a", "K8S_POD_NAME=missing", "=;=", "K8S_POD_NAME=p\udcff"]), text
        ),
        "CNI_PATH": st.sampled_from(["", "/nonexistent", "/usr/lib/cni:/x\udcff"]),
    },
)


@st.composite
def calls(draw: st.DrawFn, node: Node) -> tuple[dict[str, str], bytes, str | None, str]:
    # Mostly a good environment and config: the annotation and the NAD get far.
    overrides = draw(env_members) if draw(st.integers(0, 2)) == 0 else {}
    members = draw(config_members) if draw(st.booleans()) else {}
    stdin = json.dumps({**node.world.config, **members}).encode()
    if draw(st.integers(0, 14)) == 0:
        cut = draw(st.integers(0, len(stdin)))
        stdin = stdin[:cut] + draw(st.binary(max_size=12))
    return overrides, stdin, draw(annotation), draw(nad_config(node))


# -- the target ------------------------------------------------------------------------------


def _answer(env: dict[str, str], stdin: bytes) -> tuple[int, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = thin.run(env, io.BytesIO(stdin), out, err)  # an exception fails the example
    assert "Traceback" not in err.getvalue(), err.getvalue()
    assert code in (0, 1)
    printed = out.getvalue()
    return code, json.loads(printed) if printed.strip() else None


def _check_error(answer: Any) -> None:
    assert isinstance(answer, dict), answer
    assert isinstance(answer.get("code"), int), answer
    assert isinstance(answer.get("msg"), str), answer
    # multihome's own "internal error" leads its message; a value the input
    # chose may say anything inside one (a network named "internal error").
    assert not answer["msg"].startswith("internal error"), answer
    if answer["code"] not in SPEC_CODES:
        # Only a delegate answers other codes (Go plugins use 999 for theirs).
        assert "plugin" in answer["msg"] or "network" in answer["msg"], answer


def _valid_id(container_id: str) -> str:
    """The container ID if a plugin could ever run for it, else "" (nothing to account)."""
    try:
        return validate_container_id(container_id)
    except CNIError:
        return ""


def _pod(node: Node, networks: str | None) -> Sandbox:
    world = node.world
    sandbox = node.sandbox
    doc = json.loads((world.manifests / f"pod-default-{sandbox.pod}.json").read_text())
    annotations = doc["metadata"]["annotations"]
    annotations.pop("k8s.v1.cni.cncf.io/networks", None)
    if networks is not None:
        annotations["k8s.v1.cni.cncf.io/networks"] = networks
    (world.manifests / f"pod-default-{sandbox.pod}.json").write_text(json.dumps(doc))
    return sandbox


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_the_thin_plugin(node: Node, data: st.DataObject) -> None:
    node.reset()
    overrides, stdin, networks, nad = data.draw(calls(node))
    node.world.nad("fz", nad)
    sandbox = _pod(node, networks)
    env = {**node.world.env("ADD", sandbox), **overrides}
    container_id = _valid_id(env.get("CNI_CONTAINERID", ""))

    code, answer = _answer(env, stdin)
    outcome = "ok" if code == 0 else str(answer.get("code") if isinstance(answer, dict) else "?")
    node.outcomes[(str(env.get("CNI_COMMAND")), outcome)] += 1

    if code == 1:
        _check_error(answer)
    elif env.get("CNI_COMMAND") == "ADD":
        Result.parse(answer)
    if env.get("CNI_COMMAND") == "ADD" and code == 1:
        held = node.leftovers(container_id) if container_id else None
        assert not held, (
            f"a failed ADD left: {held.describe() if held else ''}; its answer: {answer}; "
            f"NAD: {nad}; annotation: {networks}; env: {overrides}; stdin: {stdin!r}"
        )
    # The runtime's DEL, with the environment and config of the call.
    if env.get("CNI_COMMAND") in ("ADD", "DEL"):
        del_code, del_answer = _answer({**env, "CNI_COMMAND": "DEL"}, stdin)
        if del_code == 1:
            _check_error(del_answer)
        if code == 0 and env.get("CNI_COMMAND") == "ADD":
            assert del_code == 0, f"DEL after a good ADD: {del_answer}"
    # Whatever happened, a well-formed DEL for the sandbox leaves nothing.
    clean_env = node.world.env("DEL", sandbox)
    _answer(clean_env, json.dumps(node.world.config).encode())
    leaks.assert_clean(node.leftovers(sandbox.container_id))
    if container_id and container_id != sandbox.container_id:
        leaks.assert_clean(node.leftovers(container_id))
