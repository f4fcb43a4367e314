"""Reconnect delays: a short fast phase after a stream that carried data drops, then exponential
with full jitter and a cap, reset only once data flows again.

Most drops of an established stream are blips (a server restart, a load balancer moving us):
the server is back within a second or two, and every second spent waiting is market data
missed and a longer backfill. So the first ``fast_attempts`` retries after data flowed wait only
``fast / 2`` to ``fast`` seconds each (jittered, so that many clients do not line up). Past that,
full jitter (a uniform draw between 0 and the exponential bound) spreads many clients' retries
apart. The fast phase is armed only by :meth:`reset` (data flowed), not by a successful
connect: a server that accepts and then drops us, or refuses us at start-up, is never hammered.
And only once data has flowed for ``fast_after`` seconds since the last failure: a server that
sends a message and then drops us, over and over, gets what is left of one fast phase, then the
exponential backoff, not ten retries a second for ever. And a server that answers but refuses
us (an HTTP 429 or 5xx on the upgrade, a 406) is up and telling us to wait: :meth:`refused`
ends the fast phase, or a 429 storm follows (alpaca-py #740).
"""

from __future__ import annotations

import random
import time

__all__ = ["Backoff"]


class Backoff:
    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 60.0,
        rng: random.Random | None = None,
        *,
        fast: float = 0.0,
        fast_attempts: int = 0,
        fast_after: float = 1.0,
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got {initial} and {cap}")
        if fast < 0 or fast_attempts < 0:
            raise ValueError(f"backoff needs fast >= 0 and fast_attempts >= 0, got {fast}")
        self.initial = initial
        self.cap = cap
        self.fast = min(fast, initial)  # never slower than the exponential phase's start
        self.fast_attempts = fast_attempts if fast > 0 else 0
        self.attempts = 0  # exponential attempts since the last reset
        self.fast_after = fast_after
        self._fast_left = 0  # fast retries left (armed by reset)
        self._flowing_since: float | None = None  # time.monotonic() of the first reset since
        #                                           the last failure
        self._rng = rng or random.Random()

    def next_delay(self, at_least: float = 0.0) -> float:
        """The wait before the next attempt (never less than ``at_least``)."""
        self._flowing_since = None
        if self._fast_left > 0:
            self._fast_left -= 1
            return max(at_least, self._rng.uniform(self.fast / 2, self.fast))
        bound = min(self.cap, self.initial * 2.0 ** min(self.attempts, 64))  # no float overflow
        self.attempts += 1
        return max(at_least, self._rng.uniform(0.0, bound))

    def reset(self) -> None:
        """Data flowed: the next failure starts from the first delay again, after a fast phase
        once data has flowed for ``fast_after`` seconds."""
        self.attempts = 0
        now = time.monotonic()
        if self._flowing_since is None:
            self._flowing_since = now
        if now - self._flowing_since >= self.fast_after:
            self._fast_left = self.fast_attempts

    def refused(self) -> None:
        """The server answered and refused us: no fast retries until data flows again."""
        self._fast_left = 0
        self._flowing_since = None
