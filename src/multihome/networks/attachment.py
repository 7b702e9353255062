"""The plan for one pod: which delegate runs for which network, with what.

`plan_pod` turns the multus config, the pod and the runtime's request into a
`PodPlan`: one `Attachment` per network, in the order they must be added --
the cluster network (``clusterNetwork``, or the pod's
``v1.multus-cni.io/default-network``, or ``delegates[0]``), then
``defaultNetworks`` (not for pods in ``systemNamespaces``) or the other
inline delegates, then the selection annotation's networks, then the
auxiliary chain.  Each attachment carries everything its delegate call needs
and nothing more:

* **ifname**: the runtime's ``CNI_IFNAME`` for the cluster network, the
  requested name, or ``net<position>`` as Multus numbers them (cluster
  network = 0); a generated name that another attachment asked for
  explicitly moves on to the next free number.  Two attachments asking for
  the same name is an error.
* **cni_args**: ``IgnoreUnknown=true;K8S_POD_NAMESPACE;K8S_POD_NAME;
  K8S_POD_INFRA_CONTAINER_ID;K8S_POD_UID`` in upstream's order, the
  runtime's other CNI_ARGS (cluster network only), then ``MAC=`` and ``IP=``
  for requested addresses, because static, host-local and macvlan read them
  there.
* **conf**: the network's configuration with the request's ``cni-args``
  merged into ``args.cni`` of every plugin (request keys win) and the
  device the kubelet allocated for the NAD's resourceName as ``deviceID``
  and ``pciBusID`` of every plugin (upstream's members: sriov reads the
  first, host-device the second), rewriting only those members.  NADs of
  one resource take its devices in order; one left without is an error
  finding (``device-missing``).
* **capability_args**: the requests (ips, mac, portMappings, bandwidth,
  infinibandGUID, deviceID) as capability arguments.  The runtime's own
  runtimeConfig (e.g. the pod's hostPorts) goes to the cluster network only
  (NPWG §7.5; Multus leaks it to every network).  `multihome.cni.invoking`
  gives each plugin only the keys of the capabilities it declares
  (`Attachment.runtime_configs` shows what that will be).

Nothing here raises on user input: problems are findings, and a plan with an
error finding must not run (`findings.to_cni_error`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multihome.cni.config import NetConfList, RawJSON, RawObject
from multihome.cni.request import Request, format_args

from . import capabilities, deviceinfo, validation
from .confdir import NO_FILES, ConfFiles, chained_plugins
from .config import MultusConfig
from .findings import Finding, Findings
from .nad import (
    NadLookup,
    Network,
    is_nad_reference,
    isolation_problem,
    network_for,
    resolve_network,
)
from .selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    NetworkSelection,
    parse_selection,
)

_POD_ARGS = ("K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID")
_BASE_ARGS = ("IgnoreUnknown", *_POD_ARGS)


@dataclass(frozen=True, eq=False)
class Attachment:
    """One network of a pod, ready for its delegate call."""

    network: Network
    ifname: str
    #: The delegate configuration to run (the network's, plus cni-args and device ID).
    conf: NetConfList
    #: CNI_ARGS pairs, in order.
    cni_args: tuple[tuple[str, str], ...]
    #: Candidate runtimeConfig keys; each plugin gets those of its declared capabilities.
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    #: The cluster network ("default": true in network-status; result returned to the runtime).
    is_default: bool = False
    #: What the pod asked for this network (None for networks of the multus config).
    selection: NetworkSelection | None = None
    #: The device for this attachment: the kubelet's (NAD resourceName) or the annotation's.
    device_id: str = ""
    #: The NAD's resourceName when `device_id` is the kubelet's, and the device
    #: plugin's device-info file for it (copied to `device_info_file` before ADD).
    resource_name: str = ""
    device_plugin_file: str = ""
    #: Where the network was named: ``clusterNetwork``, ``defaultNetworks[0]``, ``networks[1]``...
    path: str = ""

    @property
    def name(self) -> str:
        """The network's name in events and network-status (``namespace/nad`` for NADs)."""
        return self.network.name

    @property
    def is_list(self) -> bool:
        """Run as a configuration list (libcni AddNetworkList) rather than a single config."""
        return self.network.is_list

    @property
    def cni_args_text(self) -> str:
        return format_args(self.cni_args)

    @property
    def device_info_file(self) -> str:
        """The ``CNIDeviceInfoFile`` this attachment's plugins are told to use, or ""."""
        return str(self.capability_args.get("CNIDeviceInfoFile") or "")

    def runtime_configs(self) -> list[dict[str, Any]]:
        """The runtimeConfig each plugin of the chain will receive, in order."""
        return capabilities.runtime_configs(self.conf, self.capability_args)


