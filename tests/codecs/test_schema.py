"""The schema's own rules: receive stamps, bar kinds, int64 bounds, tags."""

from typing import Any

import msgspec
import pytest

from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder
from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoDailyBar,
    CryptoUpdatedBar,
    DailyBar,
    Trade,
    UpdatedBar,
)


def trade() -> Trade:
    return Trade(symbol="AAPL", ts_event=1, price=1.0, size=1)


def test_the_receive_stamp_is_zero_until_a_decoder_sets_it() -> None:
    assert trade().ts_recv == 0
    assert Trade(symbol="A", ts_event=1, price=1.0, size=1, ts_recv=3).ts_recv == 3


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("stream", ["stocks", "options"])
def test_a_receive_stamp_on_the_wire_is_replaced_by_the_receivers(
    stream: Any, encoding: Any
) -> None:
    frame = AlpacaEncoder(stream, encoding).encode([trade()])
    module: Any = msgspec.json if encoding == "json" else msgspec.msgpack
    raw = module.decode(frame)
    raw[0]["ts_recv"] = 5
    result = AlpacaDecoder(stream, encoding).decode(module.encode(raw), ts_recv=42)
    assert result.errors == [] and [m.ts_recv for m in result.messages] == [42]


def test_bar_kinds_are_subclasses_with_their_own_tag() -> None:
    for minute, updated, daily in (
        (Bar, UpdatedBar, DailyBar),
        (CryptoBar, CryptoUpdatedBar, CryptoDailyBar),
    ):
        assert issubclass(updated, minute) and issubclass(daily, minute)
        assert (minute.kind, updated.kind, daily.kind) == ("minute", "updated", "daily")
        tags = [cls.__struct_config__.tag for cls in (minute, updated, daily)]
        assert tags == ["b", "u", "d"]


def test_sizes_beyond_int64_are_refused_on_decode() -> None:
    body = b'{"T":"t","S":"A","t":1,"p":1.0,"s":9223372036854775808}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=Trade)
    assert msgspec.json.decode(body.replace(b"808", b"807"), type=Trade).size == 2**63 - 1
