"""What a sans-I/O session tells the websocket client around it to do.

A session (Alpaca market data, Alpaca ``trade_updates``, Finnhub) is driven by connection events
and decoded messages and answers with a list of these actions; the client in
``tickd.daemon.feeds.websocket`` carries them out in order and knows nothing of any protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

from msgspec import Struct

from .errors import Decoded
from .schema import ChannelSets

__all__ = [
    "Action",
    "Deliver",
    "Fatal",
    "Mismatch",
    "Ready",
    "Reconnect",
    "Rejected",
    "Send",
    "Session",
    "StreamDecoder",
]


class Send(Struct, frozen=True):
    """Bytes to send on the socket, in the connection's encoding."""

    data: bytes


class Deliver(Struct, frozen=True):
    """Data messages for the rest of the daemon."""

    messages: list[Any]


class Ready(Struct, frozen=True):
    """The handshake is complete: authenticated and the subscription acknowledged."""


class Reconnect(Struct, frozen=True):
    """Close this socket and connect again after the backoff, but not before ``wait_at_least``
    seconds (the reap window after a 406)."""

    reason: str
    code: int = 0
    wait_at_least: float = 0.0


class Fatal(Struct, frozen=True):
    """Stop the feed: retrying cannot help (bad keys, no entitlement, a configuration error)."""

    reason: str
    code: int


class Rejected(Struct, frozen=True):
    """The server refused a request; the connection and the previous subscription stay."""

    reason: str
    code: int


class Mismatch(Struct, frozen=True):
    """The acknowledged subscription differs from the wanted one."""

    missing: ChannelSets  # wanted, not acknowledged
    unexpected: ChannelSets  # acknowledged, not wanted


Action: TypeAlias = Send | Deliver | Ready | Reconnect | Fatal | Rejected | Mismatch


class Session(Protocol):
    """The protocol state of one endpoint across reconnects, as the client drives it."""

    @property
    def deadline_ns(self) -> int | None:
        """When (monotonic) the step in progress must have been answered; None: no step."""

    def connection_made(self, now_ns: int) -> list[Action]:
        """A socket opened; what to send first (often nothing: the server speaks first)."""

    def connection_lost(self) -> None:
        """The socket closed; the next :meth:`connection_made` starts a new handshake."""

    def check_deadline(self, now_ns: int) -> list[Action]:
        """Called once :attr:`deadline_ns` has passed."""

    def receive(self, messages: list[Any], now_ns: int) -> list[Action]:
        """Act on one frame's decoded messages; data messages come back in :class:`Deliver`."""


class StreamDecoder(Protocol):
    """Turns one websocket frame into messages of the unified schema."""

    def decode(self, frame: bytes | bytearray | memoryview | str, ts_recv: int = 0) -> Decoded: ...
