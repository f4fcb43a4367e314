"""The clock the daemon reads: the only difference between a live run and a replay.

Everything that asks for the time or waits (backoff, watchdogs, poll intervals, bar boundaries)
goes through a :class:`Clock`, so a replay or a test can drive time itself: :class:`LiveClock`
reads the system, :class:`ManualClock` moves only when told to and wakes the sleepers whose
deadline it passed, in deadline order.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio

__all__ = ["Clock", "LiveClock", "ManualClock"]


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, nanoseconds since the epoch (UTC): stamps and market hours."""

    def monotonic_ns(self) -> int:
        """A clock that never goes back: deadlines and durations."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class LiveClock:
    """The system's clocks and anyio's sleep."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ManualClock:
    """Time that moves only by :meth:`advance` or :meth:`set`: replays and tests.

    Both readings move together (the monotonic one starts at ``start_ns`` too). A ``sleep`` returns
    once the clock reaches its deadline; ``sleep(0)`` (or less) only yields to other tasks.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._sleepers: list[tuple[int, int, anyio.Event]] = []
        self._order = itertools.count()

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + round(seconds * 1e9)
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), wake))
        await wake.wait()

    def set(self, now_ns: int) -> None:
        """Move to ``now_ns`` (never back) and wake every sleeper whose deadline has come."""
        if now_ns < self._now:
            raise ValueError(f"a clock does not go back: {now_ns} < {self._now}")
        self._now = now_ns
        while self._sleepers and self._sleepers[0][0] <= now_ns:
            heapq.heappop(self._sleepers)[2].set()

    def advance(self, seconds: float) -> None:
        self.set(self._now + round(seconds * 1e9))

    @property
    def next_deadline_ns(self) -> int | None:
        """When the earliest sleeper wakes (None when nobody sleeps): a replay jumps there."""
        return self._sleepers[0][0] if self._sleepers else None
