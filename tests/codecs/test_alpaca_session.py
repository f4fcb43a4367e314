"""The Alpaca session state machine, driven message by message with decoded server frames."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tickd.codecs.alpaca import (
    AlpacaDecoder,
    AuthRequest,
    UnsubscribeRequest,
    decode_client_message,
)
from tickd.codecs.alpaca_session import REAP_WINDOW, AlpacaSession, SessionState
from tickd.codecs.schema import ChannelSets, StreamError, Subscription, Success, Trade
from tickd.codecs.session import Deliver, Fatal, Mismatch, Ready, Reconnect, Rejected, Send

CONNECTED = Success(msg="connected")
AUTHENTICATED = Success(msg="authenticated")
WANTED = ChannelSets(trades=("AAPL", "MSFT"), quotes=("AAPL",))
ACK = Subscription(trades=("AAPL", "MSFT"), quotes=("AAPL",), bars=(), corrections=("AAPL", "MSFT"))


def sent(actions: list[Any], encoding: Any = "msgpack") -> list[Any]:
    """What the session asked to send, decoded back as the server would."""
    return [decode_client_message(a.data, encoding) for a in actions if isinstance(a, Send)]


def trade(symbol: str = "AAPL") -> Trade:
    return Trade(symbol=symbol, ts_event=1, price=1.0, size=1)


def streaming(channels: ChannelSets = WANTED, ack: Subscription = ACK) -> AlpacaSession:
    session = AlpacaSession("key", "secret", channels)
    session.connection_made(0)
    session.receive([CONNECTED])
    session.receive([AUTHENTICATED])
    session.receive([ack])
    assert session.state is SessionState.STREAMING
    return session


def test_the_handshake_authenticates_then_subscribes_then_reports_ready() -> None:
    session = AlpacaSession("key", "secret", WANTED)
    assert session.connection_made(now_ns=0) == []
    assert session.state is SessionState.CONNECTED
    assert sent(session.receive([CONNECTED])) == [AuthRequest(key="key", secret="secret")]
    (subscribe,) = sent(session.receive([AUTHENTICATED]))
    assert (subscribe.trades, subscribe.quotes, subscribe.bars) == (
        ("AAPL", "MSFT"),
        ("AAPL",),
        None,
    )
    assert session.receive([ACK]) == [Ready()]  # corrections are implied by trades: no mismatch
    assert session.state is SessionState.STREAMING and session.deadline_ns is None


def test_json_sessions_speak_json() -> None:
    session = AlpacaSession("k", "s", WANTED, encoding="json")
    session.connection_made(0)
    (action,) = session.receive([CONNECTED])
    assert msgspec.json.decode(action.data) == {"action": "auth", "key": "k", "secret": "s"}


def test_auth_by_headers_skips_the_auth_message_and_no_channels_means_ready_at_once() -> None:
    session = AlpacaSession("k", "s")
    session.connection_made(0)
    assert session.receive([AUTHENTICATED]) == [Ready()]
    assert session.state is SessionState.STREAMING


def test_data_is_delivered_in_order_around_control_messages() -> None:
    session = streaming()
    a, b, c = trade("A"), trade("B"), trade("C")
    actions = session.receive([a, b, Subscription(trades=("AAPL", "MSFT"), quotes=("AAPL",)), c])
    assert actions == [Deliver([a, b]), Deliver([c])]


def test_each_handshake_step_has_a_deadline() -> None:
    session = AlpacaSession("k", "s", WANTED, step_timeout=2.0)
    session.connection_made(now_ns=10)
    assert session.check_deadline(2_000_000_009) == []
    session.receive([CONNECTED], now_ns=1_000)
    assert session.deadline_ns == 2_000_001_000
    (action,) = session.check_deadline(2_000_001_000)
    assert action == Reconnect("no answer from the server while authenticating")
    assert session.check_deadline(5_000_000_000) == []  # reported once


def test_the_wanted_subscription_is_sent_again_after_a_reconnect() -> None:
    session = streaming()
    session.subscribe(ChannelSets(bars=("SPY",)))
    session.receive([Subscription(trades=("AAPL", "MSFT"), quotes=("AAPL",), bars=("SPY",))])
    session.connection_lost()
    assert session.state is SessionState.CLOSED
    session.connection_made(0)
    session.receive([CONNECTED])
    (subscribe,) = sent(session.receive([AUTHENTICATED]))
    assert (subscribe.trades, subscribe.quotes, subscribe.bars) == (
        ("AAPL", "MSFT"),
        ("AAPL",),
        ("SPY",),
    )
    assert session.receive(
        [Subscription(trades=("AAPL", "MSFT"), quotes=("AAPL",), bars=("SPY",))]
    ) == [Ready()]


def test_subscribe_and_unsubscribe_send_only_the_change_and_update_the_wanted_set() -> None:
    session = streaming()
    (add,) = sent(session.subscribe(ChannelSets(quotes=("MSFT",))))
    assert add.quotes == ("MSFT",) and add.trades is None
    assert session.state is SessionState.SUBSCRIBING
    session.receive([Subscription(trades=("AAPL", "MSFT"), quotes=("AAPL", "MSFT"))])
    (remove,) = sent(session.unsubscribe(ChannelSets(trades=("AAPL", "MSFT"))))
    assert remove.trades == ("AAPL", "MSFT")
    assert session.wanted == {"quotes": frozenset({"AAPL", "MSFT"})}
    session.connection_lost()
    assert session.unsubscribe(ChannelSets(quotes=("AAPL",))) == []  # sent with the next one
    assert session.wanted == {"quotes": frozenset({"MSFT"})}


def test_changes_while_disconnected_wait_for_the_handshake() -> None:
    session = AlpacaSession("k", "s")
    assert session.subscribe(ChannelSets(news=("*",))) == []
    session.connection_made(0)
    session.receive([CONNECTED])
    (subscribe,) = sent(session.receive([AUTHENTICATED]))
    assert subscribe.news == ("*",)


def test_an_ack_that_differs_from_the_wanted_set_is_reported() -> None:
    session = AlpacaSession("k", "s", WANTED)
    session.connection_made(0)
    session.receive([CONNECTED])
    session.receive([AUTHENTICATED])
    actions = session.receive([Subscription(trades=("AAPL", "TSLA"), quotes=("AAPL",))])
    assert actions == [
        Ready(),
        Mismatch(missing=ChannelSets(trades=("MSFT",)), unexpected=ChannelSets(trades=("TSLA",))),
    ]


@pytest.mark.parametrize("code", [402, 408, 409, 411, 412])
def test_fatal_codes_stop_the_feed_for_good(code: int) -> None:
    session = AlpacaSession("k", "s", WANTED)
    session.connection_made(0)
    session.receive([CONNECTED])
    (action,) = session.receive([StreamError(code=code, msg="no")])
    assert action == Fatal(f"{code} no", code)
    assert session.state is SessionState.FAILED and session.failure == action
    session.connection_lost()
    assert session.state is SessionState.FAILED
    with pytest.raises(RuntimeError, match="do not reconnect"):
        session.connection_made(0)


@pytest.mark.parametrize(
    ("code", "wait"),
    [(404, 0.0), (407, 0.0), (500, 0.0), (401, 0.0), (599, 0.0), (406, REAP_WINDOW)],
)
def test_reconnect_codes_ask_for_a_new_connection(code: int, wait: float) -> None:
    session = streaming()
    assert session.receive([StreamError(code=code, msg="x")]) == [
        Reconnect(f"{code} x", code, wait)
    ]


def test_already_authenticated_is_ignored() -> None:
    assert streaming().receive([StreamError(code=403, msg="already authenticated")]) == []


@pytest.mark.parametrize("code", [400, 405, 410, 413])
def test_a_refused_change_keeps_the_connection_and_the_previous_subscription(code: int) -> None:
    session = streaming()
    session.subscribe(ChannelSets(quotes=("X",)))
    assert session.receive([StreamError(code=code, msg="no")]) == [Rejected(f"{code} no", code)]
    assert session.state is SessionState.STREAMING


@pytest.mark.parametrize("code", [400, 405, 410, 413])
def test_a_refused_first_subscription_is_a_configuration_error(code: int) -> None:
    session = AlpacaSession("k", "s", WANTED)
    session.connection_made(0)
    session.receive([CONNECTED])
    session.receive([AUTHENTICATED])
    (action,) = session.receive([StreamError(code=code, msg="bad")])
    assert action == Fatal(f"{code} bad", code)


def test_out_of_turn_successes_change_nothing() -> None:
    session = streaming()
    assert session.receive([CONNECTED, AUTHENTICATED]) == []
    assert session.state is SessionState.STREAMING


def test_real_handshake_frames_drive_the_session() -> None:
    decoder = AlpacaDecoder("stocks", "json")
    session = AlpacaSession("k", "s", ChannelSets(trades=("AAPL",)), encoding="json")
    session.connection_made(0)
    frames = [
        b'[{"T":"success","msg":"connected"}]',
        b'[{"T":"success","msg":"authenticated"}]',
        b'[{"T":"subscription","trades":["AAPL"],"quotes":[],"bars":[],"corrections":["AAPL"],'
        b'"cancelErrors":["AAPL"]}]',
        b'[{"T":"t","S":"AAPL","i":1,"x":"V","p":1.5,"s":2,"t":"2024-01-02T15:00:00.1Z","z":"C"}]',
    ]
    actions = [a for f in frames for a in session.receive(decoder.decode(f, 7).messages)]
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Send", "Send", "Ready", "Deliver"]
    assert actions[-1].messages[0].ts_recv == 7


def test_changes_made_while_one_is_unacknowledged_follow_it_one_request_at_a_time() -> None:
    session = streaming()
    (spy,) = sent(session.subscribe(ChannelSets(trades=("SPY",)), now_ns=0))
    assert spy.trades == ("SPY",) and session.deadline_ns == 5_000_000_000  # a deadline too
    assert session.subscribe(ChannelSets(trades=("TSLA",))) == []  # waits for SPY's ack
    assert session.unsubscribe(ChannelSets(quotes=("AAPL",))) == []
    acked = {"trades": ("AAPL", "MSFT", "SPY"), "corrections": ("AAPL", "MSFT", "SPY")}
    (tsla,) = sent(session.receive([Subscription(**acked, quotes=("AAPL",))]))
    assert tsla.trades == ("TSLA",) and tsla.quotes is None
    acked["trades"] += ("TSLA",)
    (drop,) = sent(session.receive([Subscription(**acked, quotes=("AAPL",))]))
    assert isinstance(drop, UnsubscribeRequest) and drop.quotes == ("AAPL",)
    assert session.receive([Subscription(**acked, quotes=())]) == []  # converged, no mismatch
    assert session.state is SessionState.STREAMING


def test_a_refused_change_leaves_the_wanted_set_as_it_was() -> None:
    session = streaming()
    session.subscribe(ChannelSets(trades=tuple(f"S{i}" for i in range(40))))
    (rejected,) = session.receive([StreamError(code=405, msg="symbol limit exceeded")])
    assert isinstance(rejected, Rejected)
    assert session.wanted == {"trades": frozenset({"AAPL", "MSFT"}), "quotes": frozenset({"AAPL"})}
    session.unsubscribe(ChannelSets(quotes=("AAPL",)))
    session.receive([StreamError(code=400, msg="invalid syntax")])  # an unsubscribe refused
    assert session.wanted["quotes"] == frozenset({"AAPL"})  # still subscribed, still wanted


def test_a_refused_resubscription_after_a_reconnect_is_fatal() -> None:
    session = streaming()
    session.connection_lost()
    session.connection_made(0)
    session.receive([CONNECTED])
    session.receive([AUTHENTICATED])
    (action,) = session.receive([StreamError(code=405, msg="symbol limit exceeded")])
    assert isinstance(action, Fatal) and session.state is SessionState.FAILED