@dataclass(frozen=True, eq=False)
class PodPlan:
    namespace: str
    name: str
    uid: str
    container_id: str
    attachments: tuple[Attachment, ...]

    @property
    def cluster_network(self) -> Attachment | None:
        return next((a for a in self.attachments if a.is_default), None)


@dataclass(eq=False)
class _Pending:
    path: str
    network: Network | None
    selection: NetworkSelection | None = None
    is_default: bool = False
    ifname: str = ""


def _pod_fields(
    pod: Mapping[str, Any] | None, findings: Findings
) -> tuple[str, str, str, Mapping[str, Any]]:
    if pod is None:
        return "", "", "", {}
    meta = pod.get("metadata") if isinstance(pod, Mapping) else None
    if not isinstance(meta, Mapping):
        findings.add("pod-invalid", "metadata", "the pod has no metadata")
        return "", "", "", {}
    values = []
    for key in ("namespace", "name", "uid"):
        value = meta.get(key) or ""
        if not isinstance(value, str):
            findings.add("pod-invalid", f"metadata.{key}", f"metadata.{key} is not a string")
            value = ""
        values.append(value)
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        findings.add("pod-invalid", "metadata.annotations", "metadata.annotations is not a map")
        annotations = {}
    return values[0], values[1], values[2], annotations


def referenced_nads(
    *, config: MultusConfig, pod: Mapping[str, Any] | None, namespace: str = ""
) -> list[tuple[str, str]]:
    """Every ``(namespace, name)`` NAD `plan_pod` may look up for this pod, in order.

    For a caller whose NAD source is asynchronous: fetch these first, then
    pass a lookup over the results.
    """
    scratch = Findings()
    pod_ns, _, _, annotations = _pod_fields(pod, scratch)
    pod_ns = pod_ns or namespace or "default"
    out: list[tuple[str, str]] = []

    def add_value(value: str) -> None:
        if "/" not in value:
            out.append((config.multus_namespace, value))
        elif is_nad_reference(value):
            ns, name = value.split("/")
            out.append((ns, name))

    default = annotations.get(DEFAULT_NETWORK_ANNOTATION)
    if isinstance(default, str) and default.strip():
        selections, _ = parse_selection(default, namespace=config.multus_namespace)
        out.extend((s.namespace, s.name) for s in selections)
    elif config.cluster_network:
        add_value(config.cluster_network)
    if pod_ns not in config.system_namespaces:
        for value in config.default_networks:
            add_value(value)
    networks = annotations.get(NETWORKS_ANNOTATION)
    if isinstance(networks, str):
        selections, _ = parse_selection(networks, namespace=pod_ns)
        out.extend((s.namespace, s.name) for s in selections)
    return list(dict.fromkeys(out))


