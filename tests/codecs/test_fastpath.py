"""The compiled rewrite kernels: what they change, and everything they must refuse."""

import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder
from tickd.codecs.fastpath import (
    entry_point,
    rewrite_json_times,
    rewrite_msgpack_times,
    scratch_size,
)
from tickd.codecs.schema import Bar, CryptoBar, Trade
from tickd.codecs.timestamps import format_rfc3339_ns, ns_to_msgpack_ext, parse_rfc3339_ns

Ext = msgspec.msgpack.Ext
Raw = msgspec.Raw
STAMP = 1_717_162_200_500_000_007


def run(kernel: object, frame: bytes, ts_recv: int = STAMP) -> bytes | None:
    """The kernel's output for ``frame``, or None when it refuses the frame. The input is never
    written to, and nothing is written further than 64 bytes past the length returned (the
    JSON kernel's fixed-size copies may run past what they need)."""
    original = bytes(frame)
    dst = bytearray(b"\xee" * scratch_size(len(frame)))
    size = entry_point(kernel)(frame, dst, ts_recv)
    assert frame == original
    if size < 0:
        return None
    assert set(dst[size + 64 :]) <= {0xEE}
    return bytes(dst[:size])


def rewrite_json(frame: bytes, ts_recv: int = STAMP) -> bytes | None:
    return run(rewrite_json_times, frame, ts_recv)


def test_json_timestamps_become_integers_followed_by_the_receive_stamp() -> None:
    frame = b'[{"T":"t","t":"2021-02-22T15:51:45.335689322Z","p":1},{"t":"2021-02-22T19:15:00Z"}]'
    out = rewrite_json(frame)
    assert out is not None
    assert msgspec.json.decode(out) == [
        {"T": "t", "t": 1614009105335689322, "ts_recv": STAMP, "p": 1},
        {"t": 1614021300000000000, "ts_recv": STAMP},
    ]


def test_json_messages_in_the_same_second_share_its_digits_correctly() -> None:
    times = ["2021-02-22T15:51:45.1Z", "2021-02-22T15:51:45.123456789Z", "2021-02-22T15:51:45Z"]
    times += ["2021-02-22T15:51:46.000000001Z", "2021-02-22T15:51:45.5Z"]
    frame = msgspec.json.encode([{"t": t, "k": i} for i, t in enumerate(times)])
    out = rewrite_json(frame, ts_recv=-5)
    assert out is not None
    assert msgspec.json.decode(out) == [
        {"t": parse_rfc3339_ns(t), "ts_recv": -5, "k": i} for i, t in enumerate(times)
    ]


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"t": "2021-02-22T15:51:45Z"}]',  # whitespace: not the exact pattern
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
        b'[{"t":"2021-02-22T15:51:45.1234:6789Z"}]',  # nine digits: ':' and '/' border '0'-'9'
        b'[{"t":"2021-02-22T15:51:45./23456789Z"}]',
        b'[{"t":"2021-02-22T15:51:45.12345678?Z"}]',
        b'[{"t":"2021-02-22T15:51:45.1234567\xb9Z"}]',
        b'[{"t":"2021-02-22T15:51:45Z',  # truncated
        b'[{"t":"2021-02-22T15:51:45Z"12,"p":1}]',  # bad JSON the stamp's digits would join
        b'[{"t":"2021-02-22T15:51:45Z" ,"p":1}]',  # a space: left to the careful path
        b'[{"t":"2021-02-22T15:51:45Z"]',
        b'[{"t":12}]',
        b'[{"x":"a\\",\\"t\\":\\"2021-02-22T15:51:45Z"}]',  # escapes: could spell a key
        b'[{"S":"\\u0041","t":"2021-02-22T15:51:45Z"}]',
    ],
)
def test_json_refuses_anything_else(frame: bytes) -> None:
    assert rewrite_json(frame) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"[]",
        b'[{"T":"success","msg":"connected"}]',
        b'[{"T":"t","c":["t"],"tt":1}]',
    ],
)
def test_json_without_timestamps_is_copied_as_it_is(frame: bytes) -> None:
    assert rewrite_json(frame) == frame


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"t":"2021-02-22T15:51:45Z","p":1,"t":5}]',  # a number a second key "t" brings
        b'[{"t":"2021-02-22T15:51:45Z","p":1, "t" :5}]',
        b'[{"t":"2021-02-22T15:51:45Z"},{"t":"never"}]',
        b'[{"t":"2021-02-22T15:51:45Z","ts_recv":5}]',  # the stamp is the receiver's to write
        b'[{"t":"1970-01-01T00:00:00.5Z"}]',  # the epoch's own second: no leading zeros
    ],
)
def test_json_refuses_frames_where_some_key_t_is_not_a_timestamp(frame: bytes) -> None:
    assert rewrite_json(frame) is None


