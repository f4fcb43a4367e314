# numba's typing is not Python's (uint64 words, an intrinsic that takes a typing context): mypy
# checks this module's signatures, not the arithmetic inside the kernels.
# mypy: disable-error-code="no-any-return,return-value,arg-type,assignment"
# mypy: disable-error-code="call-arg,unreachable,no-untyped-call"
"""Compiled kernels that rewrite a frame so msgspec decodes it straight into the public structs.

msgspec decodes integers natively but timestamps only into microsecond ``datetime``s, and a Python
step per message (parse the text, set the field, stamp the receive time) costs as much as decoding
the message itself. So one compiled call per frame copies the frame into a scratch buffer and, for
each message, rewrites its timestamp ``"t":"2023-04-06T11:54:26.838232225Z"`` into integer
nanoseconds ``"t":1680782066838232225`` and adds the receive stamp after it,
``"ts_recv":1717162200500000000`` (msgpack: the same, as int64s). msgspec then decodes the copy
into the public structs in one call, and no Python runs per message.

The kernels only rewrite what they are sure of: a key ``t`` (``{"t":"`` or ``,"t":"``; inside a
JSON string a quote is escaped, so these bytes occur only at structural positions) holding a
well-formed UTC timestamp. Anything else (a key ``t`` holding a number, a bad timestamp, a key
``ts_recv`` already on the wire, no room) returns -1: the caller takes the careful per-message
path that reports typed errors. So the kernels can make decoding faster, never different.

Every byte read is widened to ``int64`` first: numba types ``uint8 | int`` arithmetic as unsigned
and mixed unsigned/signed as ``float64``, which costs conversions in the innermost loops. The
msgpack kernel reads bytes through ``_at`` (no negative-index wraparound: its positions are
checked against the length) and moves each 8-byte integer with one byte-swapped load or store.
The GIL is kept: releasing and retaking it costs more than a frame's rewrite. numba's reference
counting (NRT) is off: the kernels allocate nothing, and with it on numba counts references to
the frame and the scratch buffer around every helper call, with atomic instructions (2-6 % of a
decode).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import int64, njit, types, uint64
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

__all__ = ["entry_point", "rewrite_json_times", "rewrite_msgpack_times", "scratch_size"]

_QUOTE, _COLON, _COMMA, _LBRACE, _RBRACE, _T, _BACKSLASH = 34, 58, 44, 123, 125, 116, 92
_ONES = np.uint64(0x0101_0101_0101_0101)
_HIGHS = np.uint64(0x8080_8080_8080_8080)
_LOWS = np.uint64(0x7F7F_7F7F_7F7F_7F7F)
_TS = np.uint64(0x7474_7474_7474_7474)  # eight letters 't'
_BACKSLASHES = np.uint64(0x5C5C_5C5C_5C5C_5C5C)
_HIGH_HALVES = np.uint64(0xF0F0_F0F0_F0F0_F0F0)
_THREES = np.uint64(0x3030_3030_3030_3030)
_SIXES = np.uint64(0x0606_0606_0606_0606)
_jit = partial(njit, cache=True, _nrt=False)
_BYTEARRAY = types.ByteArray(types.uint8, 1, "C")
_BYTES = types.Bytes(types.uint8, 1, "C", readonly=True)
_JSON_STAMP_KEY = np.frombuffer(b',"ts_recv":', dtype=np.uint8)
_MSGPACK_STAMP_KEY = np.frombuffer(b"\xa7ts_recv\xd3", dtype=np.uint8)
_TEN, _ZERO, _BILLION = np.uint64(10), np.uint64(48), np.uint64(1_000_000_000)


def entry_point(kernel: Any) -> Any:
    """The compiled entry point of ``kernel`` for ``(bytes, bytearray, int)``: a C function that
    skips the dispatcher's type resolution (a third of a frame's rewrite). Only ever call it with
    exactly those types."""
    return kernel.compile((_BYTES, _BYTEARRAY, types.int64))


def scratch_size(frame_size: int) -> int:
    """Room a kernel's output may need for a frame of ``frame_size`` bytes: a message holding a
    timestamp takes at least 9 bytes (msgpack) or 26 (JSON) and grows by at most 20 or 27. A
    frame that needs more (only a pathological one) is refused (-1) and decoded carefully."""
    return 2 * frame_size + 64


@_jit(inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or c == 10 or c == 13 or c == 9


@_jit(inline="always")
def _digit(src, k: int) -> int:  # type: ignore[no-untyped-def]
    return int64(src[k]) - 48


@_jit(inline="always")
def _bad(d: int) -> int:
    """Negative when ``d`` is not a digit's value: OR these together and test once."""
    return d | (9 - d)


