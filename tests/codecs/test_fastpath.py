"""The compiled rewrite kernels: what they change, and everything they must leave alone."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickd.codecs.fastpath import rewrite_json_times, rewrite_msgpack_times
from tickd.codecs.timestamps import ns_to_msgpack_ext, parse_rfc3339_ns

Ext = msgspec.msgpack.Ext


def rewrite_json(text: bytes) -> tuple[int, bytes]:
    buf = bytearray(text)
    count = rewrite_json_times(buf)
    assert len(buf) == len(text)  # always in place, at equal length
    return count, bytes(buf)


def test_json_timestamps_become_padded_integers() -> None:
    frame = b'[{"T":"t","t":"2021-02-22T15:51:45.335689322Z","p":1},{"t":"2021-02-22T19:15:00Z"}]'
    count, out = rewrite_json(frame)
    assert count == 2
    assert msgspec.json.decode(out) == [
        {"T": "t", "t": 1614009105335689322, "p": 1},
        {"t": 1614021300000000000},
    ]


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"t": "2021-02-22T15:51:45Z"}]',  # whitespace: not the exact pattern
        b'[{"x":"a\\",\\"t\\":\\"2021-02-22T15:51:45Z"}]',  # inside a string
        b'[{"t":"2021-02-22T15:51:45+01:00"}]',  # offsets go the careful way
        b'[{"t":"2021-02-30T15:51:45Z"}]',  # no such day
        b'[{"t":"2021-02-22T24:00:00Z"}]',
        b'[{"t":"2021-02-22T1A:00:00Z"}]',  # a letter in each field
        b'[{"t":"2021-02-22T10:0A:00Z"}]',
        b'[{"t":"2021-02-22T10:00:0AZ"}]',
        b'[{"t":"2021-0A-22T10:00:00Z"}]',
        b'[{"t":"2021-02-2AT10:00:00Z"}]',
        b'[{"t":"20A1-02-22T10:00:00Z"}]',
        b'[{"t":"1969-12-31T23:59:59Z"}]',  # negative: careful path
        b'[{"t":"2021-02-22T15:51:45.1234567890Z"}]',  # ten fraction digits
        b'[{"t":"2021-02-22T15:51:45.Z"}]',
        b'[{"t":"2021-02-22T15:51:45.12a4Z"}]',
        b'[{"t":"2021-02-22T15:51:45Z',  # truncated
        b'[{"t":12}]',
        b"",
    ],
)
def test_json_leaves_anything_else_alone(frame: bytes) -> None:
    count, out = rewrite_json(frame)
    assert count <= 0 and out == frame


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"t":"2021-02-22T15:51:45Z","p":1,"t":5}]',  # a number a second key "t" brings
        b'[{"t":"2021-02-22T15:51:45Z","p":1, "t" :5}]',
        b'[{"t":"2021-02-22T15:51:45Z"},{"t":"never"}]',
    ],
)
def test_json_refuses_frames_where_some_key_t_is_not_a_timestamp(frame: bytes) -> None:
    assert rewrite_json_times(bytearray(frame)) == -1


def test_values_spelled_t_are_not_keys() -> None:
    frame = b'[{"T":"t","c":["t","@"],"t":"2021-02-22T15:51:45Z"}]'
    assert rewrite_json(frame)[0] == 1


@given(st.integers(0, 9_214_646_400 * 10**9 - 1))  # up to 2261-12-31
def test_json_rewrite_agrees_with_the_python_parser(ns: int) -> None:
    from tickd.codecs.timestamps import format_rfc3339_ns

    text = format_rfc3339_ns(ns)
    count, out = rewrite_json(b'[{"t":"' + text.encode() + b'"}]')
    assert count == 1 and msgspec.json.decode(out)[0]["t"] == parse_rfc3339_ns(text) == ns


def rewrite_msgpack(frame: bytes) -> tuple[int, bytes]:
    buf = bytearray(frame)
    count = rewrite_msgpack_times(buf)
    assert len(buf) == len(frame)
    return count, bytes(buf)


def pack(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


def test_msgpack_fixext8_timestamps_become_int64() -> None:
    ns = 1_680_782_066_838_232_225
    frame = pack(
        [
            {"T": "t", "c": ["@", "F"], "t": Ext(-1, ns_to_msgpack_ext(ns)), "p": 1.5},
            {
                "T": "q",
                "nested": {"t": Ext(-1, ns_to_msgpack_ext(ns))},
                "t": Ext(-1, ns_to_msgpack_ext(ns + 1)),
            },
        ]
    )
    count, out = rewrite_msgpack(frame)
    assert count == 2
    decoded = msgspec.msgpack.decode(out)
    assert decoded[0]["t"] == ns and decoded[1]["t"] == ns + 1
    assert isinstance(decoded[1]["nested"]["t"], type(decoded[1]["nested"]["t"]))  # left alone


def test_msgpack_walks_every_kind_of_value() -> None:
    ns = 1_700_000_000_000_000_001
    values = [
        None,
        True,
        False,
        -1,
        255,
        65535,
        2**32,
        -(2**40),
        1.5,
        "x" * 40,
        b"\x00" * 300,
        "y" * 300,
        list(range(20)),
        {str(i): i for i in range(20)},
        Ext(5, b"abcdefgh"),
        Ext(7, b"a"),
        Ext(7, b"ab"),
        Ext(7, b"abcd"),
        Ext(7, b"a" * 16),
        Ext(7, b"a" * 20),
        Ext(7, b"a" * 300),
        2**63,
        -(2**63),
    ]
    message = {f"k{i}": v for i, v in enumerate(values)}
    message["t"] = Ext(-1, ns_to_msgpack_ext(ns))
    big = {f"m{i}": i for i in range(20)} | {"t": Ext(-1, ns_to_msgpack_ext(ns))}
    frame = pack([message] * 17 + [big, 7, [1, 2]])  # array16, map16, non-map items
    count, out = rewrite_msgpack(frame)
    assert count == 18
    assert [m["t"] for m in msgspec.msgpack.decode(out)[:18]] == [ns] * 18


@pytest.mark.parametrize(
    "frame",
    [
        pack([{"t": Ext(-1, ns_to_msgpack_ext(10**9))}]),  # whole seconds: the 4-byte form
        pack([{"t": Ext(-1, ns_to_msgpack_ext(2**34 * 10**9))}]),  # the 12-byte form
        pack([{"t": Ext(5, b"\x00" * 8)}]),  # another extension type
        pack([{"t": Ext(-1, ((10**9 << 34) | 1).to_bytes(8, "big"))}]),  # nanoseconds >= 1e9
        pack({"t": Ext(-1, ns_to_msgpack_ext(1))}),  # not an array
    ],
)
def test_msgpack_leaves_other_forms_alone(frame: bytes) -> None:
    count, out = rewrite_msgpack(frame)
    assert count <= 0 and out == frame


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 14, 20])
def test_a_truncated_msgpack_frame_stays_undecodable(cut: int) -> None:
    frame = pack([{"T": "t", "S": "AAPL", "t": Ext(-1, ns_to_msgpack_ext(5)), "c": ["@"] * 3}])
    buf = bytearray(frame[:-cut])
    rewrite_msgpack_times(buf)
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(buf)


@pytest.mark.parametrize(
    "key", [b"\xa1t", b"\xd9\x01t", b"\xda\x00\x01t", b"\xdb\x00\x00\x00\x01t"]
)
def test_msgpack_refuses_a_key_t_holding_anything_but_the_timestamp(key: bytes) -> None:
    good = pack([{"t": Ext(-1, ns_to_msgpack_ext(5))}])
    # the same map with a second key "t" (in any str encoding) holding the integer 5
    frame = good[:1] + b"\x82" + good[2:] + key + b"\x05"
    assert msgspec.msgpack.decode(frame)[0]["t"] == 5
    assert rewrite_msgpack_times(bytearray(frame)) == -1


def test_msgpack_frames_that_are_not_arrays_of_maps_are_refused() -> None:
    assert rewrite_msgpack_times(bytearray(b"")) == -1
    assert rewrite_msgpack_times(bytearray(b"\xdd\x00\x00\x00\x01\x80")) == -1  # array32
    assert rewrite_msgpack_times(bytearray(b"\x91\xdf\x00\x00\x00\x00")) == -1  # map32
