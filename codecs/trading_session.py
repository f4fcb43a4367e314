"""The Alpaca trading stream (``trade_updates``) session as a sans-I/O state machine.

Decoded messages in, actions out (``tickd.codecs.session``); the websocket client around it is
the same one that drives the market-data session. protocols.md section 2.1 is the reference:

* the client speaks first: auth (the current ``{"action":"auth",...}`` form) as soon as the
  socket opens, then ``listen`` once ``authorization`` says ``authorized``, then the ``listening``
  ack; each step has a deadline, and the whole handshake runs again on every connection;
* ``unauthorized`` on authentication is fatal (wrong keys, or paper keys on live: retrying cannot
  help); ``unauthorized`` on ``listen`` means we listened before the auth ack, which a new
  connection heals, so it is a reconnect; the server's ``{"action":"error"}`` (sent before it
  closes) is a reconnect too;
* an ack without ``trade_updates`` is fatal, not a reported mismatch: the server silently leaves
  out streams it will not give this key, so every reconnect would get the same answer, and a
  daemon that trades without order updates is blind to its own fills. Stopping loudly (systemd
  sees a non-zero exit) beats a connection that looks healthy and carries nothing;
* order updates are delivered in order, whatever state they arrive in: they are never dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from .alpaca import Encoding
from .alpaca_trading import ListenRequest, TradingAuthRequest, encode_client_message
from .schema import Authorization, Listening, StreamError
from .session import Action, Deliver, Fatal, Ready, Reconnect, Send

__all__ = ["STREAMS", "TradingSession", "TradingSessionState"]

# What the session listens to: order updates are the only stream of the Trading API.
STREAMS: Final = ("trade_updates",)


class TradingSessionState(enum.Enum):
    CLOSED = "closed"  # no connection (before the first, between two)
    AUTHENTICATING = "authenticating"  # auth sent
    LISTENING = "listening"  # listen sent, waiting for the ack
    STREAMING = "streaming"
    FAILED = "failed"  # a fatal error: the feed must stop


class TradingSession:
    """One trading-stream endpoint's protocol state, across reconnects.

    Call :meth:`connection_made` when a socket opens (the auth to send comes back),
    :meth:`receive` with each decoded frame's messages, :meth:`check_deadline` when
    :attr:`deadline_ns` passes, and :meth:`connection_lost` when the socket closes.
    """

    def __init__(
        self, key: str, secret: str, encoding: Encoding = "json", step_timeout: float = 5.0
    ) -> None:
        self.encoding: Encoding = encoding
        self.state = TradingSessionState.CLOSED
        self.step_timeout_ns = round(step_timeout * 1e9)
        self.deadline_ns: int | None = None
        self.failure: Fatal | None = None
        self._auth = self._encode(TradingAuthRequest(key=key, secret=secret))
        self._listen = self._encode(ListenRequest(streams=STREAMS))

    # -- connection events ---------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Action]:
        """A socket opened: authenticate at once (the server waits for us)."""
        if self.state is TradingSessionState.FAILED:
            raise RuntimeError(f"the session failed ({self.failure}): do not reconnect")
        self.state = TradingSessionState.AUTHENTICATING
        self.deadline_ns = now_ns + self.step_timeout_ns
        return [Send(self._auth)]

    def connection_lost(self) -> None:
        if self.state is not TradingSessionState.FAILED:
            self.state = TradingSessionState.CLOSED
        self.deadline_ns = None

    def check_deadline(self, now_ns: int) -> list[Action]:
        """Past the current handshake step's deadline: give up on this connection."""
        if self.deadline_ns is None or now_ns < self.deadline_ns:
            return []
        self.deadline_ns = None
        return [Reconnect(f"no answer from the server while {self.state.value}")]

    # -- what the server says ------------------------------------------------------------------

    def receive(self, messages: Iterable[Any], now_ns: int = 0) -> list[Action]:
        """Act on one frame's decoded messages; order updates are handed on in order."""
        actions: list[Action] = []
        data: list[Any] = []
        for message in messages:
            if isinstance(message, Authorization | Listening | StreamError):
                if data:
                    actions.append(Deliver(data))
                    data = []
                actions += self._control(message, now_ns)
            else:
                data.append(message)
        if data:
            actions.append(Deliver(data))
        return actions

    def _control(
        self, message: Authorization | Listening | StreamError, now_ns: int
    ) -> list[Action]:
        if isinstance(message, StreamError):
            return [Reconnect(f"server error: {message.msg or 'no message'}", message.code)]
        if isinstance(message, Listening):
            return self._acknowledged(message)
        if message.status == "authorized":
            if self.state is not TradingSessionState.AUTHENTICATING:
                return []  # out of turn (a repeated ack): harmless
            self.state = TradingSessionState.LISTENING
            self.deadline_ns = now_ns + self.step_timeout_ns
            return [Send(self._listen)]
        detail = f"{message.status} on {message.action}" + (
            f": {message.message}" if message.message else ""
        )
        if message.status == "unauthorized" and message.action != "listen":
            return [self._fail(Fatal(f"authentication refused ({detail})", 0))]
        # Unauthorized on listen (we listened before the auth ack), or a status not known yet:
        # a new connection starts the handshake over, and the backoff spaces the attempts.
        return [Reconnect(detail)]

    def _acknowledged(self, ack: Listening) -> list[Action]:
        if self.state is not TradingSessionState.LISTENING:
            return []  # an ack of no listen in flight (a repeated one): harmless
        missing = [stream for stream in STREAMS if stream not in ack.streams]
        if missing:
            reason = f"the server did not grant {', '.join(missing)} (listening to {ack.streams})"
            return [self._fail(Fatal(reason, 0))]
        self.state = TradingSessionState.STREAMING
        self.deadline_ns = None
        return [Ready()]

    # -- helpers -------------------------------------------------------------------------------

    def _encode(self, message: TradingAuthRequest | ListenRequest) -> bytes:
        """The documented JSON form, transcoded when the connection speaks msgpack."""
        data = encode_client_message(message)
        if self.encoding == "json":
            return data
        return msgspec.msgpack.encode(msgspec.json.decode(data))

    def _fail(self, fatal: Fatal) -> Fatal:
        self.state = TradingSessionState.FAILED
        self.deadline_ns = None
        self.failure = fatal
        return fatal
