"""The daemon's logs: one line per event, carrying the request it belongs to.

Many CNI requests run at once on one event loop, so a log line is only
useful with the request it is about: the shim's request ID, the command,
the pod and the container ID ride in a context variable that every task and
thread started for the request inherits, and each line carries them, as
text or (``logJSON``) as one JSON object per line for log collectors.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .config import DaemonConfig

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "multihome_log_context",
    default={},  # noqa: B039 - never mutated, only replaced
)
#: Context keys in the order text lines show them.
_ORDER = ("request", "command", "pod", "container")
_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
}


def bind(**fields: str) -> contextvars.Token[dict[str, str]]:
    """Add fields to the current context (this task and what it starts)."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}}
    return _CONTEXT.set(merged)


@contextmanager
def bound(**fields: str) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context() -> dict[str, str]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Puts the current request's fields on each record, for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.multihome = _CONTEXT.get()
        return True


class TextFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123Z INFO [request=ab12 pod=default/web] message``."""

    def format(self, record: logging.LogRecord) -> str:
        ctx: dict[str, str] = getattr(record, "multihome", {})
        fields = " ".join(f"{k}={ctx[k]}" for k in _ORDER if k in ctx)
        line = f"{_timestamp(record)} {record.levelname} "
        line += f"[{fields}] " if fields else ""
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "multihome", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def configure(config: DaemonConfig) -> None:
    """Set up the root logger from the daemon's configuration (once, at start-up)."""
    formatter: logging.Formatter = JSONFormatter() if config.log_json else TextFormatter()
    handlers: list[logging.Handler] = []
    if config.log_to_stderr or not config.log_file:
        handlers.append(logging.StreamHandler(sys.stderr))
    if config.log_file:
        # Only with a log file: logging.handlers imports pickle, queue and socket.
        from logging.handlers import RotatingFileHandler

        handlers.append(
            RotatingFileHandler(
                config.log_file,
                maxBytes=config.log_max_size * 1024 * 1024,
                backupCount=config.log_max_backups,
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    root.setLevel(_LEVELS[config.log_level])
