"""Fuzzing: every decoder answers mangled input with typed errors, never with an exception.

Each source gets at least 10,000 mangled frames: Hypothesis's structured damage (truncated,
flipped bytes, wrong types, huge numbers, deep nesting, unknown types, invalid UTF-8, empty
input), and, for bulk, a burst of byte-level mutations of every frame it draws (cheap to make,
so the count does not cost minutes of strategy overhead). For the Alpaca stock and crypto streams
the compiled fast path is also checked against the careful per-message path: it may only be
faster, never different.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickd.codecs import schema
from tickd.codecs.alpaca import AlpacaDecoder
from tickd.codecs.errors import Decoded, DecodeError, UnknownMessage
from tickd.codecs.synthetic import strategies as s

FRAMES_PER_DECODER = int(os.environ.get("TICKD_FUZZ_FRAMES", "10000"))
MUTATIONS = 25  # byte-level mutations of each drawn frame
STRUCTURED = FRAMES_PER_DECODER // 10
SCHEMA_TYPES = tuple(
    getattr(schema, name) for name in schema.__all__ if isinstance(getattr(schema, name), type)
)

fuzz_settings = settings(
    max_examples=STRUCTURED,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(result: Any, data: bytes) -> None:
    assert isinstance(result, Decoded)
    assert all(isinstance(m, SCHEMA_TYPES) for m in result.messages), result.messages
    assert all(isinstance(e, DecodeError) and e.reason for e in result.errors)
    assert all(isinstance(u, UnknownMessage) for u in result.unknown)
    assert all(0 <= len(e.excerpt) <= 160 for e in result.errors)
    if not data:
        assert result.messages == [] and len(result.errors) == 1


def _mutations(data: bytes, rnd: random.Random) -> Iterator[bytes]:
    """Byte-level damage: truncation, flipped bits, inserted/deleted/duplicated runs, swaps."""
    for _ in range(MUTATIONS):
        buf = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            n = len(buf)
            kind = rnd.randrange(6)
            if kind == 0:
                del buf[rnd.randint(0, n) :]
            elif kind == 1 and n:
                buf[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
            elif kind == 2:
                at = rnd.randint(0, n)
                buf[at:at] = rnd.randbytes(rnd.randint(1, 8))
            elif kind == 3 and n:
                at = rnd.randrange(n)
                del buf[at : at + rnd.randint(1, 16)]
            elif kind == 4 and n:
                at = rnd.randrange(n)
                buf[at:at] = buf[at : at + rnd.randint(1, 64)]
            elif n > 1:
                i, j = rnd.randrange(n), rnd.randrange(n)
                buf[i], buf[j] = buf[j], buf[i]
        yield bytes(buf)


@pytest.mark.parametrize("source", s.SOURCES)
def test_mangled_frames_give_only_typed_errors(source: str) -> None:
    decode = s.decoder_for(source)
    thrown = 0

    @fuzz_settings
    @given(s.mangled_frames(source))
    def structured(data: bytes) -> None:
        nonlocal thrown
        _check(decode(data), data)
        thrown += 1

    bulk_examples = -(-(FRAMES_PER_DECODER - STRUCTURED) // MUTATIONS)

    @settings(fuzz_settings, max_examples=bulk_examples)
    @given(st.one_of(s.frames(source), s.mangled_frames(source)), st.randoms())
    def bulk(data: bytes, rnd: random.Random) -> None:
        nonlocal thrown
        for mutant in _mutations(data, rnd):
            _check(decode(mutant), mutant)
            thrown += 1

    structured()
    bulk()
    assert thrown >= FRAMES_PER_DECODER


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("stream", ["stocks", "crypto"])
def test_fast_path_equals_careful_path(stream: Any, encoding: Any) -> None:
    decoder = AlpacaDecoder(stream, encoding)

    source = f"alpaca.{stream}.{encoding}"

    @settings(fuzz_settings, max_examples=FRAMES_PER_DECODER // MUTATIONS)
    @given(
        st.one_of(s.frames(source), s.mangled_frames(source)), st.randoms(), st.integers(0, 2**62)
    )
    def check(data: bytes, rnd: random.Random, ts_recv: int) -> None:
        for frame in (data, *_mutations(data, rnd)):
            fast = decoder.decode(frame, ts_recv)
            careful = decoder._decode_carefully(frame, ts_recv)
            # Compared as JSON: NaN prices (msgpack carries them) are not equal to themselves, and
            # JSON, unlike msgpack, can hold the beyond-64-bit integers the fuzzer sends.
            assert msgspec.json.encode(fast.messages) == msgspec.json.encode(careful.messages)
            fast_errors = [(e.index, e.reason) for e in fast.errors]
            careful_errors = [(e.index, e.reason) for e in careful.errors]
            if any("recursion" in reason for _, reason in fast_errors + careful_errors):
                # msgspec bounds nesting by the Python stack left to it, so which error a frame
                # nested ~1000 deep meets first (too deep, or truncated) depends on how deep the
                # caller already is: both paths must still refuse the same messages.
                assert [i for i, _ in fast_errors] == [i for i, _ in careful_errors]
            else:
                assert fast_errors == careful_errors
            assert fast.unknown == careful.unknown

    check()
