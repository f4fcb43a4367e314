"""The Finnhub session state machine, driven message by message with decoded server frames."""

from __future__ import annotations

from typing import Any

import pytest

from tickd.codecs.finnhub import FinnhubDecoder, FinnhubRequest, decode_client_message
from tickd.codecs.finnhub_session import FRAME_TIMEOUT, FinnhubSession
from tickd.codecs.schema import CryptoTrade, Ping, StreamError, Trade
from tickd.codecs.session import Deliver, Fatal, Ready, Reconnect, Rejected, Send

S = 1_000_000_000
TOO_MANY = StreamError(code=0, msg="Subscribing to too many symbols")


def sent(actions: list[Any]) -> list[tuple[str, str]]:
    """What the session asked to send, decoded back as the server would: (type, symbol)."""
    requests = [decode_client_message(a.data) for a in actions if isinstance(a, Send)]
    assert all(isinstance(r, FinnhubRequest) for r in requests)
    return [(r.type, r.symbol) for r in requests]


def trade(symbol: str = "AAPL") -> Trade:
    return Trade(symbol=symbol, ts_event=1, price=1.0, size=1)


def connected(symbols: tuple[str, ...] = ("MSFT", "AAPL")) -> FinnhubSession:
    session = FinnhubSession(symbols, frame_timeout=10.0)
    session.connection_made(0)
    return session


def test_a_connection_subscribes_each_symbol_sorted_then_reports_ready() -> None:
    session = FinnhubSession(["MSFT", "BINANCE:BTCUSDT", "AAPL"], news=["AAPL"])
    actions = session.connection_made(now_ns=5)
    assert sent(actions) == [
        ("subscribe", "AAPL"),
        ("subscribe", "BINANCE:BTCUSDT"),
        ("subscribe", "MSFT"),
        ("subscribe-news", "AAPL"),
    ]
    assert actions[-1] == Ready()  # nothing to wait for: Finnhub acknowledges nothing
    assert actions[0].data == b'{"type":"subscribe","symbol":"AAPL"}'
    assert session.deadline_ns == 5 + round(FRAME_TIMEOUT * S)


def test_nothing_wanted_is_ready_at_once() -> None:
    assert FinnhubSession().connection_made(0) == [Ready()]


def test_data_is_delivered_in_order_and_pings_are_not_data() -> None:
    session = connected()
    a, b, c = trade("A"), trade("B"), trade("C")
    assert session.receive([a, Ping(ts_recv=1), b, Ping(), c], now_ns=1) == [Deliver([a, b, c])]
    assert session.receive([Ping(ts_recv=2)], now_ns=2) == []


def test_data_around_an_error_keeps_its_order() -> None:
    session = connected()
    a, b = trade("A"), trade("B")
    actions = session.receive([a, StreamError(code=0, msg="boom"), b], now_ns=1)
    assert actions == [Deliver([a]), Reconnect("error: boom"), Deliver([b])]


def test_any_frame_even_a_ping_or_an_empty_one_pushes_the_liveness_deadline_back() -> None:
    session = FinnhubSession(["AAPL"], frame_timeout=2.0)
    session.connection_made(now_ns=0)
    assert session.check_deadline(2 * S - 1) == []
    session.receive([Ping()], now_ns=1 * S)
    assert session.deadline_ns == 3 * S
    assert session.check_deadline(2 * S) == []
    session.receive([], now_ns=2 * S)  # a frame that did not decode: still a frame
    assert session.deadline_ns == 4 * S
    assert session.check_deadline(4 * S) == [Reconnect("no frame from the server for 2 s")]
    assert session.deadline_ns is None
    assert session.check_deadline(9 * S) == []  # reported once


def test_a_silent_server_after_the_subscriptions_is_given_up() -> None:
    session = FinnhubSession(["AAPL"], frame_timeout=1.5)
    session.connection_made(now_ns=10)
    assert session.check_deadline(10 + 3 * S // 2) == [
        Reconnect("no frame from the server for 1.5 s")
    ]


def test_the_wanted_symbols_are_subscribed_again_after_a_reconnect() -> None:
    session = connected()
    session.subscribe(["TSLA"])
    session.unsubscribe(["MSFT"])
    session.connection_lost()
    assert not session.connected and session.deadline_ns is None
    assert sent(session.connection_made(0)) == [("subscribe", "AAPL"), ("subscribe", "TSLA")]


def test_runtime_changes_send_only_what_changes() -> None:
    session = connected()
    assert sent(session.subscribe(["TSLA", "AAPL", "NVDA"])) == [
        ("subscribe", "NVDA"),
        ("subscribe", "TSLA"),
    ]
    assert sent(session.unsubscribe(["MSFT", "GOOG"])) == [("unsubscribe", "MSFT")]
    assert sent(session.subscribe(["AAPL"], channel="news")) == [("subscribe-news", "AAPL")]
    assert sent(session.unsubscribe(["AAPL"], channel="news")) == [("unsubscribe-news", "AAPL")]
    assert session.wanted == {"trades": {"AAPL", "NVDA", "TSLA"}, "news": set()}