def test_values_spelled_t_are_not_keys() -> None:
    frame = b'[{"T":"t","c":["t","@"],"t":"2021-02-22T15:51:45Z"}]'
    out = rewrite_json(frame)
    assert out is not None and msgspec.json.decode(out)[0]["c"] == ["t", "@"]


def test_json_without_room_is_refused() -> None:
    frame = b'[{"t":"2021-02-22T15:51:45Z"}]'
    assert entry_point(rewrite_json_times)(frame, bytearray(len(frame)), STAMP) == -1


@given(st.integers(0, 9_214_646_400 * 10**9 - 1))  # up to 2261-12-31
def test_json_rewrite_agrees_with_the_python_parser(ns: int) -> None:
    text = format_rfc3339_ns(ns)
    out = rewrite_json(b'[{"t":"' + text.encode() + b'"}]')
    if ns < 10**9:  # the epoch's first second goes the careful way
        assert out is None
        return
    assert out is not None and msgspec.json.decode(out)[0]["t"] == parse_rfc3339_ns(text) == ns


def rewrite_msgpack(frame: bytes, ts_recv: int = STAMP) -> bytes | None:
    return run(rewrite_msgpack_times, frame, ts_recv)


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
    out = rewrite_msgpack(frame, ts_recv=-(2**63))
    assert out is not None
    decoded = msgspec.msgpack.decode(out)
    assert decoded[0] == {"T": "t", "c": ["@", "F"], "t": ns, "ts_recv": -(2**63), "p": 1.5}
    assert decoded[1]["t"] == ns + 1 and decoded[1]["ts_recv"] == -(2**63)
    assert isinstance(decoded[1]["nested"]["t"], datetime.datetime)  # only messages' own keys
    assert "ts_recv" not in decoded[1]["nested"]


@pytest.mark.parametrize("seconds", [0, 1, 1_709_561_340, 2**32 - 1])
def test_msgpack_whole_seconds_in_the_4_byte_form_become_int64(seconds: int) -> None:
    """Encoders send whole seconds (a bar's minute) as timestamp 32: ``d6 ff`` and 4 bytes."""
    ext = ns_to_msgpack_ext(seconds * 10**9)
    assert len(ext) == 4
    frame = pack([{"T": "b", "S": "AAPL", "t": Ext(-1, ext), "o": 1.5}, {"t": Ext(-1, ext)}])
    out = rewrite_msgpack(frame)
    assert out is not None
    want = {"T": "b", "S": "AAPL", "t": seconds * 10**9, "ts_recv": STAMP, "o": 1.5}
    assert msgspec.msgpack.decode(out) == [want, {"t": seconds * 10**9, "ts_recv": STAMP}]


@pytest.mark.parametrize(
    ("stream", "kind", "volume"), [("stocks", Bar, 10), ("crypto", CryptoBar, 0.5)]
)
def test_a_msgpack_frame_of_bars_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, stream: Any, kind: type, volume: float
) -> None:
    """A bar starts on a whole minute: the 4-byte form. Refused, it sent every frame holding a
    bar the careful way (a third slower on the replay benchmark's tape)."""
    minute = 1_709_561_340 * 10**9
    bars = [
        kind(
            symbol="AAPL",
            ts_event=minute + i * 60 * 10**9,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=volume,
        )
        for i in range(3)
    ]
    decoder = AlpacaDecoder(stream, "msgpack")
    monkeypatch.setattr(
        decoder, "_decode_carefully", lambda *_: pytest.fail("went the careful way")
    )
    frame = AlpacaEncoder(stream, "msgpack").encode(bars)
    assert decoder.decode(frame, 7).messages == [
        msgspec.structs.replace(b, ts_recv=7) for b in bars
    ]


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
        -33,
        -300,
        70_000,
        -70_000,
        1.5,
        Raw(b"\xca\x3f\xc0\x00\x00"),  # float 32: 1.5
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
    out = rewrite_msgpack(frame)
    assert out is not None
    decoded = msgspec.msgpack.decode(out)
    assert [(m["t"], m["ts_recv"]) for m in decoded[:18]] == [(ns, STAMP)] * 18
    assert decoded[18:] == [7, [1, 2]]
    original = msgspec.msgpack.decode(frame)[0]  # every other value comes through untouched
    assert {k: v for k, v in decoded[0].items() if k not in ("t", "ts_recv")} == {
        k: v for k, v in original.items() if k != "t"
    }
    assert decoded[17]["m19"] == 19


