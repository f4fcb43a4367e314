"""Compiled kernels that rewrite a frame's timestamps so msgspec decodes them natively.

msgspec decodes integers natively but timestamps only into microsecond ``datetime``s, and a Python
step per message (parse the text, set the field) costs as much as decoding the message itself. So
one compiled call per frame rewrites, in place and at equal length, each message's
``"t":"2023-04-06T11:54:26.838232225Z"`` into ``"t":1680782066838232225`` padded with spaces (JSON
allows them), and msgspec then decodes straight into the public structs.

The kernels only rewrite what they are sure of: a key ``t`` (``{"t":"`` or ``,"t":"``; inside a
JSON string a quote is escaped, so these bytes occur only at structural positions) holding a
well-formed UTC timestamp. Anything else is left alone, msgspec then refuses the frame (text where
an integer belongs) and the caller takes the careful per-message path that reports typed errors.
So the kernels can make decoding faster, never different.
"""

from __future__ import annotations

from numba import njit

__all__ = ["rewrite_json_times"]

_QUOTE, _COLON, _COMMA, _LBRACE, _SPACE, _T = 34, 58, 44, 123, 32, 116


@njit(cache=True, nogil=True)
def _digits(src, start: int, count: int) -> int:  # type: ignore[no-untyped-def]
    value = 0
    for k in range(start, start + count):
        d = src[k] - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@njit(cache=True, nogil=True)
def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(cache=True, nogil=True)
def _parse_utc(src, start: int, end: int) -> int:  # type: ignore[no-untyped-def]
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` in src[start:end] -> ns, or -1 if not exactly that."""
    n = end - start
    if n < 20 or n > 30 or src[end - 1] != 90:  # 'Z'
        return -1
    if (
        src[start + 4] != 45
        or src[start + 7] != 45
        or src[start + 10] != 84
        or src[start + 13] != 58
        or src[start + 16] != 58
    ):
        return -1
    year = _digits(src, start, 4)
    month = _digits(src, start + 5, 2)
    day = _digits(src, start + 8, 2)
    hour = _digits(src, start + 11, 2)
    minute = _digits(src, start + 14, 2)
    second = _digits(src, start + 17, 2)
    if year < 1970 or year > 2261 or month < 1 or month > 12 or day < 1:
        return -1
    if day > _days_in_month(year, month) or hour > 23 or minute > 59 or second > 59:
        return -1
    nanos = 0
    if n > 20:
        if src[start + 19] != 46 or n == 21:  # '.' and at least one digit
            return -1
        count = n - 21
        nanos = _digits(src, start + 20, count)
        if nanos < 0:
            return -1
        for _ in range(9 - count):
            nanos *= 10
    days = _days_from_civil(year, month, day)
    return ((days * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000_000) + nanos


@njit(cache=True, nogil=True)
def _write_int(out, pos: int, value: int) -> int:  # type: ignore[no-untyped-def]
    """Write a non-negative int as ASCII at out[pos:], return the new position."""
    width = 1
    bound = 10
    while width < 19 and value >= bound:
        width += 1
        bound *= 10
    k = pos + width - 1
    while k >= pos:
        quotient = value // 10
        out[k] = 48 + (value - quotient * 10)
        value = quotient
        k -= 1
    return pos + width


@njit(cache=True, nogil=True)
def rewrite_json_times(buf) -> int:  # type: ignore[no-untyped-def]
    """Rewrite ``"t":"<RFC 3339 UTC>"`` keys to integer nanoseconds in place; return the count.

    ``buf`` is a bytearray (or writable uint8 array). The scan looks for the letter ``t`` first:
    it is rare in market data, so the loop runs one predictable comparison per byte.
    """
    n = len(buf)
    rewritten = 0
    i = 2
    while i < n - 4:
        if buf[i] != _T:
            i += 1
            continue
        if (
            buf[i - 1] != _QUOTE
            or buf[i + 1] != _QUOTE
            or buf[i + 2] != _COLON
            or buf[i + 3] != _QUOTE
            or (buf[i - 2] != _LBRACE and buf[i - 2] != _COMMA)
        ):
            i += 1
            continue
        start = i + 4
        close = start
        limit = min(n, start + 31)
        while close < limit and buf[close] != _QUOTE:
            close += 1
        if close < limit:
            ns = _parse_utc(buf, start, close)
            if ns >= 0:
                end = _write_int(buf, start - 1, ns)
                for k in range(end, close + 1):
                    buf[k] = _SPACE
                rewritten += 1
                i = close + 1
                continue
        i += 1
    return rewritten
