"""Bad input gives typed errors with context and counters; good neighbours are never lost."""

import copy
import math
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect
import pytest

from tickd.codecs import alpaca, alpaca_trading, finnhub, newsapi, schema
from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder
from tickd.codecs.errors import CodecError, DecodeError
from tickd.codecs.schema import (
    Bar,
    BookLevel,
    CancelError,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    Imbalance,
    Luld,
    News,
    OrderbookUpdate,
    Quote,
    Trade,
    UpdatedBar,
)

GOOD = (
    b'{"T":"t","S":"AAPL","i":628,"x":"K","p":162.92,"s":3,"c":["@"],"z":"C",'
    b'"t":"2023-04-06T11:54:26.838232225Z"}'
)


def frame(*parts: bytes) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def test_an_unknown_type_is_kept_and_counted_and_its_neighbours_survive() -> None:
    decoder = AlpacaDecoder("stocks")
    result = decoder.decode(frame(GOOD, b'{"T":"zz","S":"AAPL"}', GOOD), ts_recv=9)
    assert [type(m) for m in result.messages] == [Trade, Trade]
    assert [u.type for u in result.unknown] == ["zz"] and result.errors == []
    assert result.unknown[0].raw == b'{"T":"zz","S":"AAPL"}'
    assert decoder.stats.as_dict() == {
        "errors": 0,
        "unknown": 1,
        "unknown_types": {"zz": 1},
    }


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"T":"t","S":"AAPL"}', "missing required field"),
        (b'{"T":"t","S":"AAPL","p":"x","s":1,"t":"2023-04-06T11:54:26Z"}', "Expected `float`"),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":1.5,"t":"2023-04-06T11:54:26Z"}', "Expected `int`"),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":1,"t":"yesterday"}', "bad timestamp"),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":18446744073709551616,"t":"2023-04-06T11:54:26Z"}', "<="),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":1,"t":"2300-04-06T11:54:26Z"}', "int64"),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":1,"t":"2023-02-30T11:54:26.5Z"}', "bad timestamp"),
        (b'{"T":"t","S":"AAPL","p":1.5,"s":1,"t":"2023-04-06T11:54:26.+5Z"}', "bad timestamp"),
        (b'{"S":"AAPL"}', "not a message object"),
        (b"42", "not a message object"),
    ],
)
def test_a_bad_message_is_a_typed_error_with_its_index_and_excerpt(bad: bytes, reason: str) -> None:
    decoder = AlpacaDecoder("stocks")
    result = decoder.decode(frame(GOOD, bad, GOOD))
    assert len(result.messages) == 2
    (error,) = result.errors
    assert isinstance(error, DecodeError)
    assert error.source == "alpaca.stocks.json" and error.index == 1 and reason in error.reason
    assert error.excerpt and error.excerpt[:1] in (b"{", b"4")
    assert decoder.stats.errors == 1


@pytest.mark.parametrize("data", [b"", b"not json", b"{}", b'{"T":"t"}', b"[", b"\xff\xfe", "[1,2"])
def test_a_frame_that_is_not_an_array_is_one_error(data: bytes | str) -> None:
    result = AlpacaDecoder("stocks").decode(data)
    assert result.messages == [] and len(result.errors) == 1 and result.errors[0].index == -1


def test_msgpack_frames_with_text_timestamps_or_foreign_extensions_are_errors() -> None:
    decoder = AlpacaDecoder("stocks", "msgpack")
    json_like = alpaca.msgspec.msgpack.encode(
        [{"T": "t", "S": "A", "p": 1.0, "s": 1, "t": "2023-04-06T11:54:26Z"}]
    )
    assert len(decoder.decode(json_like).errors) == 1
    foreign = alpaca.msgspec.msgpack.encode(
        [{"T": "t", "S": "A", "p": 1.0, "s": 1, "t": alpaca.msgspec.msgpack.Ext(5, b"\0" * 8)}]
    )
    (error,) = decoder.decode(foreign).errors
    assert "not a timestamp" in error.reason
    twelve = alpaca.msgspec.msgpack.encode(
        [{"T": "t", "S": "A", "p": 1.0, "s": 1, "t": alpaca.msgspec.msgpack.Ext(-1, b"\0" * 12)}]
    )
    (trade,) = decoder.decode(twelve, 3).messages
    assert trade.ts_event == 0 and trade.ts_recv == 3


