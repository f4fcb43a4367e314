"""The recorder: every feed's raw frames, before decoding, appended to a tape.

Each feed has a ``tap`` that the recorder sets: the feed calls it with (receive time, source, raw
bytes) for every websocket frame or HTTP body, before the codec sees it, so a tape holds what
the venue sent, bad frames included, and a replay goes through the same decoding as live. The tap
only appends to the writer's memory buffer; the recorder's task puts the buffer on disk every
``flush_interval`` (what a ``kill -9`` can lose), from a worker thread so a slow disk never holds
up the event loop, and once more when it stops. A failing disk (a full one) is logged and
counted; the records stay buffered and the next flush tries again, and the backlog is logged
while it grows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import anyio
import structlog
from anyio.abc import TaskStatus

from tickd.codecs.tape import TAPE_SUFFIX, RotatingTapeWriter, TapeWriter

from .clock import Clock, LiveClock
from .feeds.polling import NewsPoller
from .feeds.websocket import WebsocketFeed

__all__ = ["Recorder"]

_log = structlog.get_logger("tickd.recorder")


class Recorder:
    def __init__(
        self,
        out: str | Path,
        *,
        compression: Literal["none", "zstd"] = "zstd",
        max_bytes: int = 256 * 2**20,
        daily: bool = True,
        flush_interval: float = 0.2,
        meta: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``out`` ending in ``.tape`` is one file; anything else is a directory of files
        rotated by size and UTC day."""
        self._clock: Clock = clock or LiveClock()
        self.flush_interval = flush_interval
        created = self._clock.now_ns()
        path = self._out = Path(out)
        self.writer: TapeWriter | RotatingTapeWriter
        if path.suffix == TAPE_SUFFIX:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = TapeWriter(
                path, created_ns=created, compression=compression, meta=dict(meta or {})
            )
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.writer = RotatingTapeWriter(
                path,
                created_ns=created,
                compression=compression,
                meta=dict(meta or {}),
                max_bytes=max_bytes,
                daily=daily,
            )
        self.frames: Counter[str] = Counter()  # records per source
        self.flush_errors = 0
        self.backlog_warned = 0  # bytes of backlog last warned about

    def attach(self, feed: WebsocketFeed | NewsPoller) -> None:
        feed.tap = self.write

    def write(self, ts_ns: int, source: str, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(ts_ns, source, data)
        self.frames[source] += 1

    def paths(self) -> list[Path]:
        writer = self.writer
        return list(writer.paths) if isinstance(writer, RotatingTapeWriter) else [writer.path]

    def flush(self) -> None:
        """Put what is buffered on disk (the writer may be written to meanwhile)."""
        try:
            self.writer.flush()
        except OSError as exc:  # a full disk: keep the buffer, try again next time
            self.flush_errors += 1
            backlog = self.writer.buffered_bytes
            _log.error(
                "tape_flush_failed", error=str(exc), errors=self.flush_errors, backlog=backlog
            )
            if backlog >= 2 * max(self.backlog_warned, 2**20):
                self.backlog_warned = backlog
                _log.warning("tape_backlog_growing", backlog=backlog)
        else:
            self.backlog_warned = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        _log.info("recording", to=str(self._out))
        task_status.started()
        try:
            while True:
                await self._clock.sleep(self.flush_interval)
                await anyio.to_thread.run_sync(self.flush)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.flush)
                try:
                    self.writer.close()
                except OSError as exc:
                    self.flush_errors += 1
                    _log.error("tape_close_failed", error=str(exc))
                _log.info("recording_stopped", frames=dict(self.frames))