def plan_pod(
    *,
    config: MultusConfig,
    pod: Mapping[str, Any] | None,
    request: Request,
    nads: NadLookup,
    files: ConfFiles = NO_FILES,
    devices: Mapping[str, Sequence[str]] | None = None,
    device_info_dir: str = deviceinfo.BASE_DIR,
) -> tuple[PodPlan, list[Finding]]:
    """The attachments of a pod and every finding about them (see the module docstring).

    ``pod`` is the Pod object as a dict (None without Kubernetes: only the
    multus config's networks); ``request`` the runtime's CNI request
    (container ID, ``CNI_IFNAME``, ``CNI_ARGS``); ``nads`` finds a NAD by
    ``(namespace, name)``; ``files`` reads CNI configuration files
    (`confdir`); ``devices`` maps a resource name to the device IDs the
    kubelet assigned the pod, in order (None: not known, as in ``lint``;
    nothing is injected and nothing missing is reported);
    ``device_info_dir`` is where device-info files live.  The runtime's
    runtimeConfig is ``config.runtime_config``.

    The plan holds every attachment that could be resolved; run it only if
    the findings hold no error.
    """
    findings = Findings()
    pod_ns, pod_name, pod_uid, annotations = _pod_fields(pod, findings)
    k8s = request.k8s
    namespace = k8s.namespace or pod_ns or "default"
    name = k8s.name or pod_name
    uid = k8s.uid or pod_uid
    lookup = _Resolver(config, nads, files, findings)

    pending = [lookup.cluster_network(annotations, namespace)]
    if config.delegates and not config.cluster_network:
        pending += [_Pending(n.source, n) for n in config.delegates[1:]]
    elif namespace not in config.system_namespaces:
        for index, value in enumerate(config.default_networks):
            path = f"defaultNetworks[{index}]"
            pending.append(_Pending(path, lookup.reference(value, path)))

    selections: list[NetworkSelection] = []
    annotation = annotations.get(NETWORKS_ANNOTATION)
    if annotation is not None:
        parsed, problems = parse_selection(annotation, namespace=namespace)
        findings.extend(problems)
        for selection in parsed:
            selections.append(selection)
            network = lookup.selected(selection, namespace)
            pending.append(_Pending(selection.path, network, selection))
    if config.auxiliary_cni_chain_name:
        aux = lookup.auxiliary_chain()
        if aux is not None:
            pending.append(_Pending("auxiliaryCNIChainName", aux))

    cluster = pending[0]
    if cluster.selection is not None:
        selections.insert(0, cluster.selection)
    _assign_ifnames(pending, request.ifname, findings)
    findings.extend(validation.check_pod_requests(selections))

    attachments = []
    wanted = Counter(i.network.resource_name for i in pending if i.network is not None)
    pool = _Devices(devices, {}, wanted, device_info_dir)
    for item in pending:
        if item.network is None:
            continue
        attachment = _build(
            item,
            config=config,
            request=request,
            pod=(namespace, name, uid),
            devices=pool,
            findings=findings,
        )
        if attachment is not None:
            attachments.append(attachment)
    plan = PodPlan(namespace, name, uid, request.container_id, tuple(attachments))
    return plan, findings.as_list()


def validate_pod(
    *,
    config: MultusConfig,
    pod: Mapping[str, Any],
    nads: NadLookup,
    files: ConfFiles = NO_FILES,
    namespace: str = "",
    ifname: str = "eth0",
) -> list[Finding]:
    """Every finding about a pod's networks, as an ADD would find them (lint, webhook).

    ``namespace`` stands in for a pod object without one (an admission
    request names the namespace beside the object).
    """
    return dry_plan(
        config=config, pod=pod, nads=nads, files=files, namespace=namespace, ifname=ifname
    )[1]


def dry_plan(
    *,
    config: MultusConfig,
    pod: Mapping[str, Any],
    nads: NadLookup,
    files: ConfFiles = NO_FILES,
    namespace: str = "",
    ifname: str = "eth0",
    container_id: str = "dry-run",
) -> tuple[PodPlan, list[Finding]]:
    """`plan_pod` for a pod that is not being added (lint, explain, webhook)."""
    args = (("K8S_POD_NAMESPACE", namespace),) if namespace else ()
    request = Request(command="ADD", container_id=container_id, ifname=ifname, args=args)
    return plan_pod(config=config, pod=pod, request=request, nads=nads, files=files)


