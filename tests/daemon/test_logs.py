"""The one logging set-up (tickd.daemon.logs): JSON lines or console, levels, the libraries'
records in the same stream, trace ids, and secrets masked wherever they appear."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy
from structlog.contextvars import bound_contextvars
from structlog.testing import capture_logs

from tickd.daemon import logs
from tickd.daemon.config import Config, LogConfig

from .feed_kit import QuickClock, Sink
from .finnhub_server import TOKEN, MiniFinnhub
from .test_feed_finnhub import make_feed, send_then_wait, trades

KEY_ID = "PKTESTKEY7f3a9c1e"
SECRET = "sk-secret-5b2d8e0a41"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    """Each test configures the process's logging: afterwards, the state it found (pytest's
    handlers on the root logger, structlog's defaults, no logger cached with this test's set-up)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for proxy in gc.get_objects():
        if type(proxy) is BoundLoggerLazyProxy:
            proxy.__dict__.pop("bind", None)  # structlog's cache of the assembled logger


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_timestamp_level_component_and_event() -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    structlog.get_logger("tickd.broker").info("order_sent", symbol="AAPL", qty=10)
    (line,) = lines(out)
    assert line.keys() == {"timestamp", "level", "component", "event", "symbol", "qty"}
    assert line["event"] == "order_sent" and line["level"] == "info"
    assert line["component"] == "broker" and (line["symbol"], line["qty"]) == ("AAPL", 10)
    assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"  # ISO, UTC


def test_a_terminal_gets_console_lines_and_format_forces_either() -> None:
    tty = Tty()
    logs.configure(stream=tty)
    structlog.get_logger("tickd.risk").warning("risk_halted", reason="loss")
    text = tty.getvalue()
    assert "risk_halted" in text and "reason" in text and not text.startswith("{")

    forced = Tty()
    logs.configure(LogConfig(format="json"), stream=forced)
    structlog.get_logger("tickd.risk").warning("risk_halted")
    assert lines(forced)[0]["event"] == "risk_halted"

    piped = io.StringIO()
    logs.configure(LogConfig(format="console"), stream=piped)
    structlog.get_logger("tickd.risk").warning("risk_halted")
    assert "risk_halted" in piped.getvalue() and not piped.getvalue().startswith("{")


def test_a_disabled_level_produces_nothing() -> None:
    out = io.StringIO()
    logs.configure(LogConfig(level="warning"), stream=out)
    log = structlog.get_logger("tickd.feeds")
    log.debug("feed_frame")
    log.info("feed_ready")
    log.warning("feed_gap")
    assert [line["event"] for line in lines(out)] == ["feed_gap"]
    assert not log.is_enabled_for(logging.INFO)


def test_the_libraries_stdlib_records_are_json_lines_in_the_same_stream() -> None:
    out = io.StringIO()
    logs.configure(stream=out)  # the libraries at warning (the default)
    structlog.get_logger("tickd.feeds").info("feed_ready")
    library = logging.getLogger("websockets.client")
    library.info("connection open")  # below the libraries' level
    library.warning("closing %s", "abnormally")
    first, second = lines(out)
    assert first["event"] == "feed_ready"
    assert second["event"] == "closing abnormally" and second["level"] == "warning"
    assert second["component"] == "websockets.client" and "timestamp" in second
    assert len(logging.getLogger().handlers) == 1


