"""The names users type: Kubernetes object names and Linux interface names.

Each check returns the reason a name is invalid (or None), so that callers
can put it into a finding next to the name; none of them raises.
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253
IFNAME_MAX = 15  # bytes: the kernel's IFNAMSIZ (16) less the terminating NUL

# The kernel's dev_valid_name() refuses '/', ':' and what its isspace() calls
# space: the ASCII blanks and the Latin-1 no-break space, byte 0xa0.
_IFNAME_BAD_BYTES = frozenset(b"/: \t\n\v\f\r\xa0")


def label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace name), or None."""
    if not value:
        return "it is empty"
    if len(value) > LABEL_MAX:
        return f"it is {len(value)} characters long (at most {LABEL_MAX})"
    if not _LABEL.fullmatch(value):
        return (
            "it must consist of lower case alphanumeric characters or '-', "
            "and start and end with an alphanumeric character"
        )
    return None


def subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (an object name such as a NAD's), or None.

    The NPWG spec asks for "units of the DNS-1123 label format": labels
    joined by dots, which is what Kubernetes accepts for object names.
    """
    if not value:
        return "it is empty"
    if len(value) > SUBDOMAIN_MAX:
        return f"it is {len(value)} characters long (at most {SUBDOMAIN_MAX})"
    if not all(_LABEL.fullmatch(part) for part in value.split(".")):
        return (
            "it must consist of lower case alphanumeric characters, '-' or '.', "
            "and start and end with an alphanumeric character"
        )
    return None


def interface_problem(name: str) -> str | None:
    """Why the kernel would refuse ``name`` as an interface name, or None."""
    if not name:
        return "it is empty"
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > IFNAME_MAX:
        return f"it is {len(encoded)} bytes long (at most {IFNAME_MAX})"
    if name in (".", ".."):
        return "it is '.' or '..'"
    if any(b in _IFNAME_BAD_BYTES for b in encoded) or any(c.isspace() for c in name):
        return "it contains '/', ':' or whitespace"
    if "\0" in name:
        return "it contains a NUL character"
    return None


def free_ifname(preferred: str, taken: set[str] | frozenset[str]) -> str:
    """``preferred`` when nobody holds it, else the first ``net<N>`` nobody holds.

    The numbering starts at the number a ``net<N>`` ``preferred`` carries, as
    Multus numbers a pod's networks by position; else at 1.
    """
    if preferred and preferred not in taken:
        return preferred
    digits = preferred.removeprefix("net")
    number = int(digits) if preferred.startswith("net") and digits.isdigit() else 1
    while f"net{number}" in taken:
        number += 1
    return f"net{number}"
