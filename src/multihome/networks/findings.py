"""Findings: everything wrong or noteworthy about what a pod asks for, all at once.

Validation in multihome never stops at the first problem.  The same checks
run at ADD (where any error stops the ADD before a plugin runs), in ``lint``
and in an admission webhook, so each check reports a `Finding` with a stable
code, a severity, the path of the offending value (``networks[1].mac``), a
message naming the value, and a hint saying what would be valid.  Every code
is registered in `RULES` and documented in ``docs/findings.md``; a test keeps
the two in step.

At ADD the error findings become ONE `CNIError` (`to_cni_error`), code 7
(invalid network configuration) unless a finding's rule says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from multihome.cni.errors import CNIError, Code

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, eq=False)
class Rule:
    """What one finding code means; `RULES` holds them all."""

    code: str
    severity: Severity
    meaning: str
    fix: str
    #: The CNI error code this finding turns into at ADD (errors only).
    cni_code: int = Code.INVALID_NETWORK_CONFIG


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.code: rule for rule in rules}


_CAP = "Multus drops such a request silently"

#: Every finding code multihome emits.  docs/findings.md lists the same table.
RULES: dict[str, Rule] = _rules(
    # -- the selection annotation (k8s.v1.cni.cncf.io/networks) ---------------
    Rule(
        "selection-json-invalid",
        "error",
        "the annotation looks like JSON but does not parse",
        'write a JSON list of objects, e.g. [{"name": "net-a"}]',
    ),
    Rule("selection-not-list", "error", "the JSON form is not a list", "wrap the object(s) in [ ]"),
    Rule(
        "selection-too-many",
        "error",
        "the pod asks for more than 100 networks",
        "attach at most 100 networks to one pod; split the workload across pods",
    ),
    Rule(
        "selection-element-invalid",
        "error",
        "an element of the JSON list is not an object",
        'each element is an object such as {"name": "net-a"}',
    ),
    Rule(
        "selection-text-invalid",
        "error",
        "a text-form item has more than one '/' or more than one '@'",
        "write each item as [namespace/]name[@interface]",
    ),
    Rule(
        "selection-empty-item",
        "warning",
        "an empty item in the text form (e.g. a trailing comma)",
        "remove the extra comma; the empty item is ignored",
    ),
    Rule(
        "selection-name-missing",
        "error",
        "an element has no NAD name",
        'set "name" to the NetworkAttachmentDefinition\'s name',
    ),
    Rule(
        "selection-name-invalid",
        "error",
        "a NAD name is not a DNS-1123 subdomain",
        "lower-case letters, digits, '-' and '.', starting and ending alphanumeric",
    ),
    Rule(
        "selection-namespace-invalid",
        "error",
        "a namespace is not a DNS-1123 label",
        "lower-case letters, digits and '-', at most 63, starting and ending alphanumeric",
    ),
    Rule(
        "selection-field-invalid",
        "error",
        "a field of an element has the wrong JSON type",
        "use the type the NPWG spec gives for the field",
    ),
    Rule(
        "selection-key-unknown",
        "warning",
        "an element has a key the NPWG spec does not define",
        "check the spelling; extension keys must contain a '.' (reverse domain notation)",
    ),
    Rule(
        "selection-key-case",
        "warning",
        "a key is spelled with other letter case than the spec's; Go (Multus) accepts it",
        "write the key as the spec spells it",
    ),
    Rule(
        "interface-invalid",
        "error",
        "a requested interface name is not a valid Linux name",
        "1 to 15 bytes, not '.' or '..', no '/', ':' or whitespace",
    ),
    Rule(
        "interface-duplicate",
        "error",
        "two attachments ask for the same interface name",
        "give each attachment its own interface name, or leave it out to get net1, net2, ...",
    ),
    Rule(
        "mac-invalid",
        "error",
        "a requested MAC address does not parse",
        "write 6 bytes as hex pairs, e.g. 02:00:00:00:00:01",
    ),
    Rule(
        "mac-multicast",
        "error",
        "a requested MAC has the multicast bit (lowest bit of the first octet) set; "
        "the kernel refuses it with 'cannot assign requested address'",
        "use a locally administered unicast MAC, e.g. 02:xx:xx:xx:xx:xx",
    ),
    Rule(
        "mac-broadcast",
        "error",
        "the requested MAC is the broadcast address ff:ff:ff:ff:ff:ff",
        "use a locally administered unicast MAC, e.g. 02:xx:xx:xx:xx:xx",
    ),
    Rule(
        "mac-zero",
        "error",
        "the requested MAC is all zeros",
        "use a locally administered unicast MAC, e.g. 02:xx:xx:xx:xx:xx",
    ),
    Rule(
        "mac-universal",
        "info",
        "the requested MAC is not locally administered: it may collide with real hardware",
        "set the second-lowest bit of the first octet, e.g. 02:xx:xx:xx:xx:xx",
    ),
    Rule(
        "mac-length",
        "warning",
        "the requested hardware address is neither 6 bytes (Ethernet) nor 20 (IPoIB)",
        "use a 6-byte Ethernet MAC or a 20-byte IP-over-InfiniBand address",
    ),
    Rule(
        "infiniband-guid-invalid",
        "error",
        "a requested InfiniBand GUID does not parse",
        "write 8 bytes as hex pairs, e.g. 00:00:00:00:00:00:00:01",
    ),
    Rule(
        "ip-invalid",
        "error",
        "a requested IP address does not parse",
        "write an address with prefix length, e.g. 10.1.1.5/24 or fd00::5/64",
    ),
    Rule(
        "ip-no-prefix",
        "warning",
        "a requested IP has no prefix length; IPAM plugins that need one will refuse it",
        "add the prefix length, e.g. 10.1.1.5/24",
    ),
    Rule(
        "ip-prefix-required",
        "error",
        "a requested IP has no prefix length and the network uses static IPAM, which needs one",
        "add the prefix length, e.g. 10.1.1.5/24",
    ),
    Rule(
        "ip-duplicate",
        "error",
        "the same IP address is requested twice in the pod",
        "give each attachment its own addresses",
    ),
    Rule(
        "ipam-claim-with-ips",
        "error",
        "an element has both ips and ipam-claim-reference (spec v1.3 forbids it)",
        "keep one of the two",
    ),
    Rule(
        "default-route-invalid",
        "error",
        "a default-route gateway is not an IP address",
        'write gateway addresses, e.g. ["192.168.2.1"]',
    ),
    Rule(
        "default-route-family",
        "error",
        "a default-route gateway's family (IPv4/IPv6) has no address on that attachment",
        "use a gateway of the attachment's address family, or request an address of it",
    ),
    Rule(
        "default-route-multiple",
        "error",
        "more than one IPv4 or more than one IPv6 default-route gateway in the pod (ECMP)",
        "keep one gateway per family across all attachments",
    ),
    Rule(
        "default-route-empty",
        "info",
        "default-route is an empty list: this attachment gives the pod no default route; "
        "the others keep theirs (Multus removed every default route of the pod for it)",
        "to move the pod's default route here, list the gateway",
    ),
    Rule(
        "default-route-off-subnet",
        "warning",
        "a default-route gateway is not in any requested subnet of the attachment",
        "use a gateway on the attachment's subnet",
    ),
    Rule(
        "port-mapping-invalid",
        "error",
        "a portMappings entry is malformed",
        '{"hostPort": 1-65535, "containerPort": 1-65535, "protocol": tcp|udp|sctp, '
        '"hostIP": address}',
    ),
    Rule(
        "bandwidth-invalid",
        "error",
        "the bandwidth request is malformed",
        "non-negative integers ingressRate, ingressBurst, egressRate, egressBurst; "
        "a rate needs a burst and a burst needs a rate",
    ),
    Rule(
        "cni-args-invalid",
        "error",
        "cni-args is not a JSON object",
        'write cni-args as an object, e.g. {"key": "value"}',
    ),
    Rule(
        "cni-args-conflict",
        "error",
        "the network's config has an args.cni that is not an object, so cni-args cannot merge",
        "make args.cni an object in the NetworkAttachmentDefinition",
    ),
    Rule(
        "capability-missing",
        "warning",
        f"a request needs a capability no plugin of the network's chain declares ({_CAP})",
        'add a plugin that declares it (e.g. tuning with capabilities {"mac": true}) '
        "or remove the request",
    ),
    Rule(
        "device-missing",
        "error",
        "a NAD names a resourceName, but the kubelet allocated the pod fewer devices of it "
        "than the pod has networks of it (Multus runs the plugin without a deviceID)",
        "request as many devices of the resource as the pod has networks that use it",
    ),
    Rule(
        "device-id-ignored",
        "info",
        "the annotation's deviceID is ignored because the device plugin assigned one",
        "remove deviceID from the annotation",
    ),
    # -- default network annotation and cluster-level references -----------------
    Rule(
        "default-network-multiple",
        "error",
        "v1.multus-cni.io/default-network names more than one network",
        "name exactly one NetworkAttachmentDefinition",
    ),
    Rule(
        "namespace-isolation",
        "error",
        "namespaceIsolation forbids a NAD in another namespace than the pod's",
        "create the NAD in the pod's namespace, or list its namespace in globalNamespaces",
    ),
    Rule(
        "nad-not-found",
        "error",
        "the NetworkAttachmentDefinition does not exist",
        "create it, or fix the name and namespace",
    ),
    Rule(
        "network-not-found",
        "error",
        "clusterNetwork or a defaultNetworks entry matches no NAD and no CNI config file",
        "name an existing NAD (in multusNamespace), a CNI network name in confDir, or a file",
    ),
    Rule(
        "aux-chain-invalid",
        "error",
        "auxiliaryCNIChainName is set but clusterNetwork is not a file path",
        "give clusterNetwork as the path of the primary CNI config file",
    ),
    # -- NetworkAttachmentDefinitions and CNI configuration ----------------------
    Rule(
        "pod-invalid",
        "error",
        "the pod object is malformed",
        "metadata.namespace, metadata.name and string annotations are expected",
    ),
    Rule(
        "nad-invalid",
        "error",
        "the NetworkAttachmentDefinition object is malformed",
        "metadata.name and spec.config (a JSON string) are expected",
    ),
    Rule(
        "nad-config-not-string",
        "warning",
        "spec.config is a YAML/JSON object, not a string; the API server would refuse it",
        "quote the configuration: config: '{\"cniVersion\": ...}'",
    ),
    Rule(
        "nad-config-invalid",
        "error",
        "spec.config is not a valid CNI configuration",
        "a JSON object with cniVersion and type, or cniVersion, name and plugins",
    ),
    Rule(
        "nad-config-not-found",
        "error",
        "spec.config is empty and no file in confDir has this network name",
        'put the configuration in spec.config, or a file with this "name" in confDir',
    ),
    Rule(
        "plugin-type-invalid",
        "error",
        "a plugin (or IPAM) type is not a plain file name, so it could run any binary",
        'write the plugin binary\'s file name only, e.g. "macvlan"',
    ),
    Rule(
        "cni-version-unsupported",
        "error",
        "the configuration's cniVersion is not supported",
        "use one of 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        Code.INCOMPATIBLE_VERSION,
    ),
    Rule(
        "cni-version-assumed",
        "warning",
        'the configuration has no cniVersion; its plugins get "cniVersion": "" and '
        "read it as 0.1.0, as with libcni and Multus",
        'set cniVersion to the version the plugins speak, e.g. "1.0.0" (0.1.0 results list '
        "no interfaces, and CHECK needs 0.4.0)",
    ),
    Rule(
        "conf-file-invalid",
        "warning",
        "a file in the CNI config directory does not parse",
        "fix or remove the file; it is skipped",
    ),
    # -- the plugins on this node (before any plugin runs) ------------------------
    Rule(
        "plugin-not-found",
        "error",
        "a plugin (or IPAM) type of a network is not installed in the CNI bin dirs",
        "install the plugin binary on this node (binDir or the runtime's CNI_PATH), or fix "
        "the type",
    ),
    Rule(
        "plugin-not-executable",
        "error",
        "a plugin binary exists but cannot be executed",
        "make the file executable and check that it is a binary for this machine",
    ),
    Rule(
        "plugin-version-unsupported",
        "error",
        "a plugin does not support the cniVersion of the network it is in",
        "set the network's cniVersion to one the plugin lists, or upgrade the plugin",
        Code.INCOMPATIBLE_VERSION,
    ),
    Rule(
        "plugin-version-unknown",
        "warning",
        "a plugin did not answer VERSION (it failed, printed garbage or took too long)",
        "check the plugin by hand: CNI_COMMAND=VERSION <plugin> < /dev/null",
    ),
    # -- the multus configuration ------------------------------------------------
    Rule(
        "config-key-ignored",
        "info",
        "a configuration key upstream documents but never implemented is ignored",
        "remove the key",
    ),
    Rule(
        "config-log-level-unknown",
        "warning",
        "logLevel is not a known level",
        "use debug, verbose, error or panic",
    ),
    # -- ahead of time (lint, the admission webhook) ------------------------------
    Rule(
        "ip-outside-subnet",
        "error",
        "a requested IP is outside every subnet the network's IPAM configuration names",
        "request an address inside the network's subnet, or fix the NAD's IPAM subnet",
    ),
    Rule(
        "address-outside-subnet",
        "error",
        "an IPAM range bound (rangeStart, rangeEnd) is outside the range's subnet",
        "put rangeStart and rangeEnd inside the subnet",
    ),
    Rule(
        "gateway-outside-subnet",
        "error",
        "an IPAM gateway or a route's gw is not on any subnet of the attachment, "
        "so the kernel refuses the route ('network is unreachable')",
        "use a gateway on the attachment's own subnet",
    ),
    Rule(
        "route-invalid",
        "error",
        "an IPAM route's dst or gw is not an address or subnet",
        'write routes as {"dst": "10.2.0.0/16", "gw": "10.1.1.1"}',
    ),
    Rule(
        "route-shadows-subnet",
        "error",
        "an IPAM route covers part of the attachment's own connected subnet and detours "
        "traffic for it through a gateway (or collides with the kernel's connected route)",
        "remove the route; the connected subnet is reachable without one",
    ),
    Rule(
        "route-shadows-cluster",
        "error",
        "an IPAM route on a secondary network overlaps the cluster (pod) or service network, "
        "so traffic to pods or services leaves by the wrong interface",
        "narrow the route's dst so that it does not cover the cluster and service networks",
    ),
    Rule(
        "route-default-conflict",
        "error",
        "a secondary network's IPAM adds a default route while the pod asks for its "
        "default route on another attachment (default-route)",
        "remove the 0.0.0.0/0 (or ::/0) route from the NAD, or ask default-route on this network",
    ),
    Rule(
        "range-overlap",
        "error",
        "host-local ranges of two NADs on the same LAN (same master) overlap; host-local "
        "allocates per node, so two pods get the same address",
        "give each NAD its own range, or use a cluster-wide IPAM such as whereabouts",
    ),
    Rule(
        "ip-claimed-twice",
        "error",
        "the same static IP is requested by two pods (or by a workload with more than one replica)",
        "give each pod its own address, or let IPAM allocate it",
    ),
    Rule(
        "config-invalid",
        "error",
        "the multus configuration (00-multus.conf) or the daemon configuration is invalid",
        "fix the named key; docs/configuration.md lists the valid values",
    ),
    Rule(
        "nad-cache-cold",
        "warning",
        "the admission webhook has not yet listed the NADs, so the pod was checked without "
        "them (NAD references, capabilities and subnets unchecked)",
        "nothing to do; the pod's NADs are checked by the ADD",
    ),
    # -- on a node (lint --node) --------------------------------------------------
    Rule(
        "master-not-found",
        "error",
        "the master (macvlan, ipvlan) or device (host-device) link does not exist on this node",
        "name a link that exists on every node the pod can run on",
    ),
    Rule(
        "master-down",
        "warning",
        "the master or device link exists but is down",
        "bring the link up (ip link set dev NAME up)",
    ),
    Rule(
        "primary-config",
        "info",
        "the primary CNI configuration the cluster network uses on this node",
        "nothing to do; it is shown so that you can see which file that is",
    ),
    Rule(
        "primary-config-not-found",
        "error",
        "no primary CNI configuration for the cluster network on this node",
        "install the cluster's CNI (its file in /etc/cni/net.d), or set clusterNetwork",
    ),
    # -- what the plugins did (after ADD) ----------------------------------------
    Rule(
        "mac-not-applied",
        "error",
        "the interface did not get the requested MAC address",
        "declare the mac capability in the chain (e.g. tuning) or use a plugin that honours it",
    ),
    Rule(
        "ip-not-applied",
        "error",
        "the interface did not get a requested IP address",
        "declare the ips capability in the chain (e.g. static IPAM) or use a plugin that "
        "honours it",
    ),
    Rule(
        "request-unverifiable",
        "warning",
        "the plugin's result does not show the interface, so the request cannot be checked",
        "use a cniVersion of 0.3.0 or later, whose results list interfaces",
    ),
)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    #: Where the value is, e.g. ``networks[1].mac`` or ``nad[ns/name].spec.config``.
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.severity}: {self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


def finding(code: str, path: str, message: str, *, hint: str | None = None) -> Finding:
    """A finding of a registered code; the hint defaults to the rule's fix."""
    rule = RULES[code]
    return Finding(code, rule.severity, path, message, rule.fix if hint is None else hint)


