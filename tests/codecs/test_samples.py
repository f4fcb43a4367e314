"""Every real sample message decodes, exactly, with no error and nothing unknown."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tickd.codecs import alpaca, alpaca_trading, finnhub, newsapi
from tickd.codecs.alpaca import AlpacaDecoder
from tickd.codecs.schema import (
    ApiError,
    Bar,
    CancelError,
    Correction,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    DailyBar,
    Imbalance,
    Luld,
    News,
    OrderbookUpdate,
    OrderUpdate,
    Ping,
    Quote,
    StreamError,
    Subscription,
    Success,
    Trade,
    TradingStatus,
)

# A copy of ../shared/samples (provenance in its INDEX.md), so a clone is self-contained.
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"

TS_RECV = 1_700_000_000_123_456_789


def _stream_of(name: str) -> alpaca.Stream:
    for prefix, stream in (
        ("alpaca_stock", "stocks"),
        ("alpaca_test_stream", "stocks"),
        ("alpaca_md", "stocks"),
        ("alpaca_crypto", "crypto"),
        ("alpaca_option", "options"),
        ("alpaca_news", "news"),
    ):
        if name.startswith(prefix):
            return stream  # type: ignore[return-value]
    raise AssertionError(f"no stream for {name}")


def _decode_clean(
    stream: alpaca.Stream, frame: bytes, encoding: alpaca.Encoding = "json"
) -> list[Any]:
    result = AlpacaDecoder(stream, encoding).decode(frame, TS_RECV)
    assert result.errors == [] and result.unknown == [], (frame[:200], result)
    return result.messages


def test_the_samples_folder_is_there() -> None:
    assert len(list(SAMPLES.glob("*.json*"))) >= 30


MSG_FILES = sorted(
    p.name for p in SAMPLES.glob("alpaca_*.msg.json") if "trade_update" not in p.name
)


@pytest.mark.parametrize("name", MSG_FILES)
def test_every_alpaca_market_data_message_decodes(name: str) -> None:
    body = (SAMPLES / name).read_bytes()
    (message,) = _decode_clean(_stream_of(name), b"[" + body + b"]")
    assert getattr(message, "ts_recv", TS_RECV) == TS_RECV


FRAME_FILES = sorted(p.name for p in SAMPLES.glob("alpaca_*.frames.jsonl"))


@pytest.mark.parametrize("name", FRAME_FILES)
def test_every_alpaca_session_frame_decodes(name: str) -> None:
    lines = [line for line in (SAMPLES / name).read_bytes().splitlines() if line.strip()]
    stream = _stream_of(name)
    for line in lines:
        messages = _decode_clean(stream, line)
        assert len(messages) == len(json.loads(line))


def test_stock_trade_keeps_every_field_and_the_exact_time() -> None:
    (trade,) = _decode_clean(
        "stocks", b"[" + (SAMPLES / "alpaca_stock_trade.msg.json").read_bytes() + b"]"
    )
    assert trade == Trade(
        symbol="AAPL",
        ts_event=1614009104_208_000_000,
        price=126.55,
        size=1,
        trade_id=96921,
        exchange="D",
        conditions=("@", "I"),
        tape="C",
        ts_recv=TS_RECV,
    )


def test_nine_fraction_digits_are_kept_where_msgspec_would_round() -> None:
    frame = (SAMPLES / "alpaca_stock_multi_quote.frames.jsonl").read_bytes().strip()
    quotes = _decode_clean("stocks", frame)
    assert [q.ts_event % 1_000_000_000 for q in quotes] == [335567700, 335689322, 335806018]
    assert all(type(q) is Quote for q in quotes)


def test_each_stock_message_type_maps_to_its_struct() -> None:
    expected = {
        "alpaca_stock_quote.msg.json": Quote,
        "alpaca_stock_bar.msg.json": Bar,
        "alpaca_stock_daily_bar.msg.json": DailyBar,
        "alpaca_stock_trade_correction.msg.json": Correction,
        "alpaca_stock_trade_cancel.msg.json": CancelError,
        "alpaca_stock_luld.msg.json": Luld,
        "alpaca_stock_trading_status.msg.json": TradingStatus,
        "alpaca_stock_imbalance.msg.json": Imbalance,
    }
    for name, cls in expected.items():
        (message,) = _decode_clean("stocks", b"[" + (SAMPLES / name).read_bytes() + b"]")
        assert type(message) is cls, name


def test_bar_kinds_and_optional_fields() -> None:
    (daily,) = _decode_clean(
        "stocks", b"[" + (SAMPLES / "alpaca_stock_daily_bar.msg.json").read_bytes() + b"]"
    )
    assert isinstance(daily, Bar) and daily.kind == "daily"
    assert daily.trade_count is None and daily.vwap is None
    assert daily.volume == 749378 and isinstance(daily.volume, int)
    (minute,) = _decode_clean(
        "stocks", b"[" + (SAMPLES / "alpaca_stock_bar.msg.json").read_bytes() + b"]"
    )
    assert minute.kind == "minute" and minute.trade_count == 461 and minute.vwap == 389.062639


def test_crypto_sizes_are_fractional_and_books_keep_levels() -> None:
    def one(name: str) -> Any:
        (message,) = _decode_clean("crypto", b"[" + (SAMPLES / name).read_bytes() + b"]")
        return message

    trade = one("alpaca_crypto_trade.msg.json")
    assert type(trade) is CryptoTrade and trade.size == 29.205707815 and trade.taker_side == "S"
    assert trade.trade_id == 3447222699101865076
    assert type(one("alpaca_crypto_quote.msg.json")) is CryptoQuote
    assert type(one("alpaca_crypto_bar.msg.json")) is CryptoBar
    snapshot = one("alpaca_crypto_orderbook_snapshot.msg.json")
    assert type(snapshot) is OrderbookUpdate and snapshot.reset and len(snapshot.bids) == 3
    assert snapshot.ts_event % 1_000_000_000 == 796132210  # 8 fraction digits on the wire
    removal = one("alpaca_crypto_orderbook_remove.msg.json")
    assert not removal.reset and removal.bids[0].size == 0 and removal.asks == ()


def test_option_conditions_arrive_as_one_string() -> None:
    (trade,) = _decode_clean(
        "options", b"[" + (SAMPLES / "alpaca_option_trade.msg.json").read_bytes() + b"]"
    )
    assert type(trade) is Trade and trade.conditions == ("S",) and trade.size == 1
    (quote,) = _decode_clean(
        "options", b"[" + (SAMPLES / "alpaca_option_quote.msg.json").read_bytes() + b"]"
    )
    assert type(quote) is Quote and quote.conditions == ("A",)


def test_news_becomes_the_unified_news_struct() -> None:
    (news,) = _decode_clean("news", b"[" + (SAMPLES / "alpaca_news.msg.json").read_bytes() + b"]")
    assert type(news) is News and news.provider == "alpaca" and news.id == "24918784"
    assert news.symbols == ("CRSR",) and news.ts_updated - news.ts_event == 1_000_000_000


def test_control_frames() -> None:
    lines = (SAMPLES / "alpaca_md_control.frames.jsonl").read_bytes().splitlines()
    assert _decode_clean("stocks", lines[0]) == [Success(msg="connected")]
    (ack,) = _decode_clean("stocks", lines[2])
    assert type(ack) is Subscription and ack.quotes == ("AMD", "CLDR") and ack.imbalances is None
    (news_ack,) = _decode_clean("news", lines[4])
    assert news_ack == Subscription(news=("*",))


def test_every_error_code_is_typed() -> None:
    lines = (SAMPLES / "alpaca_md_errors.frames.jsonl").read_bytes().splitlines()
    codes = [_decode_clean("stocks", line)[0] for line in lines]
    assert all(type(e) is StreamError for e in codes)
    assert [e.code for e in codes] == [*range(400, 414), 500]


def _hex_frames(name: str) -> list[tuple[str, bytes]]:
    frames, label = [], ""
    for line in (SAMPLES / name).read_text().splitlines():
        if line.startswith("#"):
            label = line[1:].strip()
        elif line.strip():
            frames.append((label, bytes.fromhex(line.strip())))
    return frames


def test_derived_msgpack_frames_decode_to_the_same_structs_as_their_json() -> None:
    frames = _hex_frames("alpaca_md_frames_DERIVED.msgpack.hex.txt")
    assert len(frames) >= 50
    for label, frame in frames:
        source = label.split(" ")[0]
        file_name, _, line_no = source.partition(":")
        stream = _stream_of(file_name)
        from_msgpack = _decode_clean(stream, frame, "msgpack")
        body = (SAMPLES / file_name).read_bytes()
        json_frame = body.splitlines()[int(line_no) - 1] if line_no else b"[" + body + b"]"
        assert from_msgpack == _decode_clean(stream, json_frame), label


def test_alpaca_py_fixtures_decode_in_msgpack_and_json() -> None:
    fixtures = json.loads((SAMPLES / "alpaca_py_test_websocket_fixtures.json").read_bytes())
    for label, frame in _hex_frames("alpaca_py_test_websocket_fixtures.msgpack.hex.txt"):
        kind = label.split()[0]
        stream: alpaca.Stream = {"o": "crypto", "n": "news"}.get(fixtures[kind]["T"], "stocks")  # type: ignore[assignment]
        (message,) = _decode_clean(stream, frame, "msgpack")
        if kind == "news":
            assert message.ts_event == 1718633460 * 1_000_000_000
        else:
            assert (
                message.ts_event == 10 * 1_000_000_000 + 10
            )  # Timestamp(seconds=10, nanoseconds=10)
        assert msgpack.unpackb(frame, raw=False)[0]["T"] == fixtures[kind]["T"]


def test_client_messages_decode() -> None:
    for line in (SAMPLES / "alpaca_md_client_messages.jsonl").read_bytes().splitlines():
        message = alpaca.decode_client_message(line)
        assert isinstance(
            message, alpaca.AuthRequest | alpaca.SubscribeRequest | alpaca.UnsubscribeRequest
        ), line
        assert alpaca.decode_client_message(alpaca.encode_client_message(message)) == message
        assert (
            alpaca.decode_client_message(
                alpaca.encode_client_message(message, "msgpack"), "msgpack"
            )
            == message
        )


# --- trading stream ------------------------------------------------------------------------------


def test_trade_update_fills_decode_with_decimals_and_offsets() -> None:
    decoder = alpaca_trading.TradingStreamDecoder()
    result = decoder.decode(
        (SAMPLES / "alpaca_trade_update_fill_crypto.msg.json").read_bytes(), TS_RECV
    )
    assert result.errors == [] and result.unknown == []
    (update,) = result.messages
    assert type(update) is OrderUpdate and update.event == "fill"
    assert update.price == Decimal("105.8988475") and update.position_qty == Decimal("0")
    # "2022-04-19T13:45:04.981350886-04:00" is 17:45:04.981350886 UTC
    assert update.order.created_at == 1650390304_981350886
    assert update.order.filled_qty == Decimal("1790.86") and update.order.order_type == "market"

    mleg = decoder.decode((SAMPLES / "alpaca_trade_update_fill_mleg_option.msg.json").read_bytes())
    (fill,) = mleg.messages
    assert (
        fill.order.order_class == "mleg"
        and fill.order.legs is not None
        and len(fill.order.legs) == 2
    )
    assert fill.leg_executions is not None and [leg.price for leg in fill.leg_executions] == [
        Decimal("1.6"),
        Decimal("0.02"),
    ]
    assert fill.event_id == "01JJ3WE73W5PG672TC4XACXH5R" and fill.position_qtys is not None


def test_alpaca_py_trade_update_payload_decodes_inside_its_envelope() -> None:
    data = (SAMPLES / "alpaca_py_test_trade_update_accepted.msg.json").read_bytes()
    result = alpaca_trading.TradingStreamDecoder().decode(
        b'{"stream":"trade_updates","data":' + data + b"}"
    )
    (update,) = result.messages
    assert update.event == "accepted" and update.order.client_order_id == "123"
    assert update.ts_event == 1735729871_123456000


def test_trading_stream_control_lines() -> None:
    decoder = alpaca_trading.TradingStreamDecoder()
    for line in (SAMPLES / "alpaca_trading_stream_control.jsonl").read_bytes().splitlines():
        if line.startswith(b'{"action":"auth') or line.startswith(b'{"action":"listen"'):
            request = alpaca_trading.decode_client_message(line)
            assert isinstance(
                request, alpaca_trading.TradingAuthRequest | alpaca_trading.ListenRequest
            ), line
            assert (
                alpaca_trading.decode_client_message(alpaca_trading.encode_client_message(request))
                == request
            )
        else:
            result = decoder.decode(line)
            assert result.errors == [] and result.unknown == [] and len(result.messages) == 1, line
            assert (
                alpaca_trading.TradingStreamDecoder()
                .decode(alpaca_trading.encode_control(result.messages[0]))
                .messages
                == result.messages
            )


# --- Finnhub and NewsAPI -------------------------------------------------------------------------


def test_finnhub_websocket_samples() -> None:
    decoder = finnhub.FinnhubDecoder()
    (trade,) = decoder.decode(
        (SAMPLES / "finnhub_ws_trade.msg.json").read_bytes(), TS_RECV
    ).messages
    assert trade == CryptoTrade(
        symbol="BINANCE:BTCUSDT",
        ts_event=1575526691134 * 1_000_000,
        price=7296.89,
        size=0.011467,
        ts_recv=TS_RECV,
    )
    (news,) = decoder.decode((SAMPLES / "finnhub_ws_news.msg.json").read_bytes()).messages
    assert news.provider == "finnhub" and news.id == "119440189" and news.symbols == ("CVVUF",)
    (release,) = decoder.decode(
        (SAMPLES / "finnhub_ws_press_release.msg.json").read_bytes()
    ).messages
    assert release.category == "press_release" and release.symbols == ("PAE", "ZIXI", "KRA")
    assert decoder.stats.errors == 0 and decoder.stats.unknown == 0


def test_finnhub_client_and_ping_lines() -> None:
    for line in (SAMPLES / "finnhub_ws_client_and_control.jsonl").read_bytes().splitlines():
        if line == b'{"type":"ping"}':
            assert finnhub.FinnhubDecoder().decode(line, 5).messages == [Ping(ts_recv=5)]
        else:
            request = finnhub.decode_client_message(line)
            assert isinstance(request, finnhub.FinnhubRequest), line
            assert finnhub.decode_client_message(finnhub.encode_client_message(request)) == request


def test_finnhub_rest_samples() -> None:
    news = finnhub.decode_company_news((SAMPLES / "finnhub_company_news.json").read_bytes())
    assert news.errors == [] and len(news.messages) == 3
    assert all(n.provider == "finnhub" and n.symbols == ("AAPL",) for n in news.messages)
    (metrics,) = finnhub.decode_basic_financials(
        (SAMPLES / "finnhub_basic_financials.json").read_bytes()
    ).messages
    assert metrics.symbol == "AAPL" and metrics.metrics["52WeekLowDate"] == "2019-01-14"
    assert metrics.series["annual"]["currentRatio"][0].value == 1.5401


def test_newsapi_error_sample_is_an_api_error() -> None:
    (error,) = newsapi.decode_articles((SAMPLES / "newsapi_errors.jsonl").read_bytes()).messages
    assert type(error) is ApiError and error.code == "rateLimited"
