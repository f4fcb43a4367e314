"""Reconnect delays: exponential with full jitter and a cap, reset only once data flows again.

Full jitter (a uniform draw between 0 and the exponential bound) spreads many clients' retries
apart; resetting only after data flows (not on a successful connect) keeps a server that accepts
and then drops us from being hammered at the first delay forever.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(
        self, initial: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got {initial} and {cap}")
        self.initial = initial
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self, at_least: float = 0.0) -> float:
        """The wait before the next attempt (never less than ``at_least``)."""
        bound = min(self.cap, self.initial * 2.0 ** min(self.attempts, 64))  # no float overflow
        self.attempts += 1
        return max(at_least, self._rng.uniform(0.0, bound))

    def reset(self) -> None:
        """Data flowed: the next failure starts from the first delay again."""
        self.attempts = 0
