"""What a decoder returns: the good messages, a typed error per bad one, and the unknown ones.

A decoder never raises on bad input and never drops a good message because a neighbour was bad:
it hands back a :class:`Decoded` and bumps the counters in its :class:`DecodeStats`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import msgspec
from msgspec import Struct, field

__all__ = [
    "DECODE_ERRORS",
    "EXCERPT_BYTES",
    "CodecError",
    "DecodeError",
    "DecodeStats",
    "Decoded",
    "UnknownMessage",
]

EXCERPT_BYTES: Final = 160
# What msgspec raises on bad input: its own errors, UnicodeDecodeError for invalid UTF-8 in a
# string and RecursionError for nesting deeper than it recurses (msgspec 0.22 lets both through).
DECODE_ERRORS: Final = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeDecodeError,
    RecursionError,
)
WHOLE_FRAME: Final = -1


class DecodeError(Struct, frozen=True, gc=False, kw_only=True):
    """One message (``index`` in its frame) or a whole frame (``index == -1``) that did not decode.

    ``source`` names the codec (``alpaca.stocks.json``), ``reason`` says what was wrong and where,
    ``excerpt`` holds the first bytes of the offending message.
    """

    source: str
    reason: str
    excerpt: bytes
    index: int = WHOLE_FRAME


class UnknownMessage(Struct, frozen=True, gc=False, kw_only=True):
    """A well-formed message of a type this codec does not know (kept, counted, not fatal)."""

    source: str
    type: str
    raw: bytes


class Decoded(Struct, gc=False):
    """The result of decoding one frame or body. (Not tracked by the garbage collector: it holds
    lists of messages, never itself, and one is made per frame: 20 ns of a frame's decode.)"""

    messages: list[Any] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)
    unknown: list[UnknownMessage] = field(default_factory=list)


class DecodeStats:
    """What a decoder counts of bad input for the daemon to export: typed errors and unknown
    message types. Frames and messages are the caller's to count (the daemon's feeds count what
    they publish): counting them here too cost the fast path 2 % of a frame's decode."""

    __slots__ = ("errors", "unknown", "unknown_types")

    def __init__(self) -> None:
        self.errors = 0
        self.unknown = 0
        self.unknown_types: Counter[str] = Counter()

    def record(self, result: Decoded) -> Decoded:
        """Count a frame's bad input; returns it so decoders can ``return stats.record(result)``."""
        if result.errors:
            self.errors += len(result.errors)
        if result.unknown:
            self.unknown += len(result.unknown)
            self.unknown_types.update(u.type for u in result.unknown)
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "unknown": self.unknown,
            "unknown_types": dict(self.unknown_types),
        }


class CodecError(ValueError):
    """Raised by encoders given a value the wire cannot carry, and by strict helpers."""

    def __init__(self, error: DecodeError) -> None:
        super().__init__(f"{error.source}: {error.reason}")
        self.error = error


def excerpt(data: Any) -> bytes:
    """The first :data:`EXCERPT_BYTES` bytes of ``data`` (text or any buffer), for context."""
    if isinstance(data, str):
        return data[:EXCERPT_BYTES].encode("utf-8", "replace")
    return bytes(memoryview(data)[:EXCERPT_BYTES])
