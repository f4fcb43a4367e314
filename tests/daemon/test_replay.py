"""Replay: tapes of Alpaca stock-stream frames (made from the synthetic market with the real
encoders) through the real codecs, bus, indicator bank, EMA-cross strategy, risk and SimBroker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from tickd.codecs.schema import Bar, News, Trade
from tickd.codecs.synthetic import finnhub_company_news_body, newsapi_body
from tickd.codecs.tape import RotatingTapeWriter, TapeReader, TapeRecord, TapeWriter
from tickd.daemon.clock import LiveClock
from tickd.daemon.config import load
from tickd.daemon.replay import (
    Replayer,
    ReplaySummary,
    TapeDecoders,
    _LiveOrder,
    digest_intents,
    replay,
)

from .tapes import CONFIG, market_events, write_market_tape

pytestmark = pytest.mark.usefixtures("compiled_bank")


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "tickd.toml"
    path.write_text(CONFIG)
    return load(path)


@pytest.fixture(scope="module")
def events() -> list:  # type: ignore[type-arg]
    return market_events(minutes=240)


def run(paths: list[Path], config, **kwargs) -> ReplaySummary:  # type: ignore[no-untyped-def]
    summary: ReplaySummary = anyio.run(lambda: replay(paths, config, **kwargs))
    return summary


def test_the_same_tape_gives_the_same_decisions_byte_for_byte(tmp_path: Path, config, events):  # type: ignore[no-untyped-def]
    tape = tmp_path / "market.tape"
    write_market_tape(tape, events)
    first, second = run([tape], config), run([tape], config)
    assert first.intents > 0 and first.fills > 0
    assert first.digest == second.digest
    assert (first.intents, first.fills, first.pnl, first.positions) == (
        second.intents,
        second.fills,
        second.pnl,
        second.positions,
    )
    wanted = sum(1 for e in events if type(e) in (Bar, Trade))
    assert first.events == wanted
    assert first.control == 2  # "connected", "authenticated": counted, not published
    assert first.decode_errors == 0 and first.ignored_bytes == 0


def test_the_digest_depends_on_the_decisions_not_on_the_encoding(
    tmp_path: Path, config, events
) -> None:  # type: ignore[no-untyped-def]
    """JSON or msgpack frames, compressed or not: the same messages, the same decisions."""
    digests = set()
    for encoding in ("json", "msgpack"):
        for compression in ("none", "zstd"):
            tape = tmp_path / f"{encoding}-{compression}.tape"
            write_market_tape(tape, events, encoding=encoding, compression=compression)
            digests.add(run([tape], config).digest)
    assert len(digests) == 1
    shorter = tmp_path / "shorter.tape"
    write_market_tape(shorter, events[: len(events) // 2])
    assert run([shorter], config).digest not in digests


def test_a_rotated_set_replays_as_one_tape(tmp_path: Path, config, events) -> None:  # type: ignore[no-untyped-def]
    whole = tmp_path / "whole.tape"
    write_market_tape(whole, events)
    rotated = RotatingTapeWriter(tmp_path / "set", created_ns=0, max_bytes=20_000, daily=False)
    for record in TapeReader(whole):
        rotated.write(record.ts_ns, record.source, record.data)
        rotated.flush()
    rotated.close()
    assert len(rotated.paths) > 2
    assert run([tmp_path / "set"], config).digest == run([whole], config).digest


def test_a_torn_tape_replays_up_to_its_last_whole_record(tmp_path: Path, config, events) -> None:  # type: ignore[no-untyped-def]
    tape = tmp_path / "torn.tape"
    write_market_tape(tape, events)
    whole = run([tape], config)
    size = tape.stat().st_size
    os.truncate(tape, size - 500)  # as a kill -9 in the middle of a write leaves it
    torn = run([tape], config)
    assert 0 < torn.ignored_bytes < 500 + 10_000
    assert 0 < torn.events < whole.events
    assert torn.records < whole.records


def test_bad_frames_and_other_sources_are_counted_not_fatal(tmp_path: Path, config, events) -> None:  # type: ignore[no-untyped-def]
    tape = tmp_path / "mixed.tape"
    frames = write_market_tape(tape, events[:2000])
    clean = run([tape], config)
    at = frames[-1][0]
    with TapeWriter(tmp_path / "noise.tape", created_ns=0) as noise:
        noise.write(at, "alpaca.stocks", b'[{"T":"t","S":"AAPL","p":1')  # cut short
        noise.write(at, "alpaca.stocks", b'[{"T":"zz","S":"AAPL"}]')  # an unknown type
        noise.write(at, "alpaca.trade_updates", b'{"stream":"trade_updates","data":{}}')
        noise.write(at, "somebody.else", b"anything")
    summary = run([tape, tmp_path / "noise.tape"], config)
    assert summary.decode_errors == 1
    assert summary.unknown == 1
    assert summary.skipped == {"alpaca.trade_updates": 1, "somebody.else": 1}
    assert summary.digest == clean.digest  # the noise changed no decision
    assert summary.events == clean.events


class _SleepLog(LiveClock):
    """A pacing clock that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await anyio.lowlevel.checkpoint()


