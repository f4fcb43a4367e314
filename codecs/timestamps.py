"""RFC 3339 text and msgpack timestamps <-> integer nanoseconds since the epoch (UTC), exactly.

msgspec's own datetime decoding rounds to microseconds (``.999999999Z`` becomes the next second),
so every codec keeps the wire text (or the msgpack extension bytes) and converts it here.
The Python decoding path caches whole seconds (:data:`SECONDS_CACHE`): the
``YYYY-MM-DDTHH:MM:SS`` prefix repeats across a frame, so it is parsed once and only the fraction
per message. The fast path does the same work compiled (:mod:`.fastpath`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "FRACTION_SCALE",
    "NS_PER_SECOND",
    "SECONDS_CACHE",
    "TimestampError",
    "format_rfc3339_ns",
    "msgpack_ext_to_ns",
    "ns_to_msgpack_ext",
    "parse_rfc3339_ns",
]

NS_PER_SECOND: Final = 1_000_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})"
    r"(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
# Multiplier that turns a fraction of n digits into nanoseconds.
FRACTION_SCALE: Final = (0, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2, 10, 1)


class TimestampError(ValueError):
    """A timestamp that is not RFC 3339 / not a msgpack timestamp, or out of range."""


def parse_rfc3339_ns(text: str) -> int:
    """Parse RFC 3339 (``Z`` or a numeric offset, 0-9 fraction digits) to UTC nanoseconds."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimestampError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise TimestampError(f"invalid date or time in {text[:64]!r}: {exc}") from None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    if zulu is None:
        offset_h, offset_m = int(off_h), int(off_m)
        if offset_h > 23 or offset_m > 59:
            raise TimestampError(f"invalid UTC offset in {text[:64]!r}")
        offset = offset_h * 3600 + offset_m * 60
        seconds += -offset if sign == "+" else offset
    nanos = int(fraction) * FRACTION_SCALE[len(fraction)] if fraction else 0
    return _in_range(seconds * NS_PER_SECOND + nanos, text)


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _in_range(ns: int, source: object) -> int:
    """Nanoseconds must fit int64 (years 1677-2262), as numpy's datetime64[ns] does."""
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise TimestampError(f"timestamp outside the int64 nanosecond range: {source!r:.64}")
    return ns


def format_rfc3339_ns(ns: int) -> str:
    """Format UTC nanoseconds the way Alpaca does: ``Z`` suffix, trailing fraction zeros dropped."""
    seconds, nanos = divmod(ns, NS_PER_SECOND)
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise TimestampError(f"timestamp out of range: {ns}") from None
    head = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if len(head) != 19:
        raise TimestampError(f"timestamp out of range: {ns}")
    if nanos == 0:
        return head + "Z"
    return f"{head}.{nanos:09d}".rstrip("0") + "Z"


class _SecondsCache(dict[str, int]):
    """``"YYYY-MM-DDTHH:MM:SS."`` -> epoch nanoseconds of that second, filled on first use."""

    __slots__ = ()
    _LIMIT: Final = 4096

    def __missing__(self, prefix: str) -> int:
        value = parse_rfc3339_ns(prefix[:19] + "Z")
        if len(self) >= self._LIMIT:
            self.clear()
        self[prefix] = value
        return value


SECONDS_CACHE: Final = _SecondsCache()


def msgpack_ext_to_ns(data: bytes) -> int:
    """Decode the payload of a msgpack timestamp extension (type -1) to nanoseconds."""
    size = len(data)
    if size == 8:
        packed = int.from_bytes(data, "big")
        nanos, seconds = packed >> 34, packed & 0x3_FFFF_FFFF
    elif size == 4:
        nanos, seconds = 0, int.from_bytes(data, "big")
    elif size == 12:
        nanos = int.from_bytes(data[:4], "big")
        seconds = int.from_bytes(data[4:], "big", signed=True)
    else:
        raise TimestampError(f"msgpack timestamp payload of {size} bytes (want 4, 8 or 12)")
    if nanos >= NS_PER_SECOND:
        raise TimestampError(f"msgpack timestamp nanoseconds out of range: {nanos}")
    return _in_range(seconds * NS_PER_SECOND + nanos, data.hex())


def ns_to_msgpack_ext(ns: int) -> bytes:
    """Encode nanoseconds as the smallest msgpack timestamp extension payload (spec order)."""
    seconds, nanos = divmod(ns, NS_PER_SECOND)
    if seconds >> 34 == 0:
        if nanos == 0 and seconds >> 32 == 0:
            return seconds.to_bytes(4, "big")
        return ((nanos << 34) | seconds).to_bytes(8, "big")
    try:
        return nanos.to_bytes(4, "big") + seconds.to_bytes(8, "big", signed=True)
    except OverflowError:
        raise TimestampError(f"timestamp out of range for msgpack: {ns}") from None


def datetime_to_ns(moment: datetime) -> int:
    """An aware datetime to nanoseconds (for callers holding datetimes, e.g. alpaca-py models)."""
    if moment.tzinfo is None:
        raise TimestampError("naive datetime: the schema is UTC, pass an aware datetime")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000