def test_changes_while_disconnected_wait_for_the_next_connection() -> None:
    session = FinnhubSession(["AAPL"])
    assert session.subscribe(["MSFT"]) == []
    assert session.unsubscribe(["AAPL"]) == []
    assert sent(session.connection_made(0)) == [("subscribe", "MSFT")]


def test_a_bare_string_is_not_taken_for_a_list_of_one_letter_symbols() -> None:
    with pytest.raises(TypeError, match="collection of symbols"):
        FinnhubSession("AAPL")
    with pytest.raises(TypeError, match="collection of symbols"):
        connected().subscribe("TSLA")


def test_too_many_symbols_for_the_connections_own_subscriptions_is_fatal() -> None:
    session = connected()
    (action,) = session.receive([TOO_MANY], now_ns=1)
    assert isinstance(action, Fatal) and action.code == 0
    assert "too many symbols" in action.reason
    assert session.failure == action and session.deadline_ns is None
    session.connection_lost()
    with pytest.raises(RuntimeError, match="do not reconnect"):
        session.connection_made(0)


def test_too_many_symbols_after_a_runtime_subscription_rejects_the_last_ones_sent() -> None:
    session = connected(("AAPL",))
    session.subscribe(["MSFT", "NVDA"])
    session.subscribe(["TSLA"], channel="news")
    first, second = session.receive([TOO_MANY, TOO_MANY], now_ns=1)
    assert first == Rejected("error: Subscribing to too many symbols (dropped news TSLA)", 0)
    assert second == Rejected("error: Subscribing to too many symbols (dropped trades NVDA)", 0)
    assert session.wanted == {"trades": {"AAPL", "MSFT"}, "news": set()}
    assert session.failure is None
    # The refused symbols are not asked for again after a reconnect.
    session.connection_lost()
    assert sent(session.connection_made(0)) == [("subscribe", "AAPL"), ("subscribe", "MSFT")]


def test_a_refusal_no_runtime_subscription_accounts_for_is_fatal() -> None:
    session = connected(("AAPL",))
    session.subscribe(["MSFT"])
    assert isinstance(session.receive([TOO_MANY], now_ns=1)[0], Rejected)
    assert isinstance(session.receive([TOO_MANY], now_ns=2)[0], Fatal)


def test_runtime_additions_are_sent_last_and_refused_first_on_every_connection() -> None:
    session = connected(("AAPL", "TSLA"))
    session.subscribe(["MSFT"])  # accepted on the first connection
    session.connection_lost()
    session.subscribe(["AMD"])  # while disconnected
    sent = [
        decode_client_message(a.data) for a in session.connection_made(0) if isinstance(a, Send)
    ]
    assert [r.symbol for r in sent] == ["AAPL", "TSLA", "MSFT", "AMD"]
    assert session.receive([TOO_MANY], now_ns=1) == [
        Rejected("error: Subscribing to too many symbols (dropped trades AMD)", 0)
    ]
    assert session.wanted["trades"] == {"AAPL", "TSLA", "MSFT"}
    session.connection_lost()
    session.connection_made(2)
    (refused,) = session.receive([TOO_MANY], now_ns=3)
    assert isinstance(refused, Rejected) and refused.reason.endswith("(dropped trades MSFT)")
    (action,) = session.receive([TOO_MANY], now_ns=4)  # the configured set itself: too many
    assert isinstance(action, Fatal)


def test_an_unsubscribed_symbol_refused_later_is_not_put_down_to_another() -> None:
    session = connected(("AAPL",))
    session.subscribe(["MSFT"])
    session.unsubscribe(["MSFT"])
    assert session.receive([TOO_MANY], now_ns=1) == [
        Rejected("error: Subscribing to too many symbols (dropped trades MSFT)", 0)
    ]
    assert session.wanted["trades"] == {"AAPL"}


@pytest.mark.parametrize("msg", ["Invalid message", "", "internal error"])
def test_other_errors_ask_for_a_new_connection(msg: str) -> None:
    assert connected().receive([StreamError(code=0, msg=msg)], now_ns=1) == [
        Reconnect(f"error: {msg}")
    ]


def test_real_frames_drive_the_session() -> None:
    decoder = FinnhubDecoder()
    session = FinnhubSession(["AAPL", "BINANCE:BTCUSDT"], frame_timeout=5.0)
    actions = session.connection_made(0)
    frames = [
        b'{"type":"ping"}',
        b'{"data":[{"p":7296.89,"s":"BINANCE:BTCUSDT","t":1575526691134,"v":0.011467},'
        b'{"c":["1","12"],"p":190.5,"s":"AAPL","t":1575526691135,"v":100}],"type":"trade"}',
        b'{"type":"error","msg":"Subscribing to too many symbols"}',
    ]
    for now, frame in enumerate(frames, start=1):
        actions += session.receive(decoder.decode(frame, ts_recv=7).messages, now_ns=now * S)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Send", "Send", "Ready", "Deliver", "Fatal"]
    btc, aapl = actions[3].messages
    assert isinstance(btc, CryptoTrade) and btc.size == 0.011467 and btc.ts_recv == 7
    assert isinstance(aapl, Trade) and aapl.conditions == ("1", "12") and aapl.size == 100
    assert aapl.ts_event == 1575526691135 * 1_000_000