@pytest.mark.parametrize(
    "frame",
    [
        b"\x90",
        pack([{"T": "success", "msg": "authenticated"}]),
        pack([{"T": "t", "c": ["@", 5, "x" * 40]}]),  # an array that is not all short strings
    ],
)
def test_msgpack_without_timestamps_is_copied_as_it_is(frame: bytes) -> None:
    assert rewrite_msgpack(frame) == frame


@pytest.mark.parametrize(
    "frame",
    [
        pack([{"t": Ext(-1, ns_to_msgpack_ext(2**34 * 10**9))}]),  # the 12-byte form
        pack([{"t": Ext(5, b"\x00" * 8)}]),  # another extension type
        pack([{"t": Ext(5, b"\x00" * 4)}]),  # another extension type, 4 bytes
        pack([{"t": Ext(-1, ((10**9 << 34) | 1).to_bytes(8, "big"))}]),  # nanoseconds >= 1e9
        pack({"t": Ext(-1, ns_to_msgpack_ext(1))}),  # not an array
    ],
)
def test_msgpack_refuses_other_forms(frame: bytes) -> None:
    assert rewrite_msgpack(frame) is None


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 14, 20])
@pytest.mark.parametrize("ns", [5, 60 * 10**9], ids=["8-byte", "4-byte"])
def test_a_truncated_msgpack_frame_stays_undecodable(cut: int, ns: int) -> None:
    frame = pack([{"T": "t", "S": "AAPL", "c": ["@"] * 3, "t": Ext(-1, ns_to_msgpack_ext(ns))}])
    out = rewrite_msgpack(frame[:-cut])
    if out is not None:
        with pytest.raises(msgspec.DecodeError):
            msgspec.msgpack.decode(out)


@pytest.mark.parametrize(
    "key", [b"\xa1t", b"\xd9\x01t", b"\xda\x00\x01t", b"\xdb\x00\x00\x00\x01t"]
)
def test_msgpack_refuses_a_key_t_holding_anything_but_the_timestamp(key: bytes) -> None:
    good = pack([{"t": Ext(-1, ns_to_msgpack_ext(5))}])
    # the same map with a second key "t" (in any str encoding) holding the integer 5
    frame = good[:1] + b"\x82" + good[2:] + key + b"\x05"
    assert msgspec.msgpack.decode(frame)[0]["t"] == 5
    assert rewrite_msgpack(frame) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xdd\x00\x00\x00\x01\x80",  # array32
        b"\x91\xdf\x00\x00\x00\x00",  # map32
        pack([{"ts_recv": 5, "t": Ext(-1, ns_to_msgpack_ext(5))}]),  # the receiver's to write
        pack([{f"k{i}": i for i in range(14)} | {"t": Ext(-1, ns_to_msgpack_ext(5))}]),  # 15 keys
    ],
)
def test_msgpack_frames_it_cannot_rewrite_are_refused(frame: bytes) -> None:
    assert rewrite_msgpack(frame) is None


def test_msgpack_without_room_is_refused() -> None:
    frame = pack([{"t": Ext(-1, ns_to_msgpack_ext(5))}])
    assert entry_point(rewrite_msgpack_times)(frame, bytearray(len(frame)), STAMP) == -1


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_frame_beyond_the_scratch_room_grows_it_and_stays_fast(
    encoding: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel checks its room itself: a frame too big for the scratch buffer is refused,
    the buffer grows, and the same frame goes the fast way."""
    trades = [
        Trade(symbol="AAPL", ts_event=1_700_000_000_000_000_000 + i, price=1.5, size=i)
        for i in range(400)
    ]
    decoder = AlpacaDecoder("stocks", encoding)
    frame = AlpacaEncoder("stocks", encoding).encode(trades)
    assert len(frame) > decoder._room
    monkeypatch.setattr(
        decoder, "_decode_carefully", lambda *_: pytest.fail("went the careful way")
    )
    decoded = decoder.decode(frame, 7)
    assert decoded.messages == [msgspec.structs.replace(t, ts_recv=7) for t in trades]
    assert decoder._room >= len(frame)


@pytest.mark.parametrize("stream", ["stocks", "crypto"])
def test_a_timestamp_run_into_digits_is_bad_json_on_both_paths(stream: Any) -> None:
    """Found by the fuzzer: ``"t":"...Z"1241327,`` is bad JSON, but the rewrite used to write
    ``"ts_recv":<stamp>`` before the digits, which made one longer, valid stamp."""
    frame = (
        b'[{"T":"t","S":"PIL/BTC","p":4.07e-6,"s":1,'
        b'"t":"1970-01-01T15:23:38.317175868Z"1241327,"x":"FTXU"}]'
    )
    decoder = AlpacaDecoder(stream, "json")
    fast = decoder.decode(frame, 2704)
    assert fast.messages == [] and len(fast.errors) == 1
    assert fast.errors == decoder._decode_carefully(frame, 2704).errors
