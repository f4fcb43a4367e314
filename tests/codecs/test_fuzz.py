"""Fuzzing: every decoder answers mangled input with typed errors, never with an exception.

Each source gets at least 10,000 mangled frames (truncated, flipped bytes, wrong types, huge
numbers, deep nesting, unknown types, invalid UTF-8, empty input). For the Alpaca JSON streams
the compiled fast path is also checked against the careful per-message path: it may only be
faster, never different.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickd.codecs import schema
from tickd.codecs.alpaca import AlpacaDecoder
from tickd.codecs.errors import Decoded, DecodeError, UnknownMessage
from tickd.codecs.synthetic import strategies as s

FUZZ_EXAMPLES = int(os.environ.get("TICKD_FUZZ_EXAMPLES", "10000"))
SCHEMA_TYPES = tuple(
    getattr(schema, name) for name in schema.__all__ if isinstance(getattr(schema, name), type)
)

fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
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


@pytest.mark.parametrize("source", s.SOURCES)
def test_mangled_frames_give_only_typed_errors(source: str) -> None:
    decode = s.decoder_for(source)

    @fuzz_settings
    @given(s.mangled_frames(source))
    def check(data: bytes) -> None:
        _check(decode(data), data)

    check()


@pytest.mark.parametrize(("stream", "encoding"), [("stocks", "json"), ("crypto", "json")])
def test_fast_path_equals_careful_path(stream: Any, encoding: Any) -> None:
    decoder = AlpacaDecoder(stream, encoding)

    source = f"alpaca.{stream}.{encoding}"

    @settings(fuzz_settings, max_examples=2_000)
    @given(st.one_of(s.frames(source), s.mangled_frames(source)), st.integers(0, 2**62))
    def check(data: bytes, ts_recv: int) -> None:
        fast = decoder.decode(data, ts_recv)
        with schema.receiving(ts_recv):
            careful = decoder._decode_carefully(data, ts_recv)
        assert fast.messages == careful.messages
        assert [(e.index, e.reason) for e in fast.errors] == [
            (e.index, e.reason) for e in careful.errors
        ]
        assert fast.unknown == careful.unknown

    check()
