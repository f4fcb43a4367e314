"""A token bucket for a venue's request budget (Alpaca: 200 requests a minute per account).

Written as GCRA (the generic cell rate algorithm): one integer, the time the bucket will be full
again, replaces a float token count. Each :meth:`TokenBucket.acquire` reserves its slot before
it waits, so concurrent callers queue in arrival order without a lock, and the arithmetic is in
integer nanoseconds of the daemon's :class:`~tickd.daemon.clock.Clock`, so a test or a replay
drives it with a :class:`~tickd.daemon.clock.ManualClock`. No library in the lock file does this
(and none would take our clock).
"""

from __future__ import annotations

from collections.abc import Callable

from tickd.daemon.clock import Clock, LiveClock

__all__ = ["TokenBucket"]

_NS_PER_MINUTE = 60_000_000_000
_POLL = 0.05  # seconds between two looks at a waiting caller's give_up


class TokenBucket:
    """``rate_per_minute`` requests a minute on average, up to ``burst`` at once after a quiet
    spell. Any 60 s window then sees at most ``rate_per_minute + burst`` requests, so the default
    burst is a twentieth of the rate (10 of Alpaca's 200): a minute's worth would allow twice
    the venue's limit in one window."""

    def __init__(
        self, rate_per_minute: float, burst: int | None = None, clock: Clock | None = None
    ) -> None:
        if not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        burst = max(1, int(rate_per_minute) // 20) if burst is None else burst
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self._clock = clock or LiveClock()
        self._interval_ns = round(_NS_PER_MINUTE / rate_per_minute)
        self._full_at_ns = self._clock.monotonic_ns()  # the bucket is full from this time on

    async def acquire(self, give_up: Callable[[], bool] | None = None) -> float | None:
        """Take one token, waiting for it if the bucket is empty; returns the seconds waited
        (0.0 when a token was there). A caller cancelled while it waits loses its slot. With
        ``give_up``, asked every ``_POLL`` seconds of the wait: True hands the slot back (the
        request will not be made) and returns None."""
        now = self._clock.monotonic_ns()
        full_at = max(self._full_at_ns, now)
        self._full_at_ns = full_at + self._interval_ns
        wait_ns = full_at + self._interval_ns - self.burst * self._interval_ns - now
        if wait_ns <= 0:
            return 0.0
        if give_up is None:
            await self._clock.sleep(wait_ns / 1e9)
            return wait_ns / 1e9
        until = now + wait_ns
        while (left := until - self._clock.monotonic_ns()) > 0:
            if give_up():
                self._full_at_ns -= self._interval_ns  # unused: the next caller may have it
                return None
            await self._clock.sleep(min(left / 1e9, _POLL))
        return wait_ns / 1e9
