"""The Finnhub websocket session as a sans-I/O state machine: decoded messages in, actions out.

Finnhub's protocol (protocols.md section 6) is thin: the token rides in the URL (a bad one fails
the upgrade, which the client handles), a subscription is one JSON message per symbol, and nothing
is acknowledged. What a client must still get right lives here, where a test can drive it message
by message:

* Ready means the subscriptions went out. There is no ack to wait for, and the first frame may be
  a ping a minute or two away (or only pings while the market is closed): waiting for a frame
  would hold start-up, and a short deadline on it would reconnect all night.
* Liveness: any frame, data or ping, proves the connection alive; none for ``frame_timeout``
  seconds, counted from the subscriptions on, means reconnect (the server has been seen to stop
  pinging a connection it no longer serves). The default sits above the 1-2 minutes between the
  pings Finnhub sends an idle connection. Pings are never delivered: the feed's data watchdog
  counts data only, and a connection that pings but carries no trades while the market is open
  is dead all the same.
* The wanted symbols survive reconnects and are subscribed again, sorted, on each connection.
* Errors (``{"type":"error","msg":...}``) name neither the request nor the symbol. "Subscribing
  to too many symbols" answers a subscription past the plan's cap, in the order they were sent:
  each one is put down to the most recent runtime subscription on this connection still
  unaccounted for, which is rejected and leaves the wanted set (else every reconnect would ask
  for it again, and fail). The number dropped is right; the name is the best guess the server
  allows (it refuses the last ones sent). An error no runtime subscription accounts for refuses
  the connection's own subscriptions, the configured set: fatal. Any other error: reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

from .finnhub import FinnhubRequest, RequestType, encode_client_message
from .schema import Ping, StreamError
from .session import Action, Deliver, Fatal, Ready, Reconnect, Rejected, Send

__all__ = ["FRAME_TIMEOUT", "TOO_MANY_SYMBOLS", "Channel", "FinnhubSession"]

# Seconds without any frame (data or ping) after which the connection is given up.
FRAME_TIMEOUT: Final = 180.0
TOO_MANY_SYMBOLS: Final = "subscribing to too many symbols"

Channel: TypeAlias = Literal["trades", "news"]
# The request types per channel (news needs a Premium plan).
_SUBSCRIBE: Final[dict[Channel, RequestType]] = {"trades": "subscribe", "news": "subscribe-news"}
_UNSUBSCRIBE: Final[dict[Channel, RequestType]] = {
    "trades": "unsubscribe",
    "news": "unsubscribe-news",
}


class FinnhubSession:
    """One Finnhub websocket's protocol state, across reconnects.

    ``symbols`` (trades) and ``news`` are wanted from the start. Call :meth:`connection_made` when
    a socket opens, :meth:`receive` with each decoded frame's messages (every frame, even one that
    decoded to nothing: it is liveness), :meth:`check_deadline` when :attr:`deadline_ns` passes,
    and :meth:`connection_lost` when the socket closes.
    """

    def __init__(
        self,
        symbols: Iterable[str] = (),
        news: Iterable[str] = (),
        frame_timeout: float = FRAME_TIMEOUT,
    ) -> None:
        self.wanted: dict[Channel, set[str]] = {
            "trades": set(_checked(symbols)),
            "news": set(_checked(news)),
        }
        self.frame_timeout_ns = round(frame_timeout * 1e9)
        self.deadline_ns: int | None = None
        self.connected = False
        self.failure: Fatal | None = None
        # Symbols added at runtime and still wanted, oldest first: sent after the configured ones
        # on every connection, so that a "too many symbols" error is put down to them.
        self._added: list[tuple[Channel, str]] = []
        # What such an error can be put down to on this connection: the runtime additions sent
        # on it (even one unsubscribed since: its refusal may still be on its way).
        self._refusable: list[tuple[Channel, str]] = []

    # -- connection events ---------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Action]:
        """Subscribe to everything wanted, then report Ready (Finnhub acknowledges nothing)."""
        if self.failure is not None:
            raise RuntimeError(f"the session failed ({self.failure}): do not reconnect")
        self.connected = True
        self.deadline_ns = now_ns + self.frame_timeout_ns
        actions: list[Action] = []
        added = set(self._added)
        for channel, symbols in self.wanted.items():
            configured = {s for s in symbols if (channel, s) not in added}
            actions += _requests(_SUBSCRIBE[channel], configured)
        for channel, symbol in self._added:  # runtime additions last, oldest first
            actions += _requests(_SUBSCRIBE[channel], (symbol,))
        self._refusable = list(self._added)
        actions.append(Ready())
        return actions

    def connection_lost(self) -> None:
        self.connected = False
        self.deadline_ns = None

    def check_deadline(self, now_ns: int) -> list[Action]:
        """No frame at all for ``frame_timeout``: the server no longer serves this connection."""
        if self.deadline_ns is None or now_ns < self.deadline_ns:
            return []
        self.deadline_ns = None
        return [Reconnect(f"no frame from the server for {self.frame_timeout_ns / 1e9:g} s")]

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, symbols: Iterable[str], channel: Channel = "trades") -> list[Action]:
        """Want these symbols too: the new ones are sent now if connected, else with the next
        connection."""
        new = sorted(set(_checked(symbols)) - self.wanted[channel])
        self.wanted[channel].update(new)
        self._added += [(channel, symbol) for symbol in new]
        if not self.connected:
            return []  # sent with the next connection, last
        self._refusable += [(channel, symbol) for symbol in new]
        return _requests(_SUBSCRIBE[channel], new)

    def unsubscribe(self, symbols: Iterable[str], channel: Channel = "trades") -> list[Action]:
        gone = sorted(self.wanted[channel] & set(_checked(symbols)))
        self.wanted[channel].difference_update(gone)
        self._added = [(c, s) for c, s in self._added if c != channel or s not in gone]
        return _requests(_UNSUBSCRIBE[channel], gone) if self.connected else []

    # -- what the server says ------------------------------------------------------------------

    def receive(self, messages: Iterable[Any], now_ns: int) -> list[Action]:
        """Act on one frame's decoded messages: data is handed on in order, pings only count
        as liveness."""
        self.deadline_ns = now_ns + self.frame_timeout_ns
        actions: list[Action] = []
        data: list[Any] = []
        for message in messages:
            if isinstance(message, Ping):
                continue
            if isinstance(message, StreamError):
                if data:
                    actions.append(Deliver(data))
                    data = []
                actions.append(self._error(message.msg))
            else:
                data.append(message)
        if data:
            actions.append(Deliver(data))
        return actions

    def _error(self, msg: str) -> Action:
        reason = f"error: {msg}"
        if TOO_MANY_SYMBOLS not in msg.lower():
            return Reconnect(reason)
        if self._refusable:
            channel, symbol = self._refusable.pop()
            self.wanted[channel].discard(symbol)
            self._added = [item for item in self._added if item != (channel, symbol)]
            return Rejected(f"{reason} (dropped {channel} {symbol})", 0)
        self.failure = Fatal(f"{reason} (the configured symbols exceed the plan)", 0)
        self.deadline_ns = None
        return self.failure


def _requests(kind: RequestType, symbols: Iterable[str]) -> list[Action]:
    """One message per symbol, in sorted order (the same bytes every time)."""
    return [
        Send(encode_client_message(FinnhubRequest(type=kind, symbol=symbol)))
        for symbol in sorted(symbols)
    ]


def _checked(symbols: Iterable[str]) -> Iterable[str]:
    """A bare string would be subscribed letter by letter."""
    if isinstance(symbols, str):
        raise TypeError(f"expected a collection of symbols, got the string {symbols!r}")
    return symbols