def test_a_frame_mixing_good_bad_and_unknown_keeps_order_of_good_ones() -> None:
    quote = (
        b'{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"X","ap":87.67,"as":1,'
        b'"t":"2021-02-22T15:51:45.3355677Z","c":["R"],"z":"C"}'
    )
    result = AlpacaDecoder("stocks").decode(frame(quote, b'{"T":"q"}', b'{"T":"?"}', GOOD))
    assert [type(m) for m in result.messages] == [Quote, Trade]
    assert [e.index for e in result.errors] == [1]


def test_encoders_refuse_what_the_wire_cannot_carry() -> None:
    with pytest.raises(CodecError):
        AlpacaEncoder("crypto").encode([Trade(symbol="A", ts_event=0, price=1.0, size=1)])
    with pytest.raises(CodecError):
        AlpacaEncoder("stocks").encode([Trade(symbol="A", ts_event=10**30, price=1.0, size=1)])
    with pytest.raises(CodecError):
        AlpacaEncoder("options").encode(
            [Trade(symbol="A", ts_event=0, price=1.0, size=1, conditions=("A", "B"))]
        )
    with pytest.raises(CodecError):
        AlpacaEncoder("news").encode(
            [News(provider="alpaca", id="abc", ts_event=0, ts_updated=0, headline="h")]
        )
    with pytest.raises(ValueError, match="milliseconds"):
        finnhub.encode_trades([CryptoTrade(symbol="X:Y", ts_event=1, price=1.0, size=0.5)])


def test_encoders_leave_out_fields_at_their_default() -> None:
    bar = DailyBar(symbol="SPY", ts_event=0, open=1, high=2, low=0.5, close=1.5, volume=10)
    assert AlpacaEncoder("stocks").encode([bar]) == (
        b'[{"T":"d","S":"SPY","o":1,"h":2,"l":0.5,"c":1.5,"v":10,"t":"1970-01-01T00:00:00Z"}]'
    )  # Alpaca's order of keys (the schema declares its fields in it)


def test_client_message_errors_are_typed() -> None:
    assert isinstance(alpaca.decode_client_message(b'{"action":"dance"}'), DecodeError)
    assert isinstance(alpaca.decode_client_message(b"\x00", "msgpack"), DecodeError)
    assert isinstance(alpaca_trading.decode_client_message(b'{"action":"listen"}'), DecodeError)
    assert isinstance(alpaca_trading.decode_client_message(b'{"action":"sing"}'), DecodeError)
    assert isinstance(alpaca_trading.decode_client_message(b"nope"), DecodeError)
    assert isinstance(finnhub.decode_client_message(b'{"type":"hop","symbol":"A"}'), DecodeError)


@pytest.mark.parametrize(
    "data",
    [
        b'{"stream":"trade_updates","data":null}',
        b'{"stream":"trade_updates","data":{"event":"fill"}}',
        b'{"stream":"trade_updates","data":{"event":"fill","order":{"id":"x","qty":"abc"}}}',
        b'{"stream":"trade_updates","data":{"event":"new","order":{"id":"x","created_at":"?"}}}',
        b'{"stream":"authorization"}',
        b"[]",
        b"",
    ],
)
def test_trading_stream_bad_frames(data: bytes) -> None:
    decoder = alpaca_trading.TradingStreamDecoder()
    result = decoder.decode(data)
    assert result.messages == [] and len(result.errors) == 1 and decoder.stats.errors == 1


def test_trading_stream_unknown_stream_is_counted() -> None:
    decoder = alpaca_trading.TradingStreamDecoder()
    result = decoder.decode(b'{"stream":"account_updates","data":{}}')
    assert [u.type for u in result.unknown] == ["account_updates"]
    error = decoder.decode(b'{"action":"error"}').messages[0]
    assert error.msg == ""