def _month_tables() -> tuple[np.ndarray, np.ndarray]:
    """Days from 1970-01-01 to the first of each month of 1970-2261, and each month's length:
    the date part of a timestamp is two lookups instead of a dozen divisions."""
    starts = np.arange("1970-01", "2262-01", dtype="datetime64[M]")
    first = starts.astype("datetime64[D]").astype(np.int64)
    after = (starts + 1).astype("datetime64[D]").astype(np.int64)
    return first, after - first


_MONTH_START, _MONTH_DAYS = _month_tables()


@_jit
def _parse_seconds(src, start: int) -> int:  # type: ignore[no-untyped-def]
    """``YYYY-MM-DDTHH:MM:SS`` at src[start:start+19] -> seconds since the epoch, or -1.

    Straight-line: every digit is read, checked for range into one accumulator, and tested once
    (a loop and a branch per digit cost more than the rest of a message's rewrite)."""
    if (
        src[start + 4] != 45
        or src[start + 7] != 45
        or src[start + 10] != 84
        or src[start + 13] != 58
        or src[start + 16] != 58
    ):
        return -1
    y0, y1 = _digit(src, start), _digit(src, start + 1)
    y2, y3 = _digit(src, start + 2), _digit(src, start + 3)
    mo0, mo1 = _digit(src, start + 5), _digit(src, start + 6)
    d0, d1 = _digit(src, start + 8), _digit(src, start + 9)
    h0, h1 = _digit(src, start + 11), _digit(src, start + 12)
    mi0, mi1 = _digit(src, start + 14), _digit(src, start + 15)
    s0, s1 = _digit(src, start + 17), _digit(src, start + 18)
    bad = _bad(y0) | _bad(y1) | _bad(y2) | _bad(y3) | _bad(mo0) | _bad(mo1) | _bad(d0)
    bad |= _bad(d1) | _bad(h0) | _bad(h1) | _bad(mi0) | _bad(mi1) | _bad(s0) | _bad(s1)
    if bad < 0:
        return -1
    year = ((y0 * 10 + y1) * 10 + y2) * 10 + y3
    month = mo0 * 10 + mo1
    day = d0 * 10 + d1
    hour = h0 * 10 + h1
    minute = mi0 * 10 + mi1
    second = s0 * 10 + s1
    if year < 1970 or year > 2261 or month < 1 or month > 12 or day < 1:
        return -1
    index = (year - 1970) * 12 + month - 1
    if day > _MONTH_DAYS[index] or hour > 23 or minute > 59 or second > 59:
        return -1
    days = _MONTH_START[index] + day - 1
    return days * 86400 + hour * 3600 + minute * 60 + second


@_jit(inline="always")
def _fraction_digits(src, start: int, end: int) -> int:  # type: ignore[no-untyped-def]
    """How many fraction digits the timestamp in src[start:end] has after its 19-character
    seconds (``Z`` or ``.`` + 1 to 9 digits + ``Z``), or -1 if the tail is anything else."""
    n = end - start
    if n < 20 or n > 30 or src[end - 1] != 90:  # 'Z'
        return -1
    if n == 20:
        return 0
    if n == 21 or src[start + 19] != 46:  # '.' and at least one digit
        return -1
    if n == 30:  # nine digits, the usual: eight checked as one word, then the ninth
        ninth = _digit(src, start + 28)
        return 9 if _eight_digits(_load64(src, start + 20)) and 0 <= ninth <= 9 else -1
    bad = 0
    for k in range(start + 20, end - 1):
        bad |= _bad(_digit(src, k))
    return n - 21 if bad >= 0 else -1