def test_a_paced_replay_waits_the_recorded_gaps_divided_by_the_speed(
    tmp_path: Path, config, events
) -> None:  # type: ignore[no-untyped-def]
    tape = tmp_path / "paced.tape"
    write_market_tape(tape, events[:3000])
    records = list(TapeReader(tape))
    span = (records[-1].ts_ns - records[0].ts_ns) / 1e9
    pace = _SleepLog()
    replayer = Replayer([tape], config, speed=10.0, pace_clock=pace)
    summary = anyio.run(replayer.run)
    assert sum(pace.slept) == pytest.approx(span / 10.0)
    assert all(s > 0 for s in pace.slept)
    assert summary.digest == run([tape], config).digest  # pacing changes nothing decided
    with pytest.raises(ValueError, match="speed"):
        Replayer([tape], config, speed=0)


def test_the_report_data_follows_the_replay(tmp_path: Path, config, events) -> None:  # type: ignore[no-untyped-def]
    tape = tmp_path / "report.tape"
    write_market_tape(tape, events)
    replayer = Replayer([tape], config, report=True)
    summary = anyio.run(replayer.run)
    data = replayer.report_data("test")
    assert set(data.symbols) == {"AAPL", "MSFT"}
    bars = sum(1 for e in events if type(e) is Bar)
    assert sum(len(s.close) for s in data.symbols.values()) == bars
    assert len(data.trades) == summary.fills
    assert data.equity and data.equity[-1][0] <= summary.last_ns
    assert data.summary["digest"] == summary.digest
    assert {"decode", "indicators", "strategies", "risk", "broker"} <= set(summary.latency)


def test_no_tape_is_a_clear_error(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="no tape files"):
        Replayer([tmp_path], config)


def _news(i: int, minute: int) -> News:
    at = market_events(1)[0].ts_event + minute * 60 * 10**9
    return News(
        provider="finnhub",
        id=str(1000 + i),
        ts_event=at,
        ts_recv=0,
        ts_updated=at,
        headline=f"Apple story {i}",
        symbols=("AAPL",),
    )


def test_polled_news_is_published_once_and_oldest_first_as_the_poller_does(
    tmp_path: Path, config, events
) -> None:  # type: ignore[no-untyped-def]
    tape = tmp_path / "news.tape"
    frames = write_market_tape(tape, events[:500])
    at = frames[-1][0]
    newest_first = [_news(2, 30), _news(1, 20)]
    with TapeWriter(tmp_path / "polled.tape", created_ns=0) as polled:
        polled.write(at + 1, "finnhub.news", finnhub_company_news_body(newest_first))
        polled.write(at + 2, "finnhub.news", finnhub_company_news_body(newest_first))  # again
        polled.write(at + 3, "newsapi", newsapi_body(newest_first))
    summary = run([tape, tmp_path / "polled.tape"], config)
    plain = run([tape], config)
    assert summary.events == plain.events + 2 + 2  # each source's two items once, not twice
    decoders = TapeDecoders()
    page = decoders.decode(TapeRecord(at, "finnhub.news", finnhub_company_news_body(newest_first)))
    assert page is not None
    fresh = decoders.fresh_news("finnhub.news", page.messages, at)
    assert [n.headline for n in fresh] == ["Apple story 1", "Apple story 2"]  # oldest first
    assert decoders.fresh_news("finnhub.news", page.messages, at) == []


