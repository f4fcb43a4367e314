"""The recorder: what the feeds tap goes to a tape file (or a rotated set), flushed while it runs
and once more when it stops; a failing disk is counted and retried without losing a record."""

from __future__ import annotations

import errno
from pathlib import Path

import anyio
import msgspec
import pytest

from tickd.codecs.tape import TapeReader, open_tapes
from tickd.daemon.app import App
from tickd.daemon.config import Config
from tickd.daemon.recorder import Recorder

pytestmark = pytest.mark.anyio


def frames(n: int, size: int = 100) -> list[tuple[int, str, bytes]]:
    sources = ("alpaca.stocks", "alpaca.news", "finnhub.trades")
    return [(1_700_000_000 * 10**9 + i, sources[i % 3], bytes([i % 251]) * size) for i in range(n)]


async def test_a_running_recorder_flushes_on_its_interval_and_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "live.tape"
    recorder = Recorder(path, compression="zstd", flush_interval=0.01, meta={"who": "test"})
    written = frames(300)
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run)
        for ts, source, data in written[:200]:
            recorder.write(ts, source, data)
        with anyio.fail_after(30):  # on disk while still running, within a few intervals
            while path.stat().st_size < 1000 or len(list(TapeReader(path))) < 200:
                await anyio.sleep(0.01)
        for ts, source, data in written[200:]:
            recorder.write(ts, source, data)
        tg.cancel_scope.cancel()  # the last 100 are written by the flush at stop
    reader = TapeReader(path)
    assert [(r.ts_ns, r.source, r.data) for r in reader] == written
    assert reader.ignored_bytes == 0 and reader.header.meta == {"who": "test"}
    assert recorder.frames == {"alpaca.stocks": 100, "alpaca.news": 100, "finnhub.trades": 100}
    assert recorder.paths() == [path]


async def test_a_directory_is_a_set_rotated_by_size(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "tapes", compression="none", max_bytes=5_000)
    written = frames(200)
    for i, (ts, source, data) in enumerate(written):
        recorder.write(ts, source, data)
        if i % 10 == 9:
            recorder.flush()
    recorder.writer.close()
    assert len(recorder.paths()) > 3
    assert [(r.ts_ns, r.source, r.data) for r in open_tapes(recorder.paths())] == written


async def test_a_failing_disk_is_counted_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.tape"
    recorder = Recorder(path, compression="none")
    written = frames(50, size=50_000)
    for ts, source, data in written[:25]:
        recorder.write(ts, source, data)
    real_flush = recorder.writer.flush
    calls = 0

    def full_disk(fsync: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush(fsync)

    monkeypatch.setattr(recorder.writer, "flush", full_disk)
    recorder.flush()  # fails: counted, the records stay buffered
    assert recorder.flush_errors == 1
    assert recorder.writer.buffered_bytes > 25 * 50_000
    for ts, source, data in written[25:]:
        recorder.write(ts, source, data)
    recorder.flush()  # the disk has room again: everything, in order
    recorder.writer.close()
    assert [(r.ts_ns, r.source, r.data) for r in TapeReader(path)] == written


def test_the_app_taps_every_feed_when_recording_is_on(tmp_path: Path) -> None:
    config = msgspec.convert(
        {
            "state_dir": str(tmp_path / "state"),
            "alpaca": {"key_id": "k", "secret_key": "s", "news": True, "trade_updates": True},
            "symbols": {"stocks": ["AAPL"], "crypto": ["BTC/USD"]},
            "record": {"enabled": True},
        },
        Config,
    )
    app = App(config)
    assert app.recorder is not None and len(app.feeds) == 4
    assert all(feed.tap == app.recorder.write for feed in app.feeds)
    assert app.recorder.paths() == []  # a rotated set: files appear with the first flush
    assert (tmp_path / "state" / "tapes").is_dir()
    off = App(
        msgspec.structs.replace(
            config, record=msgspec.structs.replace(config.record, enabled=False)
        )
    )
    assert off.recorder is None and all(feed.tap is None for feed in off.feeds)