@_jit(inline="always")
def _load64(src, i: int) -> int:  # type: ignore[no-untyped-def]
    """src[i:i+8] as one little-endian word (LLVM makes the eight loads one)."""
    return (
        uint64(src[i])
        | uint64(src[i + 1]) << uint64(8)
        | uint64(src[i + 2]) << uint64(16)
        | uint64(src[i + 3]) << uint64(24)
        | uint64(src[i + 4]) << uint64(32)
        | uint64(src[i + 5]) << uint64(40)
        | uint64(src[i + 6]) << uint64(48)
        | uint64(src[i + 7]) << uint64(56)
    )


@_jit(inline="always")
def _eight_digits(word: int) -> bool:
    """Are all eight bytes of ``word`` ASCII digits? (Each byte's high half is 3, and stays 3
    when 6 is added: no carry crosses bytes, since the first test failed for any byte >= 0x40.)"""
    return (word & _HIGH_HALVES) == _THREES and ((word + _SIXES) & _HIGH_HALVES) == _THREES


@_jit(inline="always")
def _same_seconds(src, a: int, b: int) -> bool:  # type: ignore[no-untyped-def]
    """Do the 19-character seconds at src[a:] and src[b:] match (three overlapping words)?"""
    return (
        _load64(src, a) == _load64(src, b)
        and _load64(src, a + 8) == _load64(src, b + 8)
        and _load64(src, a + 11) == _load64(src, b + 11)
    )


@_jit
def _write_int(out, pos: int, value: int) -> int:  # type: ignore[no-untyped-def]
    """Write a non-negative int as ASCII at out[pos:], return the new position. Unsigned
    division by a constant is a multiply; the seconds and the nine digits of nanoseconds are two
    independent chains (half the latency)."""
    whole = uint64(value)
    seconds = whole // _BILLION
    nanos = whole - seconds * _BILLION
    if seconds == 0:
        width = _width(nanos)
        _write_digits(out, pos, nanos, width)
        return pos + width
    width = _width(seconds)
    _write_digits(out, pos, seconds, width)
    _write_digits(out, pos + width, nanos, 9)
    return pos + width + 9


@_jit(inline="always")
def _width(value: int) -> int:
    width = 1
    bound = uint64(10)
    while width < 19 and value >= bound:
        width += 1
        bound *= uint64(10)
    return width


@_jit(inline="always")
def _write_digits(out, pos: int, value: int, width: int) -> None:  # type: ignore[no-untyped-def]
    """``value`` (a uint64) as exactly ``width`` digits, zero-padded, at out[pos:]."""
    for k in range(pos + width - 1, pos - 1, -1):
        quotient = value // _TEN
        out[k] = _ZERO + (value - quotient * _TEN)
        value = quotient


@_jit(inline="always")
def _has_t_or_backslash(buf, i: int) -> bool:  # type: ignore[no-untyped-def]
    """Is any of buf[i:i+8] a 't' or a backslash? (One 64-bit word: the classic has-zero-byte
    test on the word XOR eight of each; it can flag a byte next to a real one, never miss one.)"""
    word = _load64(buf, i)
    t = word ^ _TS
    backslash = word ^ _BACKSLASHES
    return (((t - _ONES) & ~t) | ((backslash - _ONES) & ~backslash)) & _HIGHS != uint64(0)


@_jit(inline="always")
def _zero_bytes(word: int) -> int:
    """The high bit of each byte of ``word`` that is zero, exactly (no borrow between bytes:
    the low seven bits are added apart from the high one)."""
    low = (word & _LOWS) + _LOWS
    return ~(low | word | _LOWS)


@_jit(inline="always")
def _t_or_backslash(word: int) -> int:
    """The high bit of each byte of ``word`` that is a 't' or a backslash, exactly."""
    return _zero_bytes(word ^ _TS) | _zero_bytes(word ^ _BACKSLASHES)