class Findings:
    """A collector that checks append to; iterable and sized like a list."""

    def __init__(self, items: Iterable[Finding] = ()) -> None:
        self._items: list[Finding] = list(items)

    def add(self, code: str, path: str, message: str, *, hint: str | None = None) -> Finding:
        item = finding(code, path, message, hint=hint)
        self._items.append(item)
        return item

    def extend(self, items: Iterable[Finding]) -> None:
        self._items.extend(items)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def as_list(self) -> list[Finding]:
        return list(self._items)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self._items)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def to_cni_error(findings: Iterable[Finding]) -> CNIError | None:
    """The error findings as ONE `CNIError`, or None when there are none.

    The message lists every error with its path, so a user sees all that is
    wrong at once; the details carry the hints.  The code is 7 (invalid
    network configuration) unless every error's rule names the same other
    code (e.g. 1 for an unsupported cniVersion).
    """
    found = errors(findings)
    if not found:
        return None
    codes = {
        RULES[f.code].cni_code if f.code in RULES else Code.INVALID_NETWORK_CONFIG for f in found
    }
    code = codes.pop() if len(codes) == 1 else Code.INVALID_NETWORK_CONFIG
    parts = [f"{f.path}: {f.message}" if f.path else f.message for f in found]
    msg = parts[0] if len(parts) == 1 else f"{len(parts)} errors: " + "; ".join(parts)
    hints = []
    for f in found:
        if f.hint and f.hint not in hints:
            hints.append(f.hint)
    return CNIError(code, msg, "; ".join(hints))