def test_finnhub_bad_items_do_not_sink_the_frame() -> None:
    decoder = finnhub.FinnhubDecoder()
    result = decoder.decode(
        b'{"type":"trade","data":[{"p":1.5,"s":"AAPL","t":1575526691134,"v":100},'
        b'{"p":1.5,"s":"AAPL","t":1575526691134,"v":0.5},'
        b'{"p":1.5,"s":"AAPL","t":-5,"v":1},{"p":"x"},'
        b'{"p":2.5,"s":"BINANCE:BTCUSDT","t":1575526691135,"v":0.25},'
        b'{"p":1.5,"s":"AAPL","t":1575526691134,"v":1e300}]}'
    )
    assert [type(m) for m in result.messages] == [Trade, CryptoTrade]
    assert [e.index for e in result.errors] == [1, 2, 3, 5]
    assert "fractional size" in result.errors[0].reason
    assert (
        decoder.decode(b'{"type":"error","msg":"Subscribing to too many symbols"}').messages[0].msg
    )
    assert decoder.decode(b'{"type":"mystery"}').unknown[0].type == "mystery"
    assert len(decoder.decode(b"<html>").errors) == 1
    assert decoder.stats.errors == 5 and decoder.stats.unknown == 1


def test_rest_bodies_that_are_wrong() -> None:
    assert len(finnhub.decode_company_news(b'{"error":"no"}').errors) == 1
    news = finnhub.decode_company_news(b'[{"id":1,"datetime":5,"headline":"h"},{"id":"x"}]')
    assert len(news.messages) == 1 and news.errors[0].index == 1
    assert len(finnhub.decode_basic_financials(b"[]").errors) == 1
    assert len(newsapi.decode_articles(b"oops").errors) == 1
    articles = newsapi.decode_articles(
        b'{"status":"ok","totalResults":2,"articles":['
        b'{"url":"u1","publishedAt":"2024-04-26T04:14:38Z","title":null,"source":{"id":null}},'
        b'{"url":"u2","publishedAt":"later"}]}'
    )
    assert [n.id for n in articles.messages] == ["u1"] and articles.errors[0].index == 1
    with pytest.raises(ValueError, match="url"):
        newsapi.encode_articles(
            [News(provider="newsapi", id="a", ts_event=0, ts_updated=0, headline="h")]
        )


_T = 1_700_000_000_000_000_000
# One message of each market-data type that carries floats, every float field set.
_OHLC: dict[str, Any] = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "vwap": 1.2}
_FLOATY: list[tuple[str, Any]] = [
    ("stocks", Trade(symbol="A", ts_event=_T, price=1.5, size=1)),
    ("stocks", Quote(symbol="A", ts_event=_T, bid_price=1.5, bid_size=1, ask_price=2, ask_size=1)),
    ("stocks", Bar(symbol="A", ts_event=_T, volume=9, **_OHLC)),
    ("stocks", UpdatedBar(symbol="A", ts_event=_T, volume=9, **_OHLC)),
    ("stocks", DailyBar(symbol="A", ts_event=_T, volume=9, **_OHLC)),
    ("stocks", Correction(symbol="A", ts_event=_T, exchange="V", original_id=1, original_price=1.5,
                          original_size=1, corrected_id=2, corrected_price=1.25, corrected_size=1)),
    ("stocks", CancelError(symbol="A", ts_event=_T, trade_id=1, exchange="V", price=1.5, size=1,
                           action="C")),
    ("stocks", Luld(symbol="A", ts_event=_T, limit_up=2.5, limit_down=0.5, indicator="B")),
    ("stocks", Imbalance(symbol="A", ts_event=_T, price=1.5)),
    ("crypto", CryptoTrade(symbol="BTC/USD", ts_event=_T, price=1.5, size=0.25)),
    ("crypto", CryptoQuote(symbol="BTC/USD", ts_event=_T, bid_price=1.5, bid_size=0.5,
                           ask_price=1.6, ask_size=0.75)),
    ("crypto", CryptoBar(symbol="BTC/USD", ts_event=_T, volume=0.5, **_OHLC)),
    ("crypto", CryptoUpdatedBar(symbol="BTC/USD", ts_event=_T, volume=0.5, **_OHLC)),
    ("crypto", CryptoDailyBar(symbol="BTC/USD", ts_event=_T, volume=0.5, **_OHLC)),
    ("crypto", OrderbookUpdate(symbol="BTC/USD", ts_event=_T, bids=(BookLevel(1.5, 0.5),),
                               asks=(BookLevel(1.6, 0.25),))),
]  # fmt: skip