def test_a_line_inside_a_traced_stage_carries_its_trace_and_span_ids() -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    log = structlog.get_logger("tickd.strategies")
    with bound_contextvars(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7"):
        log.info("intent")
        logging.getLogger("alpaca").warning("slow response")
    log.info("after")
    inside, library, after = lines(out)
    for line in (inside, library):
        assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert line["span_id"] == "00f067aa0ba902b7"
    assert "trace_id" not in after and "span_id" not in after


def test_secrets_are_masked_in_the_message_nested_values_exceptions_and_library_records() -> None:
    out = io.StringIO()
    logs.configure(stream=out, secrets=(KEY_ID, SECRET, "abc"))
    log = structlog.get_logger("tickd.broker")
    log.info(f"auth with {KEY_ID}", headers={"APCA-API-KEY-ID": KEY_ID, "list": [("x", SECRET)]})
    try:
        raise PermissionError(f"refused key {KEY_ID}")
    except PermissionError:
        log.exception("submit_failed")
    log.error("submit_failed", error=PermissionError(SECRET))  # rendered through repr()
    logging.getLogger("urllib3").warning("GET /v2/orders?key=%s", SECRET)
    log.warning("polled", url="https://newsapi.org/v2/everything?q=AAPL&apiKey=unregistered1")
    log.info("abc stays")  # shorter than 4: a word, not a secret
    text = out.getvalue()
    assert KEY_ID not in text and SECRET not in text and "unregistered1" not in text
    message, exception, error, library, polled, short = lines(out)
    assert message["event"] == "auth with ***"
    assert message["headers"] == {"APCA-API-KEY-ID": "***", "list": [["x", "***"]]}
    assert "PermissionError: refused key ***" in exception["exception"]
    assert error["error"] == "PermissionError('***')"
    assert library["event"] == "GET /v2/orders?key=***"
    assert polled["url"] == "https://newsapi.org/v2/everything?q=AAPL&apiKey=***"
    assert short["event"] == "abc stays"


def test_a_secret_cut_short_by_a_library_dump_is_masked_too() -> None:
    out = io.StringIO()
    logs.configure(LogConfig(libraries="debug"), stream=out, secrets=(KEY_ID, SECRET))
    library = logging.getLogger("websockets.client")
    # What websockets logs at DEBUG for the auth frames it sends, JSON and msgpack.
    library.debug('> TEXT \'{"action":"auth","key":"%s","s...%s"}\'', KEY_ID, SECRET[4:])
    tail = " ".join(f"{b:02x}" for b in SECRET[-8:].encode())
    library.debug(
        "> BINARY 83 a6 61 63 74 69 6f 6e a4 61 75 74 68 a3 6b 65 ... %s [69 bytes]", tail
    )
    text, binary = (line["event"] for line in lines(out))
    assert text == """> TEXT '{"action":"auth","key":"***","s...***"}'"""
    assert tail not in binary and binary.endswith("***[69 bytes]")


def test_redact_masks_what_is_printed_outside_the_pipeline() -> None:
    logs.configure(stream=io.StringIO(), secrets=(KEY_ID,))
    assert logs.redact(f"tickd: alpaca.stocks: auth failed for {KEY_ID}") == (
        "tickd: alpaca.stocks: auth failed for ***"
    )
    assert logs.redact("wss://ws.finnhub.io/?token=xyz") == "wss://ws.finnhub.io/?token=***"


def test_the_secrets_of_a_config_are_the_set_ones() -> None:
    raw = {"alpaca": {"key_id": KEY_ID, "secret_key": SECRET}, "finnhub": {"token": "fh-token-1"}}
    assert logs.secrets_of(msgspec.convert(raw, Config)) == (KEY_ID, SECRET, "fh-token-1")
    assert logs.secrets_of(Config()) == ()


def test_configure_again_reaches_loggers_cached_under_the_first() -> None:
    log = structlog.get_logger("tickd.feeds")  # as modules do, at import time
    first = io.StringIO()
    logs.configure(LogConfig(level="warning"), stream=first)
    log.warning("one")  # assembles and caches this proxy's logger
    bound = log.bind(source="alpaca.stocks")  # a logger bound from it, held on to
    second = io.StringIO()
    logs.configure(LogConfig(level="debug"), stream=second, secrets=(SECRET,))
    log.debug(f"two {SECRET}")
    bound.info("three")
    assert [line["event"] for line in lines(first)] == ["one"]
    assert [line["event"] for line in lines(second)] == ["two ***", "three"]
    assert lines(second)[1]["source"] == "alpaca.stocks"
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("asyncio").error("once")
    assert lines(second)[-1]["event"] == "once" and "once" not in first.getvalue()


def test_capture_logs_still_sees_cached_loggers() -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    log = structlog.get_logger("tickd.app")
    log.info("cached")
    with capture_logs() as captured:
        log.info("daemon_ready")
    assert captured == [{"event": "daemon_ready", "log_level": "info"}]
    assert [line["event"] for line in lines(out)] == ["cached"]


@pytest.mark.anyio
async def test_the_websockets_request_line_keeps_no_token() -> None:
    """At DEBUG the library logs ``> GET /?token=... HTTP/1.1`` for Finnhub's socket."""
    out = io.StringIO()
    logs.configure(LogConfig(libraries="debug"), stream=out)  # no secret given: the URL rule
    server = MiniFinnhub([send_then_wait(trades(1))])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    events = [line["event"] for line in lines(out)]
    assert "> GET /?token=*** HTTP/1.1" in events
    assert TOKEN not in out.getvalue()


def test_lines_to_the_journal_start_with_their_syslog_priority(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal"
    with path.open("w", encoding="utf-8") as stream:
        found = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{found.st_dev}:{found.st_ino}")
        logs.configure(stream=stream)
        structlog.get_logger("tickd.risk").warning("risk_state_changed", state="halted")
        logging.getLogger("websockets.client").error("connection lost")
        structlog.get_logger("tickd.app").info("daemon_ready")
    warning, error, info = path.read_text(encoding="utf-8").splitlines()
    assert warning.startswith("<4>{") and json.loads(warning[3:])["state"] == "halted"
    assert error.startswith("<3>{") and info.startswith("<6>{")
    # Another stream (a terminal, a pipe, a file) gets no prefix: $JOURNAL_STREAM names one.
    out = io.StringIO()
    logs.configure(stream=out)
    structlog.get_logger("tickd.app").info("daemon_ready")
    assert out.getvalue().startswith("{")