def test_a_gap_fill_is_replayed_before_the_frame_that_revealed_it(tmp_path: Path) -> None:
    def rec(source: str, ts: int) -> TapeRecord:
        return TapeRecord(ts, source, f"{source}@{ts}".encode())

    frame, other, fill, later = (
        rec("alpaca.stocks", 5),
        rec("alpaca.crypto", 6),
        rec("alpaca.stocks.backfill", 5),
        rec("alpaca.stocks", 7),
    )
    assert list(_LiveOrder(iter([frame, other, fill, later]))) == [fill, frame, other, later]
    # A fill with no frame of its own time stays where it is; nothing is lost or doubled.
    lone = rec("alpaca.crypto.backfill", 9)
    assert list(_LiveOrder(iter([frame, lone, later]))) == [frame, lone, later]


def test_empty_and_history_only_tapes(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.tape"
    TapeWriter(empty, created_ns=0).close()
    summary = run([empty], config)
    assert summary.records == 0 and summary.digest == digest_intents(())
    bars = [e for e in market_events(60) if type(e) is Bar][:40]
    body = msgspec.json.encode(
        {"bars": {"AAPL": [_rest_bar(b) for b in bars]}, "next_page_token": None}
    )
    history = tmp_path / "history.tape"
    with TapeWriter(history, created_ns=0) as tape:
        tape.write(bars[-1].ts_event + 1, "alpaca.history.stocks", body)
    replayer = Replayer([history], config)
    summary = anyio.run(replayer.run)
    assert summary.history == 40 and summary.events == 0
    assert summary.latency["indicators"]["n"] >= 1  # the bank took the history


def _rest_bar(bar: Bar) -> dict[str, Any]:
    from tickd.codecs.timestamps import format_rfc3339_ns

    return {
        "t": format_rfc3339_ns(bar.ts_event),
        "o": bar.open,
        "h": bar.high,
        "l": bar.low,
        "c": bar.close,
        "v": bar.volume,
        "n": 1,
        "vw": bar.close,
    }


def test_each_frame_says_its_own_encoding(tmp_path: Path, config, events) -> None:  # type: ignore[no-untyped-def]
    json_tape, mixed = tmp_path / "json.tape", tmp_path / "mixed.tape"
    write_market_tape(json_tape, events[:800])
    write_market_tape(tmp_path / "msgpack.tape", events[:800], encoding="msgpack")
    records = list(TapeReader(json_tape))
    packed = list(TapeReader(tmp_path / "msgpack.tape"))
    with TapeWriter(mixed, created_ns=0) as tape:
        tape.write(records[0].ts_ns, "alpaca.stocks", b"")  # an empty first frame
        for i, (a, b) in enumerate(zip(records, packed, strict=True)):
            chosen = a if i % 2 else b  # alternate JSON and msgpack frames of one source
            tape.write(chosen.ts_ns, chosen.source, chosen.data)
    mixed_summary = run([mixed], config)
    assert mixed_summary.decode_errors == 1  # only the empty frame
    assert mixed_summary.digest == run([json_tape], config).digest


def test_an_actor_crash_is_reported_and_the_replay_goes_on(
    tmp_path: Path, config, events, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from tickd.daemon.indicators import IndicatorActor

    tape = tmp_path / "crash.tape"
    write_market_tape(tape, events[:3000])
    handle, calls = IndicatorActor.handle, 0

    async def crash_once(self: IndicatorActor, batch: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("a bug, once")
        await handle(self, batch)

    monkeypatch.setattr(IndicatorActor, "handle", crash_once)

    async def bounded() -> ReplaySummary:
        with anyio.fail_after(120):  # it used to wait forever for a restart on the tape's clock
            return await Replayer([tape], config).run()

    summary = anyio.run(bounded)
    assert summary.crashes == {"indicators": 1}
    assert summary.lost_in_crashes > 0
    assert summary.events == sum(1 for e in events[:3000] if type(e) in (Bar, Trade))