@intrinsic
def _memcpy(typingctx, dst, dst_at, src, src_at, count):  # type: ignore[no-untyped-def]
    """``dst[dst_at:dst_at+count] = src[src_at:src_at+count]`` as one ``llvm.memcpy``: a loop
    of byte stores here costs more than the whole rest of the rewrite."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        out = context.make_array(signature.args[0])(context, builder, args[0])
        source = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(
            builder,
            builder.gep(out.data, [args[1]]),
            builder.gep(source.data, [args[3]]),
            args[4],
            1,
        )

    return types.void(dst, dst_at, src, src_at, count), codegen


@intrinsic
def _load_be(typingctx, src, at, width):  # type: ignore[no-untyped-def]
    """The big-endian unsigned integer of ``width`` (a literal 4 or 8) bytes at src[at:], as
    one unaligned load and a byte swap (per-byte reads and shifts cost a dozen instructions)."""
    if not isinstance(width, types.IntegerLiteral) or width.literal_value not in (4, 8):
        return None
    bits = ir.IntType(8 * width.literal_value)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        source = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(source.data, [args[1]]), bits.as_pointer())
        word = builder.bswap(builder.load(pointer, align=1))
        return builder.zext(word, ir.IntType(64)) if bits.width < 64 else word

    return types.int64(src, at, width), codegen


@intrinsic
def _store_be64(typingctx, dst, at, value):  # type: ignore[no-untyped-def]
    """``dst[at:at+8]`` = ``value`` as a big-endian int64: one byte swap and one store."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        out = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(out.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(builder.bswap(args[2]), pointer, align=1)

    return types.void(dst, at, value), codegen


@_jit(inline="always")
def _flush(src, start: int, end: int, dst, out: int) -> int:  # type: ignore[no-untyped-def]
    """Copy src[start:end] to dst[out:]; the new ``out``, or -1 if dst has no room."""
    count = end - start
    if out + count > len(dst):
        return -1
    _memcpy(dst, out, src, start, count)
    return out + count


@_jit
def _matches(src, pos: int, n: int, expected) -> bool:  # type: ignore[no-untyped-def]
    """Is src[pos:] ``expected``?"""
    if pos + len(expected) > n:
        return False
    differ = 0
    for k in range(len(expected)):
        differ |= int64(src[pos + k]) ^ int64(expected[k])
    return differ == 0


@_jit
def _is_json_stamp_key(src, pos: int, n: int) -> bool:  # type: ignore[no-untyped-def]
    """Is ``"ts_recv"`` at ``pos``? (It is ours to write: on the wire it would override the
    receive stamp.)"""
    return _matches(src, pos, n, _JSON_STAMP_KEY[1:10])


@_jit(inline="always")
def _json_key_t(src, i: int, n: int) -> int:  # type: ignore[no-untyped-def]
    """src[i] is a 't'. If it is the key ``t`` holding a string, return the index of the string's
    closing quote; 0 if it is not a key ``t`` (a value such as the trade tag ``"T":"t"``); -1 if
    it is a key ``t`` in any other form (spaces, a number: the frame goes the careful way, or else
    a number the wire put there would pass as nanoseconds), one whose string is not followed by
    ``,`` or ``}``, or the key ``ts_recv``."""
    if i + 1 >= n or src[i - 1] != _QUOTE:
        return 0
    if src[i + 1] != _QUOTE:
        # "ts_recv" is ours to write: on the wire it would override the receive stamp.
        return -1 if _is_json_stamp_key(src, i - 1, n) else 0
    back = i - 2
    while back > 0 and _is_space(int64(src[back])):
        back -= 1
    ahead = i + 2
    while ahead < n and _is_space(int64(src[ahead])):
        ahead += 1
    if (src[back] != _LBRACE and src[back] != _COMMA) or ahead >= n or src[ahead] != _COLON:
        return 0
    if back != i - 2 or ahead != i + 2 or i + 3 >= n or src[i + 3] != _QUOTE:
        return -1
    close = i + 4
    limit = min(n, i + 35)
    while close < limit and src[close] != _QUOTE:
        close += 1
    if close >= limit or close + 1 >= n:
        return -1
    # The string must end the value: the stamp written after it would otherwise run into what
    # follows (``"t":"...Z"12,`` is bad JSON, but ``"ts_recv":<stamp>12,`` would pass).
    return close if src[close + 1] == _COMMA or src[close + 1] == _RBRACE else -1


@_jit
def _write_json_stamp(dst, out: int, ts_recv: int) -> int:  # type: ignore[no-untyped-def]
    """``,"ts_recv":<ts_recv>`` at dst[out:] (room checked by the caller); the new ``out``."""
    for k in range(11):
        dst[out + k] = _JSON_STAMP_KEY[k]
    out += 11
    if ts_recv < 0:
        dst[out] = 45  # '-'
        return _write_int(dst, out + 1, -ts_recv)
    return _write_int(dst, out, ts_recv)


