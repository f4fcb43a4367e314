"""Replay: tapes of Alpaca stock-stream frames (made from the synthetic market with the real
encoders) through the real codecs, bus, indicator bank, EMA-cross strategy, risk and SimBroker."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from tickd.codecs.schema import Bar, Trade
from tickd.codecs.tape import RotatingTapeWriter, TapeReader, TapeWriter
from tickd.daemon.clock import LiveClock
from tickd.daemon.config import load
from tickd.daemon.replay import Replayer, ReplaySummary, replay

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
