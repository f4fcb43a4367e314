"""``decode(encode(x)) == x`` for every struct, through every wire that carries it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickd.codecs import alpaca, alpaca_trading, finnhub, newsapi
from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder
from tickd.codecs.synthetic import strategies as s

RECV = st.integers(min_value=0, max_value=s.INT64_MAX)
ENCODINGS = ("json", "msgpack")


def _stamped(message: Any, ts_recv: int) -> Any:
    if "ts_recv" in getattr(message, "__struct_fields__", ()):
        return msgspec.structs.replace(message, ts_recv=ts_recv)
    return message


def _alpaca_round_trip(
    stream: alpaca.Stream, encoding: alpaca.Encoding, messages: list[Any], ts_recv: int
) -> None:
    frame = AlpacaEncoder(stream, encoding).encode(messages)
    result = AlpacaDecoder(stream, encoding).decode(frame, ts_recv)
    assert result.errors == [] and result.unknown == []
    assert result.messages == [_stamped(m, ts_recv) for m in messages]
    assert [type(m) for m in result.messages] == [type(m) for m in messages]


STOCK_STRUCTS = {
    "trades": s.trades(),
    "quotes": s.quotes(),
    "bars": s.bars(),
    "corrections": s.corrections(),
    "cancel_errors": s.cancel_errors(),
    "lulds": s.lulds(),
    "trading_statuses": s.trading_statuses(),
    "imbalances": s.imbalances(),
    "control": s.control_messages(),
}
CRYPTO_STRUCTS = {
    "trades": s.crypto_trades(),
    "quotes": s.crypto_quotes(),
    "bars": s.crypto_bars(),
    "orderbooks": s.orderbook_updates(),
    "control": s.control_messages(),
}
OPTION_STRUCTS = {"trades": s.options_trades(), "quotes": s.options_quotes()}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", sorted(STOCK_STRUCTS))
def test_stock_structs(name: str, encoding: alpaca.Encoding) -> None:
    @given(STOCK_STRUCTS[name], RECV)
    def check(message: Any, ts_recv: int) -> None:
        _alpaca_round_trip("stocks", encoding, [message], ts_recv)

    check()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", sorted(CRYPTO_STRUCTS))
def test_crypto_structs(name: str, encoding: alpaca.Encoding) -> None:
    @given(CRYPTO_STRUCTS[name], RECV)
    def check(message: Any, ts_recv: int) -> None:
        _alpaca_round_trip("crypto", encoding, [message], ts_recv)

    check()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", sorted(OPTION_STRUCTS))
def test_option_structs(name: str, encoding: alpaca.Encoding) -> None:
    @given(OPTION_STRUCTS[name], RECV)
    def check(message: Any, ts_recv: int) -> None:
        _alpaca_round_trip("options", encoding, [message], ts_recv)

    check()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_alpaca_news(encoding: alpaca.Encoding) -> None:
    @given(s.news("alpaca"), RECV)
    def check(message: Any, ts_recv: int) -> None:
        _alpaca_round_trip("news", encoding, [message], ts_recv)

    check()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("stream", ["stocks", "crypto"])
def test_whole_frames_of_mixed_messages(stream: alpaca.Stream, encoding: alpaca.Encoding) -> None:
    @given(st.lists(s.alpaca_messages(stream), min_size=1, max_size=30), RECV)
    @settings(max_examples=200)
    def check(messages: list[Any], ts_recv: int) -> None:
        _alpaca_round_trip(stream, encoding, messages, ts_recv)

    check()


@given(st.one_of(s.subscriptions()), st.sampled_from(ENCODINGS))
def test_client_subscribe_messages(ack: Any, encoding: alpaca.Encoding) -> None:
    fields = msgspec.structs.asdict(ack)
    for request in (alpaca.SubscribeRequest(**fields), alpaca.UnsubscribeRequest(**fields)):
        data = alpaca.encode_client_message(request, encoding)
        assert alpaca.decode_client_message(data, encoding) == request


@given(s.texts(), s.texts(), st.sampled_from(ENCODINGS))
def test_client_auth_messages(key: str, secret: str, encoding: alpaca.Encoding) -> None:
    request = alpaca.AuthRequest(key, secret)
    assert (
        alpaca.decode_client_message(alpaca.encode_client_message(request, encoding), encoding)
        == request
    )


@given(
    st.lists(st.one_of(s.finnhub_trades(), s.finnhub_crypto_trades()), min_size=1, max_size=10),
    RECV,
)
def test_finnhub_trades(trades: list[Any], ts_recv: int) -> None:
    result = finnhub.FinnhubDecoder().decode(finnhub.encode_trades(trades), ts_recv)
    assert result.errors == [] and result.messages == [_stamped(t, ts_recv) for t in trades]


@given(st.lists(s.news("finnhub"), max_size=5), RECV)
def test_finnhub_news_over_websocket_and_rest(items: list[Any], ts_recv: int) -> None:
    expected = [_stamped(n, ts_recv) for n in items]
    assert finnhub.FinnhubDecoder().decode(finnhub.encode_news(items), ts_recv).messages == expected
    assert (
        finnhub.decode_company_news(finnhub.encode_company_news(items), ts_recv).messages
        == expected
    )


@given(s.company_metrics(), RECV)
def test_finnhub_basic_financials(metrics: Any, ts_recv: int) -> None:
    decoded = finnhub.decode_basic_financials(finnhub.encode_basic_financials(metrics), ts_recv)
    assert decoded.messages == [_stamped(metrics, ts_recv)]


@given(st.sampled_from(["subscribe", "unsubscribe", "subscribe-news", "subscribe-pr"]), s.texts())
def test_finnhub_client_messages(kind: Any, symbol: str) -> None:
    request = finnhub.FinnhubRequest(kind, symbol)
    assert finnhub.decode_client_message(finnhub.encode_client_message(request)) == request


@given(st.lists(s.news("newsapi"), max_size=5), RECV)
def test_newsapi_articles(items: list[Any], ts_recv: int) -> None:
    result = newsapi.decode_articles(newsapi.encode_articles(items), ts_recv)
    assert result.errors == [] and result.messages == [_stamped(n, ts_recv) for n in items]


@given(s.api_errors())
def test_newsapi_errors(error: Any) -> None:
    assert newsapi.decode_articles(newsapi.encode_error(error)).messages == [error]


@given(s.order_updates(), RECV)
def test_trade_updates(update: Any, ts_recv: int) -> None:
    result = alpaca_trading.TradingStreamDecoder().decode(
        alpaca_trading.encode_trade_update(update), ts_recv
    )
    assert result.errors == [] and result.messages == [_stamped(update, ts_recv)]


@given(
    st.one_of(
        s.authorizations(),
        s.listenings(),
        s.stream_errors().map(lambda e: msgspec.structs.replace(e, code=0)),
    )
)
def test_trading_stream_control(message: Any) -> None:
    result = alpaca_trading.TradingStreamDecoder().decode(alpaca_trading.encode_control(message))
    assert result.messages == [message]


@given(s.texts(), s.texts(), st.lists(s.texts(10), max_size=3))
def test_trading_client_messages(key: str, secret: str, streams: list[str]) -> None:
    for request in (
        alpaca_trading.TradingAuthRequest(key, secret),
        alpaca_trading.ListenRequest(tuple(streams)),
    ):
        assert (
            alpaca_trading.decode_client_message(alpaca_trading.encode_client_message(request))
            == request
        )