class _Resolver:
    def __init__(
        self, config: MultusConfig, nads: NadLookup, files: ConfFiles, findings: Findings
    ) -> None:
        self.config = config
        self.nads = nads
        self.files = files
        self.findings = findings

    def cluster_network(self, annotations: Mapping[str, Any], pod_namespace: str) -> _Pending:
        config = self.config
        value = annotations.get(DEFAULT_NETWORK_ANNOTATION)
        if value is not None:
            root = "default-network"
            selections, problems = parse_selection(
                value, namespace=config.multus_namespace, root=root
            )
            self.findings.extend(problems)
            if len(selections) > 1:
                self.findings.add(
                    "default-network-multiple",
                    root,
                    f"{DEFAULT_NETWORK_ANNOTATION} names {len(selections)} networks: "
                    + ", ".join(s.ref for s in selections),
                )
            if selections:
                selection = selections[0]
                # The multus namespace holds the networks the admin offers as a
                # replacement cluster network: isolation lets pods name those too.
                network = self.selected(selection, pod_namespace, also=config.multus_namespace)
                return _Pending(
                    selection.path, network, selection, is_default=True, ifname=selection.interface
                )
            if problems:
                return _Pending(root, None, is_default=True)
        if config.cluster_network:
            path = "clusterNetwork"
            return _Pending(path, self.reference(config.cluster_network, path), is_default=True)
        delegate = config.delegates[0] if config.delegates else None
        return _Pending("delegates[0]", delegate, is_default=True)

    def reference(self, value: str, path: str) -> Network | None:
        network, found = resolve_network(
            value,
            namespace=self.config.multus_namespace,
            nads=self.nads,
            files=self.files,
            conf_dir=self.config.conf_dir,
            path=path,
        )
        self.findings.extend(found)
        return network

    def selected(
        self, selection: NetworkSelection, pod_namespace: str, *, also: str = ""
    ) -> Network | None:
        """The network a pod's annotation selects, if namespace isolation allows it."""
        config = self.config
        if config.namespace_isolation:
            allowed = config.global_namespaces + ((also,) if also else ())
            problem = isolation_problem(
                pod_namespace=pod_namespace,
                target_namespace=selection.namespace,
                global_namespaces=allowed,
            )
            if problem:
                self.findings.add("namespace-isolation", f"{selection.path}.namespace", problem)
                return None
        return self.lookup(selection)

    def lookup(self, selection: NetworkSelection) -> Network | None:
        """The selected network, with what its NAD and the request have to say."""
        network, found = network_for(
            selection.namespace,
            selection.name,
            nads=self.nads,
            files=self.files,
            conf_dir=self.config.conf_dir,
            path=selection.path,
        )
        self.findings.extend(found)
        if network is not None:
            self.findings.extend(
                validation.check_against_network(selection, network.conf, network=network.name)
            )
        return network

    def auxiliary_chain(self) -> Network | None:
        """Upstream's auxiliary chain: passthru, then ``<clusterNetwork dir>/<name>/*.conf``."""
        config = self.config
        name = config.auxiliary_cni_chain_name
        if "/" not in config.cluster_network:
            self.findings.add(
                "aux-chain-invalid",
                "auxiliaryCNIChainName",
                f"auxiliary chain {name!r} is used but clusterNetwork "
                f"{config.cluster_network!r} is not a path",
            )
            return None
        directory = config.cluster_network.rsplit("/", 1)[0] or "/"
        plugins = chained_plugins(self.files, directory, list_name=name)
        if not plugins:
            return None
        raw = RawObject.from_value({"cniVersion": config.cni_version, "name": name})
        passthru = '{"type":"passthru","name":"passthru-cni"}'
        raw = raw.edit({"plugins": RawJSON("[" + ",".join([passthru, *plugins]) + "]")})
        return Network(name, NetConfList.parse(raw), True, source="auxiliaryCNIChainName")


def _assign_ifnames(pending: list[_Pending], runtime_ifname: str, findings: Findings) -> None:
    explicit: dict[str, str] = {}
    cluster = pending[0]
    if not cluster.ifname:
        cluster.ifname = runtime_ifname
    for item in pending:
        if item is not cluster and item.selection is not None:
            item.ifname = item.selection.interface
        if not item.ifname:
            continue
        field_path = f"{item.path}.interface" if item.selection is not None else item.path
        if item.ifname in explicit:
            findings.add(
                "interface-duplicate",
                field_path,
                f"interface {item.ifname!r} is already used by {explicit[item.ifname]}",
            )
        else:
            explicit[item.ifname] = item.path
    used = set(explicit)
    for position, item in enumerate(pending):
        if item.ifname:
            continue
        number = position
        while f"net{number}" in used:
            number += 1
        item.ifname = f"net{number}"
        used.add(item.ifname)


@dataclass(eq=False)
class _Devices:
    """The pod's devices by resource, and how many each resource has handed out."""

    ids: Mapping[str, Sequence[str]] | None
    given: dict[str, int]
    wanted: Counter[str]
    info_dir: str

    def take(self, resource: str) -> str:
        if self.ids is None or not resource:
            return ""
        index = self.given.get(resource, 0)
        ids = self.ids.get(resource, ())
        self.given[resource] = index + 1
        return ids[index] if index < len(ids) else ""

    def have(self, resource: str) -> int:
        return len(self.ids.get(resource, ())) if self.ids is not None else 0


