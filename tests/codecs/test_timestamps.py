"""RFC 3339 and msgpack timestamps convert to exact integer nanoseconds and back."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickd.codecs.timestamps import (
    TimestampError,
    datetime_to_ns,
    format_rfc3339_ns,
    msgpack_ext_to_ns,
    ns_to_msgpack_ext,
    parse_rfc3339_ns,
)

MAX_NS = 7258118399_999999999  # 2199-12-31T23:59:59.999999999Z


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2021-02-22T15:51:44.208Z", 1614009104_208000000),
        ("2021-02-22T15:51:45.335689322Z", 1614009105_335689322),
        ("2024-03-12T10:38:50.79613221Z", 1710239930_796132210),
        ("2021-02-22T19:15:00Z", 1614021300_000000000),
        ("2022-04-19T13:45:04.981350886-04:00", 1650390304_981350886),
        ("2022-04-19T19:15:04.5+05:30", 1650375904_500000000),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("2023-12-31T23:59:59.999999999Z", 1704067199_999999999),
    ],
)
def test_parse_is_exact(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2021-02-22",
        "2021-02-22T15:51:44",
        "2021-02-22T15:51:44.Z",
        "2021-02-22T15:51:44.1234567890Z",
        "2021-02-30T15:51:44Z",
        "2021-13-01T00:00:00Z",
        "2021-02-22T24:00:00Z",
        "2021-02-22T15:51:44+25:00",
        "2021-02-22T15:51:44.+12Z",
        "2021-02-22T15:51:44.١٢٣Z",
        "2300-01-01T00:00:00Z",  # beyond int64 nanoseconds
        "1600-01-01T00:00:00Z",
    ],
)
def test_parse_rejects_with_a_typed_error(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_rfc3339_ns(text)


@given(st.integers(min_value=0, max_value=MAX_NS))
def test_format_then_parse_round_trips(ns: int) -> None:
    text = format_rfc3339_ns(ns)
    assert text.endswith("Z")
    if ns % 1_000_000_000:
        assert not text.endswith("0Z")  # trailing fraction zeros are dropped
    assert parse_rfc3339_ns(text) == ns


@given(st.integers(min_value=-(2**63), max_value=MAX_NS))
def test_msgpack_extension_round_trips_in_the_smallest_form(ns: int) -> None:
    data = ns_to_msgpack_ext(ns)
    assert msgpack_ext_to_ns(data) == ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    if 0 <= seconds < 2**32 and nanos == 0:
        assert len(data) == 4
    elif 0 <= seconds < 2**34:
        assert len(data) == 8
    else:
        assert len(data) == 12


def test_msgpack_extension_rejects_bad_payloads() -> None:
    with pytest.raises(TimestampError):
        msgpack_ext_to_ns(b"\x00" * 5)
    with pytest.raises(TimestampError):  # nanoseconds field of 1e9 or more
        msgpack_ext_to_ns(((1_000_000_000 << 34) | 1).to_bytes(8, "big"))


def test_out_of_range_is_a_typed_error() -> None:
    with pytest.raises(TimestampError):
        format_rfc3339_ns(10**30)
    with pytest.raises(TimestampError):
        ns_to_msgpack_ext(10**40)


def test_datetimes_need_a_zone() -> None:
    assert datetime_to_ns(datetime(2021, 2, 22, 19, 15, tzinfo=UTC)) == 1614021300_000000000
    with pytest.raises(TimestampError):
        datetime_to_ns(datetime(2021, 2, 22, 19, 15))
