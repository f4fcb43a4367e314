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
def _is_space(c: int) -> bool:
    return c == 32 or c == 10 or c == 13 or c == 9


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
    if day > _days_in_month(year, month) or not (0 <= hour <= 23 and 0 <= minute <= 59):
        return -1
    if not 0 <= second <= 59:  # _digits gives -1 for a non-digit
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
    """Rewrite ``"t":"<RFC 3339 UTC>"`` keys to integer nanoseconds in place; return the count,
    or -1 when some key ``t`` is in another form (spaces, a number, a bad timestamp).

    ``buf`` is a bytearray (or writable uint8 array) without escapes: the caller sends frames
    holding a backslash the careful way (an escaped key can spell ``t`` unseen). The scan looks
    for the letter ``t`` first: it is rare in market data, so most of the frame is skipped eight
    bytes at a time.
    """
    n = len(buf)
    rewritten = 0
    i = 2
    end = n - 4  # room for the rest of ``"t":"``
    while i < end:
        # Eight bytes at a time while none is a 't': the common case, and branch-predictable.
        while (
            i + 8 <= end
            and buf[i] != _T
            and buf[i + 1] != _T
            and buf[i + 2] != _T
            and buf[i + 3] != _T
            and buf[i + 4] != _T
            and buf[i + 5] != _T
            and buf[i + 6] != _T
            and buf[i + 7] != _T
        ):
            i += 8
        if buf[i] != _T or buf[i - 1] != _QUOTE or buf[i + 1] != _QUOTE:
            i += 1
            continue
        # A string "t": is it a key (a ``{`` or ``,`` before it, a ``:`` after, spaces allowed)?
        back = i - 2
        while back > 0 and _is_space(buf[back]):
            back -= 1
        ahead = i + 2
        while ahead < n and _is_space(buf[ahead]):
            ahead += 1
        if (buf[back] != _LBRACE and buf[back] != _COMMA) or ahead >= n or buf[ahead] != _COLON:
            i += 1  # a value such as the trade tag "T":"t"
            continue
        # Every key "t" must be the plain form with a well-formed timestamp, or the frame goes the
        # careful way: otherwise a number the wire put there would pass as nanoseconds.
        if back != i - 2 or ahead != i + 2 or buf[i + 3] != _QUOTE:
            return -1
        start = i + 4
        close = start
        limit = min(n, start + 31)
        while close < limit and buf[close] != _QUOTE:
            close += 1
        if close < limit:
            ns = _parse_utc(buf, start, close)
            if ns >= 0:
                digits_end = _write_int(buf, start - 1, ns)
                for k in range(digits_end, close + 1):
                    buf[k] = _SPACE
                rewritten += 1
                i = close + 1
                continue
        return -1
    return rewritten


@njit(cache=True, nogil=True)
def _skip(buf, pos: int, n: int) -> int:  # type: ignore[no-untyped-def]
    """Skip one msgpack value (containers included) starting at ``pos``; -1 if truncated/bad."""
    remaining = 1
    while remaining > 0:
        if pos >= n:
            return -1
        b = buf[pos]
        remaining -= 1
        if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
            pos += 1
        elif b <= 0x8F:
            remaining += 2 * (b & 0x0F)
            pos += 1
        elif b <= 0x9F:
            remaining += b & 0x0F
            pos += 1
        elif b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b == 0xCC or b == 0xD0:
            pos += 2
        elif b == 0xCD or b == 0xD1:
            pos += 3
        elif b == 0xCE or b == 0xD2 or b == 0xCA:
            pos += 5
        elif b == 0xCF or b == 0xD3 or b == 0xCB:
            pos += 9
        elif b == 0xD4:
            pos += 3
        elif b == 0xD5:
            pos += 4
        elif b == 0xD6:
            pos += 6
        elif b == 0xD7:
            pos += 10
        elif b == 0xD8:
            pos += 18
        elif b == 0xC4 or b == 0xD9:
            if pos + 1 >= n:
                return -1
            pos += 2 + buf[pos + 1]
        elif b == 0xC5 or b == 0xDA:
            if pos + 2 >= n:
                return -1
            pos += 3 + (buf[pos + 1] << 8 | buf[pos + 2])
        elif b == 0xC7:
            if pos + 1 >= n:
                return -1
            pos += 3 + buf[pos + 1]
        elif b == 0xC8:
            if pos + 2 >= n:
                return -1
            pos += 4 + (buf[pos + 1] << 8 | buf[pos + 2])
        elif b == 0xDC or b == 0xDE:
            if pos + 2 >= n:
                return -1
            count = buf[pos + 1] << 8 | buf[pos + 2]
            remaining += count if b == 0xDC else 2 * count
            pos += 3
        else:  # 32-bit lengths/counts (C6, C9, DB, DD, DF) never occur in a market-data frame
            return -1
    return pos if pos <= n else -1