def _build(
    item: _Pending,
    *,
    config: MultusConfig,
    request: Request,
    pod: tuple[str, str, str],
    devices: _Devices,
    findings: Findings,
) -> Attachment | None:
    assert item.network is not None
    network = item.network
    selection = item.selection
    conf = network.conf

    resource = network.resource_name
    device_id = devices.take(resource)
    if device_id:
        conf = _edit_plugins(
            conf, lambda raw: raw.edit({"deviceID": device_id, "pciBusID": device_id})
        )
    elif resource and devices.ids is not None and not (selection and selection.device_id):
        have, want = devices.have(resource), devices.wanted[resource]
        findings.add(
            "device-missing",
            item.path,
            f"network {network.name} ({item.ifname}) gets no device of resource "
            f"{resource!r}: the kubelet allocated {have} to the pod and {want} of its "
            "networks use that resource",
            hint=f"request {want} of {resource} in the pod's containers (resources.limits, "
            "or a ResourceClaim), or attach fewer networks of it",
        )
    from_kubelet = bool(device_id)
    if selection is not None and selection.device_id:
        if device_id:
            findings.add(
                "device-id-ignored",
                f"{selection.path}.deviceID",
                f"deviceID {selection.device_id!r} is ignored: the device plugin assigned "
                f"{device_id!r} for resource {resource!r}",
            )
        else:
            device_id = selection.device_id

    if selection is not None and selection.cni_args is not None:
        merged = _merge_cni_args(conf, selection.cni_args)
        if merged is None:
            findings.add(
                "cni-args-conflict",
                f"{selection.path}.cni-args",
                f"network {network.name} has an args.cni that is not an object",
            )
            return None
        conf = merged

    namespace, name, uid = pod
    sandbox = request.k8s.infra_container_id or request.container_id
    args: list[tuple[str, str]] = [
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox),
        ("K8S_POD_UID", uid),
    ]
    caps: dict[str, Any] = {}
    if item.is_default:
        args += [(k, v) for k, v in request.args if k not in _BASE_ARGS]
        caps.update(config.runtime_config)
    if selection is not None:
        if selection.mac:
            args.append(("MAC", selection.mac))
        if selection.ips:
            args.append(("IP", ",".join(selection.ips)))
        caps.update(_capability_args(selection))
    if device_id:
        caps["deviceID"] = device_id
        caps["CNIDeviceInfoFile"] = deviceinfo.cni_path(
            devices.info_dir, network.name, request.container_id, item.ifname
        )
    return Attachment(
        network=network,
        ifname=item.ifname,
        conf=conf,
        cni_args=tuple(args),
        capability_args=caps,
        is_default=item.is_default,
        selection=selection,
        device_id=device_id,
        resource_name=resource if from_kubelet else "",
        device_plugin_file=deviceinfo.dp_path(devices.info_dir, resource, device_id)
        if from_kubelet
        else "",
        path=item.path,
    )


def _capability_args(selection: NetworkSelection) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    if selection.port_mappings:
        caps["portMappings"] = [p.to_dict() for p in selection.port_mappings]
    if selection.bandwidth is not None:
        caps["bandwidth"] = selection.bandwidth.to_dict()
    if selection.ips:
        caps["ips"] = list(selection.ips)
    if selection.mac:
        caps["mac"] = selection.mac
    if selection.infiniband_guid:
        caps["infinibandGUID"] = selection.infiniband_guid
    return caps


def _edit_plugins(conf: NetConfList, edit: Callable[[RawObject], RawObject]) -> NetConfList:
    """The list with every plugin rewritten by ``edit`` (other members keep their bytes)."""
    texts = [edit(plugin.raw).text for plugin in conf.plugins]
    return NetConfList.parse(conf.raw.edit({"plugins": RawJSON("[" + ",".join(texts) + "]")}))


def _merge_cni_args(conf: NetConfList, cni_args: Mapping[str, Any]) -> NetConfList | None:
    """``cni-args`` merged into ``args.cni`` of every plugin; None if an args.cni is no object."""
    for plugin in conf.plugins:
        args = plugin.raw.get("args")
        if isinstance(args, dict) and "cni" in args and not isinstance(args["cni"], dict):
            return None

    def merge(raw: RawObject) -> RawObject:
        if "args" not in raw:
            return raw.edit({"args": {"cni": dict(cni_args)}})
        args = raw.member_object("args")
        if "cni" not in args:
            return raw.edit({"args": args.edit({"cni": dict(cni_args)})})
        return raw.edit({"args": args.edit({"cni": args.member_object("cni").edit(cni_args)})})

    return _edit_plugins(conf, merge)