@_jit
def rewrite_json_times(src, dst, ts_recv: int) -> int:  # type: ignore[no-untyped-def]
    """Copy a JSON frame into ``dst`` with each ``"t":"<RFC 3339 UTC>"`` as
    ``"t":<ns>,"ts_recv":<ts_recv>``; return the length written, or -1 (see the module).

    A frame holding a backslash is refused (an escaped key can spell ``t`` unseen). The scan looks
    for the letter ``t`` and the backslash eight bytes at a time: they are rare in market data
    (the trade tag and the keys), so most words are skipped with one test.

    Every key ``t`` in the frame is rewritten or the frame is refused, so a message that decodes
    (``t`` is a required field) owes its time to the rewrite and carries the receive stamp.
    """
    n = len(src)
    out = 0
    copied = 0
    # What the frame's timestamps share, written once and copied after: the seconds (messages
    # in a frame mostly fall in the same one) and the receive stamp.
    last = -1  # where the previous timestamp's text starts in src
    last_seconds = 0
    seconds_at = -1  # where its seconds' digits are in dst
    seconds_width = 0
    stamp_at = -1
    stamp_width = 0
    i = 1  # a key's quote comes before its 't'
    while i < n:
        # (This shape of loop, with no ``continue``, is the one LLVM turns into 64-bit loads.)
        if i + 8 > n or _has_t_or_backslash(src, i):
            stop = min(i + 8, n)
            if i + 8 <= n:  # straight to the first 't' or backslash of the word
                i += int64(trailing_zeros(_t_or_backslash(_load64(src, i))) >> uint64(3))
            while i < stop:
                if src[i] == _BACKSLASH:  # an escape could spell a key ``t`` unseen
                    return -1
                if src[i] == _T:
                    close = _json_key_t(src, i, n)
                    if close < 0:
                        return -1
                    if close > 0:
                        start = i + 4
                        digits = _fraction_digits(src, start, close)
                        if digits < 0:
                            return -1
                        if last < 0 or not _same_seconds(src, start, last):
                            last_seconds = _parse_seconds(src, start)
                            if last_seconds <= 0:  # (the epoch itself: no leading zeros)
                                return -1
                            last = start
                            seconds_at = -1
                        out = _flush(src, copied, i + 3, dst, out)  # up to ``"t":``
                        if out < 0 or out + 64 > len(dst):
                            return -1
                        # Fixed-size copies are inlined moves, not calls; they may write past
                        # what they need (the next write covers it; the room check allows it).
                        if seconds_at < 0:
                            seconds_at = out
                            seconds_width = _width(uint64(last_seconds))
                            _write_digits(dst, out, uint64(last_seconds), seconds_width)
                        else:
                            _memcpy(dst, out, dst, seconds_at, 16)  # 10 digits until 2286
                        out += seconds_width
                        if start + 36 <= n:
                            _memcpy(dst, out, src, start + 20, 16)
                        else:
                            _memcpy(dst, out, src, start + 20, digits)
                        for k in range(out + digits, out + 9):
                            dst[k] = 48  # '0'
                        out += 9
                        if stamp_at < 0:
                            stamp_at = out
                            stamp_width = _write_json_stamp(dst, out, ts_recv) - out
                        else:
                            _memcpy(dst, out, dst, stamp_at, 32)  # 30 bytes, 31 if negative
                        out += stamp_width
                        copied = close + 1
                        i = copied
                        break
                i += 1
        else:
            i += 8
    return _flush(src, copied, n, dst, out)


