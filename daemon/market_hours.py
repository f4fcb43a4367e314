"""When a market is open: what a feed's data watchdog asks before calling a silence suspicious.

US equities: the regular session, 09:30-16:00 America/New_York, Monday to Friday (exchange
holidays and early closes are not modelled yet: on those days the watchdog may reconnect a feed
that is quiet for good reason, which costs a reconnect, never data). Crypto trades always.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo

__all__ = ["Market", "is_open"]

Market: TypeAlias = Literal["us_equity", "crypto"]

_NEW_YORK = ZoneInfo("America/New_York")
_OPEN, _CLOSE = dt.time(9, 30), dt.time(16, 0)


def is_open(market: Market, now_ns: int) -> bool:
    """Is ``market`` in its regular session at ``now_ns`` (nanoseconds since the epoch, UTC)?"""
    if market == "crypto":
        return True
    local = dt.datetime.fromtimestamp(now_ns / 1e9, tz=_NEW_YORK)
    return local.weekday() < 5 and _OPEN <= local.time() < _CLOSE
