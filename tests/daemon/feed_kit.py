"""What the feed and poller tests share: a clock that cuts long waits short, and a sink."""

from __future__ import annotations

from typing import Any

import anyio

from tickd.daemon.clock import LiveClock


class QuickClock(LiveClock):
    """Real time, but waits longer than ``cut`` seconds are recorded and cut short (backoff,
    the reap window, poll intervals)."""

    cut = 0.05

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        if seconds > 0.05:
            self.waits.append(seconds)
        await anyio.sleep(min(seconds, self.cut))


class Sink:
    """A publish callback that keeps what it gets, as events and as the batches they came in."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.batches: list[list[Any]] = []
        self.arrived = anyio.Event()
        self.wanted = 0

    async def publish(self, messages: list[Any]) -> None:
        self.batches.append(messages)
        self.events += messages
        if len(self.events) >= self.wanted:
            self.arrived.set()

    async def wait_for(self, count: int) -> None:
        self.wanted = count
        if len(self.events) >= count:
            return
        self.arrived = anyio.Event()
        with anyio.fail_after(5):
            await self.arrived.wait()
