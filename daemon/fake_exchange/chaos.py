"""Chaos: the faults the fake exchange can inject, switchable at start and while it runs.

One :class:`Chaos` is shared by the market data streams and the trading API. Its settings are a
frozen :class:`ChaosSettings`; :meth:`Chaos.update` swaps in a changed copy (from the command
line at start, or from ``POST /_chaos`` on the trading port while running), so a fault can be
switched on and off in the middle of a test. The random draws come from one seeded generator:
a chaos run is repeatable.
"""

from __future__ import annotations

import random
import time
from typing import Any, Literal

import msgspec

__all__ = ["BrokenKind", "Chaos", "ChaosSettings", "MalformedKind"]

MalformedKind = Literal["invalid_utf8", "bad_json", "missing_fields", "nan_price", "unknown_type"]
BrokenKind = Literal["reserved_bit", "opcode", "truncated"]


class ChaosSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every fault is off by default (0). Counts are of data messages sent on one connection
    (streams) or of order submissions (trading API)."""

    # Market data and trade_updates streams.
    drop_every: int = 0  # close the connection after every N data messages
    drop_probability: float = 0.0  # ... or with this probability per data message
    stall_after: int = 0  # stop sending (half-open: the socket stays, nothing more comes)
    delay: float = 0.0  # seconds added before each data frame
    garbage_every: int = 0  # every Nth frame is bytes that decode as nothing
    oversized_every: int = 0  # every Nth frame is larger than a client's max frame size
    oversized_bytes: int = 17 * 2**20  # ... this large (tickd's limit is 16 MiB, alpaca-py's 1)
    connect_error: int = 0  # 406 (connection limit), 407 (slow client) or 500 on the next
    #                         connections' handshake, Alpaca's error message then a close
    malformed_every: int = 0  # every Nth frame is a well-formed frame with a bad payload, of
    #                           the kinds below in turn
    malformed_kinds: tuple[MalformedKind, ...] = (
        "invalid_utf8",  # a text frame whose bytes are not UTF-8
        "bad_json",  # a frame that does not parse
        "missing_fields",  # a trade without its price
        "nan_price",  # a trade whose price is NaN
        "unknown_type",  # a message type the codec has never seen
    )
    broken_every: int = 0  # every Nth frame breaks the websocket protocol, of the kinds below in
    #                        turn; the client must close the connection (and reconnect)
    broken_kinds: tuple[BrokenKind, ...] = (
        "reserved_bit",  # a data frame with RSV2 set: no extension defines it (close 1002)
        "opcode",  # a frame of the reserved opcode 0x3 (close 1002)
        "truncated",  # a frame cut short, then the end of the stream (no close frame)
    )
    # Trading API.
    submit_timeout_every: int = 0  # every Nth order submission is accepted but never answered
    submit_fail_every: int = 0  # every Nth order submission answers 500 and is not kept
    submit_fail_kept_every: int = 0  # every Nth answers 500 although the order was kept
    submit_lost_every: int = 0  # every Nth is never answered and not kept (lost on the way)
    submit_throttle_every: int = 0  # every Nth answers 429 (rate limit) and is not kept
    http_error_every: int = 0  # every Nth REST request (any route) answers 500
    # Both: close every connection and refuse new ones for this many seconds (a restart).
    restart_for: float = 0.0
    seed: int = 0


class Chaos:
    """The live settings and the seeded generator every fault draws from."""

    def __init__(self, settings: ChaosSettings | None = None) -> None:
        self.settings = settings or ChaosSettings()
        self.rng = random.Random(self.settings.seed)
        self.injected: dict[str, int] = {}  # fault name -> times injected
        self.restarts = 0  # restarts asked for so far: each server closes its connections
        self._refuse_until = 0.0  # time.monotonic() until which new connections are refused

    def update(self, changes: dict[str, Any]) -> ChaosSettings:
        """Apply a partial change (unknown names or bad values raise ``msgspec.ValidationError``,
        leaving the settings as they were)."""
        merged = msgspec.structs.asdict(self.settings) | changes
        self.settings = msgspec.convert(merged, ChaosSettings)
        if "seed" in changes:
            self.rng = random.Random(self.settings.seed)
        if changes.get("restart_for", 0) > 0:
            self.restart()
        elif "restart_for" in changes:  # switched off: a restart in progress is over
            self._refuse_until = 0.0
        return self.settings

    def restart(self) -> None:
        """Start a restart of ``restart_for`` seconds: every server closes the connections it
        has (it watches :attr:`restarts`) and refuses new ones until :meth:`refusing` is False."""
        self.restarts += 1
        self._refuse_until = time.monotonic() + self.settings.restart_for
        self.count("restart")

    def refusing(self) -> bool:
        """True while a restart is in progress: refuse new connections and requests."""
        return time.monotonic() < self._refuse_until

    def count(self, fault: str) -> None:
        """Record one injection of ``fault`` (shown by ``GET /_chaos``)."""
        self.injected[fault] = self.injected.get(fault, 0) + 1

    def every(self, n: int, counter: int) -> bool:
        """True on every ``n``th count (``counter`` starts at 1); never when ``n`` is 0."""
        return n > 0 and counter % n == 0

    def chance(self, probability: float) -> bool:
        return probability > 0.0 and self.rng.random() < probability