@njit(cache=True, nogil=True)
def _is_t_key(buf, pos: int, n: int) -> bool:  # type: ignore[no-untyped-def]
    """Is the string at ``pos`` the one-letter ``t``, in any of msgpack's str encodings?"""
    b = buf[pos]
    if b == 0xA1:
        return pos + 1 < n and buf[pos + 1] == _T
    if b == 0xD9:
        return pos + 2 < n and buf[pos + 1] == 1 and buf[pos + 2] == _T
    if b == 0xDA:
        return pos + 3 < n and buf[pos + 1] == 0 and buf[pos + 2] == 1 and buf[pos + 3] == _T
    if b == 0xDB:
        return (
            pos + 5 < n
            and buf[pos + 1] == 0
            and buf[pos + 2] == 0
            and buf[pos + 3] == 0
            and buf[pos + 4] == 1
            and buf[pos + 5] == _T
        )
    return False


@njit(cache=True, nogil=True)
def rewrite_msgpack_times(buf) -> int:  # type: ignore[no-untyped-def]
    """In a msgpack array of maps, rewrite each map's ``"t"`` timestamp (fixext8, type -1) into an
    int64 of nanoseconds, in place and at equal length: ``a1 74 d7 ff <8>`` becomes
    ``d9 01 74 d3 <8>`` (the key as str8 takes the byte the int64 marker needs). Returns the
    number rewritten, or -1 when the frame is not an array of maps as expected or some key ``t``
    holds anything else (the 4- and 12-byte forms, another type)."""
    n = len(buf)
    if n == 0:
        return -1
    b = buf[0]
    if 0x90 <= b <= 0x9F:
        items = b & 0x0F
        pos = 1
    elif b == 0xDC and n >= 3:
        items = buf[1] << 8 | buf[2]
        pos = 3
    else:
        return -1
    rewritten = 0
    for _ in range(items):
        if pos >= n:
            return -1
        b = buf[pos]
        if 0x80 <= b <= 0x8F:
            pairs = b & 0x0F
            pos += 1
        elif b == 0xDE and pos + 2 < n:
            pairs = buf[pos + 1] << 8 | buf[pos + 2]
            pos += 3
        else:
            pos = _skip(buf, pos, n)
            if pos < 0:
                return -1
            continue
        for _ in range(pairs):
            if pos >= n:
                return -1
            if _is_t_key(buf, pos, n):
                # Every key "t" must hold the 8-byte timestamp form, or the frame goes the careful
                # way: otherwise an integer the wire put there would pass as nanoseconds.
                if not (
                    pos + 11 < n
                    and buf[pos] == 0xA1
                    and buf[pos + 2] == 0xD7
                    and buf[pos + 3] == 0xFF
                ):
                    return -1
                packed = 0
                for k in range(pos + 4, pos + 12):
                    packed = packed << 8 | buf[k]
                nanos = (packed >> 34) & 0x3FFFFFFF
                seconds = packed & 0x3FFFFFFFF
                if nanos >= 1_000_000_000 or seconds > 9_223_372_035:
                    return -1
                ns = seconds * 1_000_000_000 + nanos
                buf[pos] = 0xD9
                buf[pos + 1] = 1
                buf[pos + 2] = _T
                buf[pos + 3] = 0xD3
                for k in range(8):
                    buf[pos + 11 - k] = (ns >> (8 * k)) & 0xFF
                rewritten += 1
                pos += 12
                continue
            for _ in range(2):  # the key, then the value: short strings and scalars inline
                if pos >= n:
                    return -1
                b = buf[pos]
                if 0xA0 <= b <= 0xBF:
                    pos += 1 + (b & 0x1F)
                elif b == 0xCB or b == 0xCF or b == 0xD3:
                    pos += 9
                elif b <= 0x7F:
                    pos += 1
                else:
                    pos = _skip(buf, pos, n)
                    if pos < 0:
                        return -1
    return rewritten if pos <= n else -1