@intrinsic
def _at(typingctx, buf, at):  # type: ignore[no-untyped-def]
    """``buf[at]`` widened to int64, without the negative-index wraparound numba adds to every
    subscript (two instructions a read, and it keeps LLVM from merging neighbouring reads). The
    msgpack kernels only read at positions they have checked against the length."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.zext(builder.load(builder.gep(array.data, [args[1]])), ir.IntType(64))

    return types.int64(buf, at), codegen


@_jit
def _skip(buf, pos: int, n: int) -> int:  # type: ignore[no-untyped-def]
    """Skip one msgpack value (containers included) starting at ``pos``; -1 if truncated/bad."""
    remaining = 1
    while remaining > 0:
        if pos >= n:
            return -1
        b: int = _at(buf, pos)
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
            pos += 2 + _at(buf, pos + 1)
        elif b == 0xC5 or b == 0xDA:
            if pos + 2 >= n:
                return -1
            pos += 3 + _u16(buf, pos + 1)
        elif b == 0xC7:
            if pos + 1 >= n:
                return -1
            pos += 3 + _at(buf, pos + 1)
        elif b == 0xC8:
            if pos + 2 >= n:
                return -1
            pos += 4 + _u16(buf, pos + 1)
        elif b == 0xDC or b == 0xDE:
            if pos + 2 >= n:
                return -1
            count = _u16(buf, pos + 1)
            remaining += count if b == 0xDC else 2 * count
            pos += 3
        else:  # 32-bit lengths/counts (C6, C9, DB, DD, DF) never occur in a market-data frame
            return -1
    return pos if pos <= n else -1


@_jit(inline="always")
def _u16(buf, pos: int) -> int:  # type: ignore[no-untyped-def]
    return _at(buf, pos) << 8 | _at(buf, pos + 1)


@_jit
def _is_long_t_key(buf, pos: int, n: int) -> bool:  # type: ignore[no-untyped-def]
    """Is the string at ``pos`` the one-letter ``t`` in one of msgpack's longer str encodings?"""
    b: int = _at(buf, pos)
    if b == 0xD9:
        return pos + 2 < n and _at(buf, pos + 1) == 1 and _at(buf, pos + 2) == _T
    if b == 0xDA:
        return (
            pos + 3 < n
            and _at(buf, pos + 1) == 0
            and _at(buf, pos + 2) == 1
            and _at(buf, pos + 3) == _T
        )
    if b == 0xDB:
        return (
            pos + 5 < n
            and _at(buf, pos + 1) == 0
            and _at(buf, pos + 2) == 0
            and _at(buf, pos + 3) == 0
            and _at(buf, pos + 4) == 1
            and _at(buf, pos + 5) == _T
        )
    return False