def _float_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where the floats are in a decoded msgpack message (keys, and indexes into book levels)."""
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _float_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _float_paths(v, (*path, i))]
    return []


def _non_finite_cases() -> list[Any]:
    cases = []
    for stream, message in _FLOATY:
        (wire,) = msgspec.msgpack.decode(AlpacaEncoder(stream, "msgpack").encode([message]))
        for path in _float_paths(wire):
            name = f"{type(message).__name__}.{'.'.join(map(str, path))}"
            cases += [pytest.param(stream, wire, path, bad, id=f"{name}={bad}") for bad in _BAD]
    return cases


_BAD = (math.nan, math.inf, -math.inf)


def test_the_non_finite_cases_cover_every_float_field_the_review_named() -> None:
    named = {c.id.split("=")[0] for c in _non_finite_cases()}
    assert {
        "CryptoTrade.s", "CryptoQuote.bs", "CryptoQuote.as", "CryptoBar.v", "CryptoBar.vw",
        "Correction.op", "Correction.cp", "Luld.u", "Luld.d", "Bar.vw", "OrderbookUpdate.b.0.s",
    } <= named  # fmt: skip


@pytest.mark.parametrize(("stream", "wire", "path", "bad"), _non_finite_cases())
def test_msgpack_refuses_a_nan_or_infinity_in_any_float_field_as_a_counted_error(
    stream: Any, wire: dict[str, Any], path: tuple[Any, ...], bad: float
) -> None:
    damaged = copy.deepcopy(wire)
    target: Any = damaged
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = bad
    decoder = AlpacaDecoder(stream, "msgpack")
    good = msgspec.msgpack.encode([wire, damaged, wire])
    result = decoder.decode(good)
    assert len(result.messages) == 2  # its neighbours survive
    (error,) = result.errors
    assert error.index == 1 and error.source == f"alpaca.{stream}.msgpack"
    assert decoder.stats.errors == 1


def test_every_float_in_the_schema_is_bounded_to_the_finite_range() -> None:
    """A float field added later without ``Finite`` (or ``Price``) would let msgpack's NaN in."""
    structs = [getattr(schema, name) for name in schema.__all__]
    fields = [
        (kind.__name__, info)
        for kind in structs
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct)
        for info in msgspec.inspect.type_info(kind).fields
    ]
    unbounded = [
        f"{name}.{info.name}"
        for name, info in fields
        for float_type in _float_types(info.type)
        if float_type.ge is None or float_type.le is None
    ]
    assert len(fields) > 100 and unbounded == []


def _float_types(info: Any) -> list[Any]:
    if isinstance(info, msgspec.inspect.FloatType):
        return [info]
    if isinstance(info, msgspec.inspect.UnionType):
        return [f for t in info.types for f in _float_types(t)]
    if isinstance(info, msgspec.inspect.DictType):
        return _float_types(info.value_type)
    if isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
        return _float_types(info.item_type)
    return []


_SAMPLES = Path(__file__).parents[1] / "data" / "samples"
_FILL = msgspec.json.decode((_SAMPLES / "alpaca_trade_update_fill_crypto.msg.json").read_bytes())


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "where", [("qty",), ("price",), ("position_qty",), ("order", "filled_avg_price")]
)
def test_the_trading_stream_refuses_a_non_finite_decimal(bad: str, where: tuple[str, ...]) -> None:
    """msgspec reads "NaN" as a Decimal; an sNaN then raises on the first comparison, in the
    portfolio, far from the frame: a counted decode error instead."""
    frame = copy.deepcopy(_FILL)
    target = frame["data"]
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = bad
    decoder = alpaca_trading.TradingStreamDecoder()
    result = decoder.decode(msgspec.json.encode(frame))
    assert result.messages == [] and decoder.stats.errors == 1
    assert where[-1] in result.errors[0].reason and "finite" in result.errors[0].reason
    assert decoder.decode(msgspec.json.encode(_FILL)).messages  # the good frame still decodes
