"""CNI spec versions: which exist, how they compare, what each allows."""

from __future__ import annotations

# Nothing imported at the top: the thin plugin answers VERSION from this module
# alone, in single-digit milliseconds (json, enum and typing would be most of it).

#: Every version of the spec that multihome reads and writes.
ALL: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"


def version_text() -> str:
    """The answer to VERSION (the spec's version-info result), as `json.dumps` writes it."""
    supported = ", ".join(f'"{v}"' for v in ALL)
    return f'{{"cniVersion": "{LATEST}", "supportedVersions": [{supported}]}}'


def parse(version: str) -> tuple[int, int, int]:
    """``"0.3.1"`` -> ``(0, 3, 1)``; anything else is a CNI error naming the value."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        from .errors import CNIError, Code

        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"invalid cniVersion {version!r}: expected a version such as 1.0.0",
            f"supported versions: {', '.join(ALL)}",
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def check_supported(version: str, field: str = "cniVersion") -> str:
    """The version itself when multihome can speak it, else error code 1."""
    parse(version)
    if version not in ALL:
        from .errors import CNIError, Code

        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"unsupported {field} {version!r}",
            f"supported versions: {', '.join(ALL)}",
        )
    return version


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def allows_check(version: str) -> bool:
    """CHECK exists from 0.4.0 on."""
    return at_least(version, "0.4.0")


def allows_gc_status(version: str) -> bool:
    """GC and STATUS exist from 1.1.0 on."""
    return at_least(version, "1.1.0")
