"""The Alpaca market-data session as a sans-I/O state machine: decoded messages in, actions out.

The websocket client around it stays thin: it feeds :meth:`AlpacaSession.receive` what the decoder
returns, sends the bytes of each :class:`Send`, and carries out the other actions (reconnect after a
backoff, stop, report). Everything protocols.md (sections 1.2-1.7 and 8.2) says a client must get
right lives here, where a test can drive it message by message:

* the handshake: ``connected`` -> auth -> ``authenticated`` -> subscribe -> the subscription ack,
  each step with a deadline (auth must go out well inside the server's 10 s window);
* subscriptions: the wanted set is kept and sent again after every reconnect; each ack (the
  server's full current set) is diffed against it and a difference is reported, not ignored;
* error codes: each maps to one action (fatal, reconnect, reconnect after the ~90 s reap window,
  reject the request and keep the connection, ignore). 410 and 413 are fatal before the first
  acknowledged subscription (a configuration error) and a rejected request after it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Final

from .alpaca import (
    AuthRequest,
    Encoding,
    SubscribeRequest,
    UnsubscribeRequest,
    encode_client_message,
)
from .schema import ChannelSets, StreamError, Subscription, Success
from .session import Action, Deliver, Fatal, Mismatch, Ready, Reconnect, Rejected, Send

__all__ = ["REAP_WINDOW", "AlpacaSession", "SessionState"]

# Seconds the server takes to reap a dead connection holding the slot (406 until then).
REAP_WINDOW: Final = 90.0
FATAL_CODES: Final = frozenset({402, 408, 409, 411, 412})
# Channels the server adds by itself (implied by trades): never a difference worth reporting.
IMPLIED: Final = frozenset({"corrections", "cancel_errors"})


class SessionState(enum.Enum):
    CLOSED = "closed"  # no connection (before the first, between two, or stopped)
    CONNECTED = "connected"  # socket open, waiting for the server's ``connected``
    AUTHENTICATING = "authenticating"  # auth sent
    SUBSCRIBING = "subscribing"  # subscribe sent, waiting for the ack
    STREAMING = "streaming"
    FAILED = "failed"  # a fatal error: the feed must stop


_CHANNELS: Final = tuple(ChannelSets.__struct_fields__)
_CONTROL: Final = frozenset({Success, StreamError, Subscription})


class AlpacaSession:
    """One market-data endpoint's protocol state, across reconnects.

    ``channels`` is the subscription wanted from the start. Call :meth:`connection_made` when a
    socket opens, :meth:`receive` with each decoded frame's messages, :meth:`check_deadline` when
    :attr:`deadline_ns` passes, and :meth:`connection_lost` when the socket closes.
    """

    def __init__(
        self,
        key: str,
        secret: str,
        channels: ChannelSets | None = None,
        encoding: Encoding = "msgpack",
        step_timeout: float = 5.0,
    ) -> None:
        self._auth = AuthRequest(key=key, secret=secret)
        self.encoding: Encoding = encoding
        self.wanted: dict[str, frozenset[str]] = _sets(channels or ChannelSets())
        self.acknowledged: dict[str, frozenset[str]] = {}
        self.state = SessionState.CLOSED
        self.step_timeout_ns = round(step_timeout * 1e9)
        self.deadline_ns: int | None = None
        self.ever_subscribed = False  # an ack ever came: 410/413 are no longer fatal
        self.failure: Fatal | None = None
        self._ready = False  # Ready reported on this connection
        self._in_flight: tuple[str, dict[str, frozenset[str]]] | None = None  # a change sent
        self._dirty = False  # the wanted set changed while a change was in flight

    # -- connection events ---------------------------------------------------------------------

    def connection_made(self, now_ns: int) -> list[Action]:
        if self.state is SessionState.FAILED:
            raise RuntimeError(f"the session failed ({self.failure}): do not reconnect")
        self.state = SessionState.CONNECTED
        self.acknowledged = {}
        self._ready = False
        self._in_flight = None
        self._dirty = False
        self.deadline_ns = now_ns + self.step_timeout_ns
        return []

    def connection_lost(self) -> None:
        if self.state is not SessionState.FAILED:
            self.state = SessionState.CLOSED
        self.deadline_ns = None

    def check_deadline(self, now_ns: int) -> list[Action]:
        """Past the current handshake step's deadline: give up on this connection."""
        if self.deadline_ns is None or now_ns < self.deadline_ns:
            return []
        state = self.state.value
        self.deadline_ns = None
        return [Reconnect(f"no answer from the server while {state}")]

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, channels: ChannelSets, now_ns: int | None = None) -> list[Action]:
        """Want these symbols too: sent now if the session is streaming, after the pending change
        is acknowledged if one is, else with the next handshake. ``now_ns`` (monotonic) starts
        the change's deadline."""
        for channel, symbols in _sets(channels).items():
            self.wanted[channel] = self.wanted.get(channel, frozenset()) | symbols
        return self._changed(now_ns)

    def unsubscribe(self, channels: ChannelSets, now_ns: int | None = None) -> list[Action]:
        for channel, symbols in _sets(channels).items():
            left = self.wanted.get(channel, frozenset()) - symbols
            if left:
                self.wanted[channel] = left
            else:
                self.wanted.pop(channel, None)
        return self._changed(now_ns)

    def _changed(self, now_ns: int | None) -> list[Action]:
        if self.state is SessionState.SUBSCRIBING:
            self._dirty = True  # sent once the change in flight is acknowledged
            return []
        if self.state is not SessionState.STREAMING:
            return []  # the handshake sends the whole wanted set
        return self._converge(now_ns)

    def _converge(self, now_ns: int | None) -> list[Action]:
        """One request towards the wanted set from the acknowledged one (additions first)."""
        missing, unexpected = self._difference()
        self._dirty = False
        if any(missing.values()):
            self._in_flight = ("subscribe", {c: s for c, s in missing.items() if s})
            request: SubscribeRequest | UnsubscribeRequest = SubscribeRequest(**_fields(missing))
            self._dirty = any(unexpected.values())
        elif any(unexpected.values()):
            self._in_flight = ("unsubscribe", {c: s for c, s in unexpected.items() if s})
            request = UnsubscribeRequest(**_fields(unexpected))
        else:
            return []
        self.state = SessionState.SUBSCRIBING
        if now_ns is not None:
            self.deadline_ns = now_ns + self.step_timeout_ns
        return [self._send(request)]

    def _difference(self) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
        """(wanted, not acknowledged), (acknowledged, not wanted; implied channels aside)."""
        acknowledged = self.acknowledged
        missing = {c: s - acknowledged.get(c, frozenset()) for c, s in self.wanted.items()}
        unexpected = {
            c: s - self.wanted.get(c, frozenset())
            for c, s in acknowledged.items()
            if c not in IMPLIED
        }
        return missing, unexpected

    # -- what the server says ------------------------------------------------------------------

    def receive(self, messages: Iterable[Any], now_ns: int = 0) -> list[Action]:
        """Act on one frame's decoded messages (data messages are handed on in order)."""
        messages = messages if isinstance(messages, list) else list(messages)
        control = _CONTROL
        for message in messages:
            if type(message) in control:
                break
        else:  # a frame of data only (the usual case): handed on as it is
            return [Deliver(messages)] if messages else []
        actions: list[Action] = []
        data: list[Any] = []
        for message in messages:
            if type(message) in control:
                if data:
                    actions.append(Deliver(data))
                    data = []
                actions += self._control(message, now_ns)
            else:
                data.append(message)
        if data:
            actions.append(Deliver(data))
        return actions

    def _control(self, message: Success | StreamError | Subscription, now_ns: int) -> list[Action]:
        if isinstance(message, Subscription):
            return self._acknowledged(message)
        if isinstance(message, StreamError):
            return self._error(message)
        if message.msg == "connected" and self.state is SessionState.CONNECTED:
            self.state = SessionState.AUTHENTICATING
            self.deadline_ns = now_ns + self.step_timeout_ns
            return [self._send(self._auth)]
        if message.msg == "authenticated" and self.state in (
            SessionState.CONNECTED,  # authenticated by the upgrade request's headers
            SessionState.AUTHENTICATING,
        ):
            if not any(self.wanted.values()):
                self.state = SessionState.STREAMING
                self.deadline_ns = None
                self._ready = True
                return [Ready()]
            self.state = SessionState.SUBSCRIBING
            self.deadline_ns = now_ns + self.step_timeout_ns
            self._in_flight = ("subscribe", dict(self.wanted))
            self._dirty = False
            return [self._send(SubscribeRequest(**_fields(self.wanted)))]
        return []  # a success message out of turn: harmless

    def _acknowledged(self, ack: Subscription) -> list[Action]:
        self.acknowledged = _sets(ack)
        self.ever_subscribed = True
        self.state = SessionState.STREAMING
        self.deadline_ns = None
        self._in_flight = None
        actions: list[Action] = [] if self._ready else [Ready()]
        self._ready = True
        if self._dirty:  # the wanted set changed meanwhile: the next request, no report yet
            return actions + self._converge(None)
        missing, unexpected = self._difference()
        if any(missing.values()) or any(unexpected.values()):
            actions.append(
                Mismatch(ChannelSets(**_fields(missing)), ChannelSets(**_fields(unexpected)))
            )
        return actions

    def _error(self, error: StreamError) -> list[Action]:
        code, reason = error.code, f"{error.code} {error.msg}"
        if code in FATAL_CODES or (code in (410, 413) and not self.ever_subscribed):
            return [self._fail(Fatal(reason, code))]
        if code == 403:  # already authenticated
            return []
        if code in (400, 405, 410, 413):
            if self.state is SessionState.SUBSCRIBING and not self._ready:
                # The connection's first subscription, the wanted set itself: configuration.
                return [self._fail(Fatal(reason, code))]
            # A change refused: the previous subscription stays, and so does the wanted set
            # (else every reconnect would ask for the refused symbols again).
            if self._in_flight is not None:
                verb, sets = self._in_flight
                for channel, symbols in sets.items():
                    kept = self.wanted.get(channel, frozenset())
                    kept = kept - symbols if verb == "subscribe" else kept | symbols
                    if kept:
                        self.wanted[channel] = kept
                    else:
                        self.wanted.pop(channel, None)
                self._in_flight = None
            actions: list[Action] = [Rejected(reason, code)]
            if self.state is SessionState.SUBSCRIBING:
                self.state = SessionState.STREAMING
                self.deadline_ns = None
                if self._dirty:
                    actions += self._converge(None)
            return actions
        if code == 406:
            return [Reconnect(reason, code, REAP_WINDOW)]
        # 404 (auth timeout), 407 (slow client), 500, 401 (a request before the auth ack: not
        # sent by this machine, but a new connection heals it) and any code not known yet.
        return [Reconnect(reason, code)]

    # -- helpers -------------------------------------------------------------------------------

    def _send(self, message: AuthRequest | SubscribeRequest | UnsubscribeRequest) -> Send:
        return Send(encode_client_message(message, self.encoding))

    def _fail(self, fatal: Fatal) -> Fatal:
        self.state = SessionState.FAILED
        self.deadline_ns = None
        self.failure = fatal
        return fatal


def _sets(channels: ChannelSets) -> dict[str, frozenset[str]]:
    """The channels named (``None`` fields left out) as sets of symbols."""
    found = {}
    for name in _CHANNELS:
        symbols = getattr(channels, name)
        if symbols is not None:
            found[name] = frozenset(symbols)
    return found


def _fields(sets: dict[str, frozenset[str]]) -> dict[str, tuple[str, ...]]:
    """Sets back to ChannelSets fields (sorted: the bytes sent are the same every time)."""
    return {name: tuple(sorted(symbols)) for name, symbols in sets.items() if symbols}
