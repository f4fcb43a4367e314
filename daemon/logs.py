"""The one logging set-up: tickd's structlog events and the libraries' stdlib records, one pipeline.

A line is JSON when the stream is not a terminal (the service manager's journal reads stdout) and
structlog's console rendering on a terminal; ``LogConfig.format`` forces either. Every line gets
its level, an ISO UTC timestamp, its ``component`` (the logger's name without ``tickd.``) and,
inside ``structlog.contextvars.bound_contextvars(trace_id=..., span_id=...)``, the trace ids.
The last step before rendering masks secrets: the values given to :func:`configure` (whole, or
any run of 8 of their characters, or bytes in a hex dump, as a library's debug dump cuts a frame
short) and any ``token=``/``apikey=``/``api_key=``/``key=`` in a URL's query, in every string of
the line (nested values and formatted tracebacks included). The libraries' records (alpaca-py,
websockets, urllib3, asyncio) go through the same steps into the same stream.

Modules take their logger at import time (``_log = structlog.get_logger("tickd.feeds")``);
structlog caches what each one assembles on its first use. :func:`configure` may run again (tests,
the demo), so what a cached logger holds never changes identity: the processor list is edited in
place, the wrapped logger looks the stream up when it writes, and the wrapper class gets the new
level's methods. A disabled level stays a no-op method, as structlog's filtering loggers make it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import IO, Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .config import SECRETS, Config, LogConfig

__all__ = ["configure", "redact", "secrets_of"]

MASK: Final = "***"
_MIN_SECRET: Final = 4  # shorter values would mask ordinary words
# Runs this long of a secret are masked too: a library's debug dump cuts a long frame in the
# middle (websockets logs the auth frame as '{"action":"auth",...TSECRET4d8b0f6a2c9e"}', or
# the msgpack one as hex ending in the secret's last 8 bytes).
_FRAGMENT: Final = 8
# A secret in a URL's query: Finnhub's token, NewsAPI's apiKey, a library's request line.
_QUERY_SECRET: Final = re.compile(r"\b((?:token|apikey|api_key|key)=)[^&\s\"']+", re.IGNORECASE)
_PLAIN: Final = (int, float, bool, type(None))  # values that cannot hold a secret
_DEFAULTS: Final = LogConfig()


class _State:
    """What :func:`configure` set last: where lines go, what to mask."""

    stream: IO[str] = sys.stdout
    secrets: re.Pattern[str] | None = None


class _Line:
    """What the renderer's line goes to: named for ``component``, and writing to the stream of
    the latest :func:`configure` (a cached logger keeps this object, not a stream)."""

    def __init__(self, name: str = "tickd") -> None:
        self.name = name

    def msg(self, message: str) -> None:
        stream = _State.stream
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class _Logger(structlog.BoundLoggerBase):
    """The wrapper class every logger has, cached or not: :func:`configure` copies in the
    methods of ``structlog.make_filtering_bound_logger(level)``, so a new level reaches
    loggers assembled before it."""


def _set_level(level: str) -> None:
    for name, method in vars(structlog.make_filtering_bound_logger(level)).items():
        if not name.startswith("__"):
            setattr(_Logger, name, method)


def _add_component(logger: WrappedLogger, _: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")  # a library's stdlib record
    name: str = record.name if record is not None else getattr(logger, "name", "tickd")
    event_dict["component"] = name.removeprefix("tickd.")
    return event_dict


def _secrets_pattern(secrets: set[str]) -> re.Pattern[str] | None:
    """Matches a whole secret, or a run of ``_FRAGMENT`` or more of its characters (then as
    many as belong to a secret), or of its bytes in a hex dump (``53 4b 54 ...``, the msgpack
    auth frame's tail)."""
    if not secrets:
        return None
    hexed = {" ".join(f"{b:02x}" for b in s.encode()) for s in secrets}
    parts = [re.escape(s) for s in sorted(secrets, key=len, reverse=True) if len(s) < _FRAGMENT]
    for forms, size in ((secrets, _FRAGMENT), (hexed, 3 * _FRAGMENT - 1)):
        windows = sorted({s[i : i + size] for s in forms for i in range(len(s) - size + 1)})
        alphabet = re.escape("".join(sorted(set("".join(forms)))))
        if windows:
            parts.append(f"(?:{'|'.join(map(re.escape, windows))})[{alphabet}]*")
    return re.compile("|".join(parts))


def redact(text: str) -> str:
    """``text`` with the registered secrets and URL query secrets masked (error messages,
    anything printed outside the log pipeline)."""
    if _State.secrets is not None:
        text = _State.secrets.sub(MASK, text)
    return _QUERY_SECRET.sub(rf"\1{MASK}", text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    # Anything else is rendered through repr(): an object whose repr holds a secret (a
    # config, an exception) is replaced by its masked repr.
    shown = repr(value)
    masked = redact(shown)
    return value if masked == shown else masked


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {key: _masked(value) for key, value in event_dict.items()}


# syslog priorities for journald's "<N>" line prefix (sd-daemon(3)).
_PRIORITY: Final = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def _to_journal(stream: IO[str]) -> bool:
    """``stream`` is the journal's (systemd sets ``$JOURNAL_STREAM`` to its device:inode)."""
    try:
        device, inode = (int(n) for n in os.environ.get("JOURNAL_STREAM", "").split(":"))
        found = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (found.st_dev, found.st_ino) == (device, inode)


def _with_priority(render: Processor) -> Processor:
    """Lines to the journal start with their syslog priority: journald strips it and files the
    line at that level, so ``journalctl -p warning`` sees tickd's warnings."""

    def prefixed(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        priority = _PRIORITY.get(str(event_dict.get("level", name)), 6)
        line = render(logger, name, event_dict)
        return f"<{priority}>{line if isinstance(line, str) else str(line)}"

    return prefixed


_PROCESSORS: Final[list[Processor]] = []  # edited in place: cached loggers hold this list


def configure(
    settings: LogConfig = _DEFAULTS,
    *,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Send tickd's logs and the libraries' to ``stream`` (default stdout) at
    ``settings.level`` (the libraries at ``settings.libraries``), with ``secrets`` masked.
    Calling it again replaces the whole set-up, for loggers already in use too."""
    stream = sys.stdout if stream is None else stream
    _State.stream = stream
    _State.secrets = _secrets_pattern({s for s in secrets if len(s) >= _MIN_SECRET})
    console = settings.format == "console" or (settings.format == "auto" and stream.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    if _to_journal(stream):
        renderer = _with_priority(renderer)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_component,
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text before the redaction sees them (and the console shows them
        # plain: a pretty one would print local variables, keys included).
        structlog.processors.format_exc_info,
    ]
    _PROCESSORS[:] = [*shared, _redact, renderer]
    _set_level(settings.level)
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=_Logger,
        logger_factory=_Line,
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.libraries.upper())


def secrets_of(config: Config) -> tuple[str, ...]:
    """The secrets ``config`` holds (Alpaca's keys, Finnhub's token, NewsAPI's key), to give
    :func:`configure`."""
    values = (getattr(getattr(config, section), key) for section, key in SECRETS)
    return tuple(v for v in values if v)
