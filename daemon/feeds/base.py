"""What every feed reports, whatever its transport: gaps, counters, and the error that stops it."""

from __future__ import annotations

from msgspec import Struct

__all__ = ["FeedFatalError", "FeedGap", "FeedStats"]


class FeedGap(Struct, frozen=True, kw_only=True):
    """No data from ``source`` from ``start_ns`` (connection lost) to ``end_ns`` (the first message
    after reconnecting): fetch that span from the REST history."""

    source: str
    start_ns: int
    end_ns: int


class FeedStats(Struct, kw_only=True):
    connects: int = 0
    frames: int = 0
    messages: int = 0  # data messages published
    dropped_frames: int = 0  # the raw queue was full
    decode_errors: int = 0
    protocol_errors: int = 0  # connections closed because the server broke the websocket protocol
    rejected: int = 0
    mismatches: int = 0
    gaps: int = 0
    backfilled: int = 0  # messages fetched to fill gaps
    backfill_failures: int = 0  # fills that raised (logged with their traceback)


class FeedFatalError(Exception):
    """The feed cannot go on: retrying would not help."""

    def __init__(self, source: str, reason: str, code: int = 0) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.code = code
