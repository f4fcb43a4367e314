"""The trading-stream session, driven message by message with server frames made and decoded by
the real codecs (tickd.codecs.alpaca_trading), in both encodings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tickd.codecs.alpaca import Encoding
from tickd.codecs.alpaca_trading import (
    ListenRequest,
    TradingAuthRequest,
    TradingStreamDecoder,
    decode_client_message,
    encode_control,
    encode_trade_update,
)
from tickd.codecs.schema import Authorization, Listening, Order, OrderUpdate, StreamError
from tickd.codecs.session import Deliver, Fatal, Ready, Reconnect, Send
from tickd.codecs.trading_session import TradingSession, TradingSessionState

SECOND = 1_000_000_000
AUTHORIZED = Authorization(status="authorized", action="authenticate")
LISTENING = Listening(streams=("trade_updates",))
AUTH = TradingAuthRequest(key="key", secret="secret")
LISTEN = ListenRequest(streams=("trade_updates",))


def update(i: int) -> OrderUpdate:
    order = Order(id=f"order-{i}", client_order_id=f"tickd-{i}", symbol="AAPL", status="filled")
    return OrderUpdate(event="fill", order=order, ts_event=i, price=Decimal("1.5"), qty=Decimal(2))


def frame(message: Any, encoding: Encoding = "json") -> bytes:
    """What the server sends for ``message``, in ``encoding``."""
    data = (
        encode_trade_update(message)
        if isinstance(message, OrderUpdate)
        else encode_control(message)
    )
    return data if encoding == "json" else msgspec.msgpack.encode(msgspec.json.decode(data))


def decoded(message: Any, encoding: Encoding = "json") -> list[Any]:
    """``message`` as the feed hands it to the session: sent, then decoded (binary frames)."""
    result = TradingStreamDecoder(encoding).decode(frame(message, encoding), ts_recv=7)
    assert result.errors == [] and result.unknown == []
    return result.messages


def sent(actions: list[Any], encoding: Encoding = "json") -> list[Any]:
    """What the session asked to send, decoded back as the server would."""
    frames = [a.data for a in actions if isinstance(a, Send)]
    if encoding == "msgpack":
        frames = [msgspec.json.encode(msgspec.msgpack.decode(f)) for f in frames]
    return [decode_client_message(f) for f in frames]


def step(session: TradingSession) -> tuple[str, int | None]:
    """The state and the deadline of the step in progress."""
    return session.state.value, session.deadline_ns


def streaming(encoding: Encoding = "json") -> TradingSession:
    session = TradingSession("key", "secret", encoding)
    session.connection_made(0)
    session.receive(decoded(AUTHORIZED, encoding))
    assert session.receive(decoded(LISTENING, encoding)) == [Ready()]
    return session


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_the_handshake_authenticates_then_listens_then_reports_ready(encoding: Any) -> None:
    session = TradingSession("key", "secret", encoding, step_timeout=2.0)
    assert sent(session.connection_made(now_ns=10), encoding) == [AUTH]  # the client speaks first
    assert step(session) == ("authenticating", 10 + 2 * SECOND)
    assert sent(session.receive(decoded(AUTHORIZED, encoding), now_ns=20), encoding) == [LISTEN]
    assert step(session) == ("listening", 20 + 2 * SECOND)
    assert session.receive(decoded(LISTENING, encoding), now_ns=30) == [Ready()]
    assert step(session) == ("streaming", None)


def test_auth_goes_out_in_the_current_documented_form() -> None:
    (auth,) = TradingSession("k", "s").connection_made(0)
    assert isinstance(auth, Send)
    assert msgspec.json.decode(auth.data) == {"action": "auth", "key": "k", "secret": "s"}
    (auth,) = TradingSession("k", "s", "msgpack").connection_made(0)
    assert isinstance(auth, Send)
    assert msgspec.msgpack.decode(auth.data) == {"action": "auth", "key": "k", "secret": "s"}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_updates_are_delivered_in_order_with_their_receive_stamp(encoding: Any) -> None:
    session = streaming(encoding)
    delivered = [session.receive(decoded(update(i), encoding)) for i in range(3)]
    updates = [u for (a,) in delivered if isinstance(a, Deliver) for u in a.messages]
    assert [u.order.id for u in updates] == ["order-0", "order-1", "order-2"]
    assert all(u.ts_recv == 7 for u in updates)


def test_updates_around_control_messages_keep_their_order_and_are_never_dropped() -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    a, b, c = update(1), update(2), update(3)
    # An update before the handshake completes is delivered, not dropped.
    first, listen, second = session.receive([a, AUTHORIZED, b])
    assert (first, sent([listen]), second) == (Deliver([a]), [LISTEN], Deliver([b]))
    assert session.receive([LISTENING, c]) == [Ready(), Deliver([c])]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_unauthorized_authentication_is_fatal_and_the_session_refuses_to_reconnect(
    encoding: Any,
) -> None:
    session = TradingSession("paper-key", "paper-secret", encoding)
    session.connection_made(0)
    refusal = Authorization(
        status="unauthorized", action="authenticate", message="access key verification failed"
    )
    (fatal,) = session.receive(decoded(refusal, encoding))
    assert fatal == Fatal(
        "authentication refused (unauthorized on authenticate: access key verification failed)",
        0,
    )
    assert session.state is TradingSessionState.FAILED and session.failure == fatal
    assert session.deadline_ns is None
    session.connection_lost()
    assert session.state is TradingSessionState.FAILED
    with pytest.raises(RuntimeError, match="do not reconnect"):
        session.connection_made(1)


def test_unauthorized_for_the_auth_form_action_is_fatal_too() -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    (fatal,) = session.receive([Authorization(status="unauthorized", action="auth")])
    assert isinstance(fatal, Fatal)


def test_unauthorized_listen_is_a_reconnect() -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    refusal = Authorization(status="unauthorized", action="listen")
    assert session.receive(decoded(refusal)) == [Reconnect("unauthorized on listen")]
    assert session.state is TradingSessionState.AUTHENTICATING  # until the socket closes


def test_an_unknown_authorization_status_is_a_reconnect_not_a_crash() -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    (action,) = session.receive([Authorization(status="pending", action="authenticate")])
    assert action == Reconnect("pending on authenticate")


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_server_error_is_a_reconnect_in_any_state(encoding: Any) -> None:
    error = StreamError(code=0, msg="internal server error")
    session = TradingSession("key", "secret", encoding)
    session.connection_made(0)
    assert session.receive(decoded(error, encoding)) == [
        Reconnect("server error: internal server error")
    ]
    assert streaming(encoding).receive(decoded(error, encoding)) == [
        Reconnect("server error: internal server error")
    ]
    assert session.receive([StreamError(code=0, msg="")]) == [Reconnect("server error: no message")]


@pytest.mark.parametrize(
    ("streams", "actions"),
    [
        ((), [Fatal("the server did not grant trade_updates (listening to ())", 0)]),
        (
            ("account_updates",),
            [
                Fatal(
                    "the server did not grant trade_updates (listening to ('account_updates',))", 0
                )
            ],
        ),
        (("trade_updates", "account_updates"), [Ready()]),  # extra streams are harmless
    ],
)
def test_the_listening_ack_must_include_trade_updates(streams: Any, actions: Any) -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    session.receive([AUTHORIZED])
    assert session.receive(decoded(Listening(streams=streams))) == actions
    failed = isinstance(actions[0], Fatal)
    assert (session.state is TradingSessionState.FAILED) is failed


def test_out_of_turn_acks_are_harmless() -> None:
    session = TradingSession("key", "secret")
    session.connection_made(0)
    assert session.receive([LISTENING]) == []  # no listen sent yet
    session = streaming()
    assert session.receive([AUTHORIZED]) == []
    assert session.receive([LISTENING]) == []
    assert session.state is TradingSessionState.STREAMING


@pytest.mark.parametrize(("answers", "step"), [([], "authenticating"), ([AUTHORIZED], "listening")])
def test_an_unanswered_step_is_given_up_at_its_deadline(answers: list[Any], step: str) -> None:
    session = TradingSession("key", "secret", step_timeout=1.0)
    session.connection_made(0)
    session.receive(answers, now_ns=0)
    assert session.deadline_ns == SECOND
    assert session.check_deadline(SECOND - 1) == []
    assert session.check_deadline(SECOND) == [Reconnect(f"no answer from the server while {step}")]
    assert session.check_deadline(2 * SECOND) == []  # reported once
    assert session.deadline_ns is None


def test_a_reconnect_authenticates_and_listens_again() -> None:
    session = streaming("msgpack")
    session.connection_lost()
    assert (session.state, session.deadline_ns) == (TradingSessionState.CLOSED, None)
    assert sent(session.connection_made(5 * SECOND), "msgpack") == [AUTH]
    assert session.deadline_ns == 10 * SECOND
    assert sent(session.receive(decoded(AUTHORIZED, "msgpack")), "msgpack") == [LISTEN]
    assert session.receive(decoded(LISTENING, "msgpack")) == [Ready()]
    # A connection lost mid-handshake starts over too.
    session.connection_lost()
    session.connection_made(0)
    session.receive([AUTHORIZED])
    session.connection_lost()
    assert sent(session.connection_made(0), "msgpack") == [AUTH]
    assert session.state is TradingSessionState.AUTHENTICATING


@pytest.mark.parametrize(
    "bad",
    [
        b'{"stream":"trade_updates","data":null}',
        b'{"stream":"trade_updates","data":{"event":"fill"}}',
        b'{"stream":"account_updates","data":{}}',
        b"\x00 not json",
    ],
)
def test_bad_or_unknown_frames_reach_the_session_as_nothing(bad: bytes) -> None:
    result = TradingStreamDecoder("json").decode(bad)
    assert result.messages == [] and len(result.errors) + len(result.unknown) == 1
    session = streaming()
    assert session.receive(result.messages) == []
    assert session.state is TradingSessionState.STREAMING