@_jit(inline="always")
def _msgpack_time(src, pos: int, n: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The key ``t`` at ``pos`` must be ``a1 74`` holding a timestamp in its 8-byte form
    ``d7 ff <8>`` or its 4-byte form ``d6 ff <4>`` (whole seconds: what a msgpack encoder sends
    for a bar's minute): (its nanoseconds, the bytes from ``pos`` to the pair's end), or (-1, 0).
    """
    if pos + 7 >= n or _at(src, pos) != 0xA1 or _at(src, pos + 3) != 0xFF:
        return -1, 0
    if _at(src, pos + 2) == 0xD6:
        return _load_be(src, pos + 4, 4) * 1_000_000_000, 8
    if pos + 11 >= n or _at(src, pos + 2) != 0xD7:
        return -1, 0
    packed = _load_be(src, pos + 4, 8)
    nanos = (packed >> 34) & 0x3FFFFFFF
    seconds = packed & 0x3FFFFFFFF
    if nanos >= 1_000_000_000 or seconds > 9_223_372_035:
        return -1, 0
    return seconds * 1_000_000_000 + nanos, 12


@_jit(inline="always")
def _skip_fixstrs(src, pos: int, count: int, n: int) -> int:  # type: ignore[no-untyped-def]
    """The end of ``count`` short strings from ``pos``, or -1 if something else is there."""
    for _ in range(count):
        if pos >= n:
            return -1
        b: int = _at(src, pos)
        if b < 0xA0 or b > 0xBF:
            return -1
        pos += 1 + (b & 0x1F)
    return pos


@_jit
def _is_stamp_key(src, pos: int, n: int) -> bool:  # type: ignore[no-untyped-def]
    """Is the key at ``pos`` ``"ts_recv"`` (fixstr)? It is ours to write."""
    return _matches(src, pos, n, _MSGPACK_STAMP_KEY[:8])


@_jit
def rewrite_msgpack_times(src, dst, ts_recv: int) -> int:  # type: ignore[no-untyped-def]
    """Copy a msgpack frame (an array of maps) into ``dst`` with each map's ``"t"`` timestamp
    (fixext8 or fixext4, type -1) as an int64 of nanoseconds followed by the pair
    ``"ts_recv": ts_recv`` (the map's count grows by one); return the length written, or -1 when
    the frame is not an array of maps as expected, some key ``t`` holds anything else (the
    12-byte form, another type), a map already has a key ``ts_recv``, or ``dst`` has no room.

    Every key ``t`` of a message is rewritten or the frame is refused, so a message that decodes
    (``t`` is a required field) owes its time to the rewrite and carries the receive stamp.
    """
    n = len(src)
    if n == 0:
        return -1
    b: int = _at(src, 0)
    if 0x90 <= b <= 0x9F:
        items = b & 0x0F
        pos = 1
    elif b == 0xDC and n >= 3:
        items = _u16(src, 1)
        pos = 3
    else:
        return -1
    out = 0
    copied = 0
    for _ in range(items):
        if pos >= n:
            return -1
        b = _at(src, pos)
        if 0x80 <= b <= 0x8F:
            pairs = b & 0x0F
            head = 1
        elif b == 0xDE and pos + 2 < n:
            pairs = _u16(src, pos + 1)
            head = 3
        else:
            pos = _skip(src, pos, n)
            if pos < 0:
                return -1
            continue
        header = out + (pos - copied)  # where the map's header lands in dst
        pos += head
        stamped = False
        for _ in range(pairs):
            if pos + 1 >= n:
                return -1
            # The key: market data keys are short strings, and one of them is "t".
            b = _at(src, pos)
            if (b == 0xA1 and _at(src, pos + 1) == _T) or (
                b >= 0xD9 and _is_long_t_key(src, pos, n)
            ):
                ns, size = _msgpack_time(src, pos, n)
                if ns < 0 or stamped:
                    return -1
                out = _flush(src, copied, pos, dst, out)
                if out < 0 or out + 28 > len(dst):
                    return -1
                dst[out] = 0xA1
                dst[out + 1] = _T
                dst[out + 2] = 0xD3
                _store_be64(dst, out + 3, ns)
                for k in range(9):
                    dst[out + 11 + k] = _MSGPACK_STAMP_KEY[k]
                _store_be64(dst, out + 20, ts_recv)
                out += 28
                pos += size
                copied = pos
                stamped = True
                continue
            if b == 0xA7 and _is_stamp_key(src, pos, n):
                return -1
            if 0xA0 <= b <= 0xBF:
                pos += 1 + (b & 0x1F)
            else:
                pos = _skip(src, pos, n)
                if pos < 0:
                    return -1
            # The value: short strings and fixed-size scalars inline (sizes, ids and prices
            # come in every width), only containers and long strings through _skip.
            if pos >= n:
                return -1
            b = _at(src, pos)
            if 0xA0 <= b <= 0xBF:
                pos += 1 + (b & 0x1F)
            elif b <= 0x7F or b >= 0xE0:
                pos += 1
            elif b == 0xCB or b == 0xCF or b == 0xD3:  # 64 bits: float, uint, int
                pos += 9
            elif b == 0xCE or b == 0xD2 or b == 0xCA:  # 32 bits: uint, int, float
                pos += 5
            elif b == 0xCD or b == 0xD1:
                pos += 3
            elif b == 0xCC or b == 0xD0:
                pos += 2
            elif 0x90 <= b <= 0x9F:  # a short array, such as the conditions: strings inline
                end = _skip_fixstrs(src, pos + 1, b & 0x0F, n)
                pos = end if end >= 0 else _skip(src, pos, n)
                if pos < 0:
                    return -1
            else:
                pos = _skip(src, pos, n)
                if pos < 0:
                    return -1
        if stamped:  # one more pair in the map's header
            if head == 1 and pairs < 15:
                dst[header] = 0x80 | (pairs + 1)
            elif head == 3 and pairs < 0xFFFF:
                dst[header + 1] = (pairs + 1) >> 8
                dst[header + 2] = (pairs + 1) & 0xFF
            else:  # 15 pairs need the map16 form: longer, never seen in market data
                return -1
    if pos > n:
        return -1
    return _flush(src, copied, n, dst, out)
