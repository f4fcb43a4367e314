"""Alpaca market-data streams (stocks, crypto, options, news) in JSON and msgpack, both ways.

Every server frame is an array of objects tagged by ``T``. Decoding takes three routes:

* fast (stocks and crypto, JSON and msgpack): one compiled pass copies the frame into a scratch
  buffer with the timestamps as integer nanoseconds and the receive stamp added to each message
  (:mod:`.fastpath`), then one msgspec call decodes the whole copy into the public structs. No
  Python runs per message.
* per frame in Python (options and news): one msgspec call into private *wire* structs,
  which subclass the public structs and differ only in the timestamp's type (text or the msgpack
  timestamp extension); the timestamps are converted in place, ``ts_recv`` is set, and each
  struct's class is switched to its public parent (same layout: one pointer write).
* careful: if anything in the frame is off (an unknown ``T``, a missing field, not JSON at all,
  a timestamp in a form the fast pass leaves alone such as msgpack's 12-byte one) the frame is
  split into raw messages and each is decoded on its own, so one bad message costs only itself.
  Unknown types are kept as :class:`UnknownMessage`, bad ones become :class:`DecodeError`.
"""

import functools
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias, cast

import msgspec
from msgspec import Struct, defstruct, field

from .errors import (
    DECODE_ERRORS,
    CodecError,
    Decoded,
    DecodeError,
    DecodeStats,
    UnknownMessage,
    excerpt,
)
from .fastpath import entry_point, rewrite_json_times, rewrite_msgpack_times, scratch_size
from .schema import (
    Bar,
    CancelError,
    ChannelSets,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    Imbalance,
    Luld,
    News,
    OrderbookUpdate,
    Quote,
    StreamError,
    Subscription,
    Success,
    Trade,
    TradingStatus,
    UpdatedBar,
)
from .timestamps import (
    FRACTION_SCALE,
    NS_PER_SECOND,
    SECONDS_CACHE,
    TimestampError,
    format_rfc3339_ns,
    msgpack_ext_to_ns,
    ns_to_msgpack_ext,
    parse_rfc3339_ns,
)

__all__ = [
    "CONTROL_TYPES",
    "STREAM_TYPES",
    "AlpacaDecoder",
    "AlpacaEncoder",
    "AuthRequest",
    "ClientMessage",
    "Encoding",
    "Stream",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "decode_client_message",
    "encode_client_message",
]

Stream: TypeAlias = Literal["stocks", "crypto", "options", "news"]
Encoding: TypeAlias = Literal["json", "msgpack"]

_Ext = msgspec.msgpack.Ext
_MSGPACK_TIMESTAMP: Final = -1
# The schema types each stream carries (the order is the decoding union's order).
STREAM_TYPES: Final[dict[str, tuple[type[Struct], ...]]] = {
    "stocks": (
        Trade,
        Quote,
        Bar,
        UpdatedBar,
        DailyBar,
        Correction,
        CancelError,
        Luld,
        TradingStatus,
        Imbalance,
    ),
    "crypto": (
        CryptoTrade,
        CryptoQuote,
        CryptoBar,
        CryptoUpdatedBar,
        CryptoDailyBar,
        OrderbookUpdate,
    ),
    "options": (Trade, Quote),
    "news": (News,),
}


def _tag(cls: type[Struct]) -> str:
    return cast(str, cls.__struct_config__.tag)


def _wire(public: type[Struct], time_type: Any, **overrides: Any) -> type[Struct]:
    """A wire struct: ``public`` with the timestamp kept as it arrives."""
    tag = _tag(public)
    fields: list[tuple[str, Any, Any]] = [("ts_event", time_type, field(name="t"))]
    fields += [(name, tp, default) for name, (tp, default) in overrides.items()]
    return defstruct(
        f"_{public.__name__}Wire_{tag}",
        fields,
        bases=(public,),
        tag_field="T",
        tag=tag,
        kw_only=True,
        module=__name__,
        namespace={"_public": public},
    )


class _Head(Struct, gc=False):
    T: str


def _news_wire(time_type: Any) -> type[Struct]:
    return defstruct(
        "_AlpacaNewsWire",
        [
            ("id", int),
            ("headline", str),
            ("created_at", time_type),
            ("updated_at", time_type),
            ("summary", str | None, None),
            ("author", str | None, None),
            ("url", str | None, None),
            ("content", str | None, None),
            ("symbols", list[str] | None, None),
            ("source", str | None, None),
        ],
        tag_field="T",
        tag="n",
        kw_only=True,
        module=__name__,
    )


@functools.cache
def _wire_types(stream: Stream, time_type: Any) -> tuple[type[Struct], ...]:
    """The wire structs of a stream, made once: every decoder of the stream shares them (msgspec
    caches what it learns of a type on the type, so new types would be learned again)."""
    if stream == "news":
        return (_news_wire(time_type),)
    if stream == "options":
        # Options carry their condition as one string, not an array.
        return tuple(_wire(cls, time_type, conditions=(str, "")) for cls in STREAM_TYPES[stream])
    return tuple(_wire(cls, time_type) for cls in STREAM_TYPES[stream])


CONTROL_TYPES: Final = (Success, StreamError, Subscription)


class AlpacaDecoder:
    """Decode frames of one Alpaca market-data stream in one encoding.

    ``decode(frame, ts_recv)`` never raises on bad input; see :class:`Decoded`. Counters are in
    ``stats``. One decoder per connection (the counters are per instance; the codec is stateless).
    """

    def __init__(self, stream: Stream, encoding: Encoding = "json") -> None:
        if stream not in ("stocks", "crypto", "options", "news"):
            raise ValueError(f"unknown Alpaca stream {stream!r}")
        if encoding not in ("json", "msgpack"):
            raise ValueError(f"unknown encoding {encoding!r}")
        self.stream: Final = stream
        self.encoding: Final = encoding
        self.source: Final = f"alpaca.{stream}.{encoding}"
        self.stats = DecodeStats()
        json_mode = encoding == "json"
        module = msgspec.json if json_mode else msgspec.msgpack
        wires = _wire_types(stream, str if json_mode else _Ext)
        union: Any = _union((*wires, *CONTROL_TYPES))
        self._frame = module.Decoder(list[union])
        self._raws = module.Decoder(list[msgspec.Raw])
        self._head = module.Decoder(_Head)
        structs: tuple[type[Struct], ...] = (*wires, *CONTROL_TYPES)
        self._by_tag = {cast(str, w.__struct_config__.tag): module.Decoder(w) for w in structs}
        self._public: dict[type, type] = {w: w._public for w in wires if hasattr(w, "_public")}
        self._special: dict[type, Any] = {}
        if stream == "news":
            self._special[wires[0]] = self._news
        elif stream == "options":
            for w in wires:
                self._special[w] = self._option
                del self._public[w]
        self._encode_for_excerpt = module.encode
        self._to_ns = _text_to_ns if json_mode else _ext_to_ns
        # The fast path's decode into the public structs (stocks and crypto only).
        self._native_decode: Any = None
        if stream in ("stocks", "crypto"):
            native: Any = _union((*STREAM_TYPES[stream], *CONTROL_TYPES))
            self._native_decode = module.Decoder(list[native]).decode
            self._rewrite = entry_point(rewrite_json_times if json_mode else rewrite_msgpack_times)
            self._grow(4096)

    def decode(self, frame: bytes | bytearray | memoryview | str, ts_recv: int = 0) -> Decoded:
        """Decode one frame. Good messages come back in order, stamped with ``ts_recv``."""
        if self._native_decode is None:
            return self.stats.record(self._decode(frame, ts_recv))
        # The fast path, inline: it runs once per frame.
        if type(frame) is not bytes:
            frame = frame.encode() if isinstance(frame, str) else bytes(frame)
        if (size := self._rewrite(frame, self._scratch, ts_recv)) < 0:
            return self._refused(frame, ts_recv)
        try:
            messages = self._native_decode(self._views[size] or self._slice(size))
        except DECODE_ERRORS:
            return self.stats.record(self._decode_carefully(frame, ts_recv))
        return Decoded(messages)

    def _refused(self, frame: bytes, ts_recv: int) -> Decoded:
        """The kernel refused ``frame``: if the scratch buffer was too small (the kernel checks
        its room, so a big frame costs nothing until then), grow it and try again; otherwise the
        frame holds something the fast path leaves to the careful one."""
        if len(frame) > self._room:
            self._grow(len(frame))
            return self.decode(frame, ts_recv)
        return self.stats.record(self._decode_carefully(frame, ts_recv))

    def _grow(self, frame_size: int) -> None:
        """A scratch buffer for the kernel's output, reused frame after frame, and its slices
        by length (made once each: a slice costs 2 % of a frame's decode)."""
        self._scratch = bytearray(scratch_size(frame_size))
        self._view = memoryview(self._scratch)
        self._views: list[memoryview | None] = [None] * (len(self._scratch) + 1)
        self._room = frame_size

    def _slice(self, size: int) -> memoryview:
        view = self._views[size] = self._view[:size]
        return view

    def _decode(self, frame: bytes | bytearray | memoryview | str, ts_recv: int) -> Decoded:
        try:
            messages = self._frame.decode(frame)
        except DECODE_ERRORS:
            return self._decode_carefully(frame, ts_recv)
        return self._finish(Decoded(messages), range(len(messages)), ts_recv)

    # -- the careful path ----------------------------------------------------------------------

    def _decode_carefully(self, frame: Any, ts_recv: int) -> Decoded:
        result = Decoded()
        try:
            raws = self._raws.decode(frame)
        except DECODE_ERRORS as exc:
            result.errors.append(self._error(f"frame is not an array: {exc}", frame))
            return result
        indices: list[int] = []
        for index, raw in enumerate(raws):
            try:
                tag = self._head.decode(raw).T
            except DECODE_ERRORS as exc:
                result.errors.append(self._error(f"not a message object: {exc}", raw, index))
                continue
            decoder = self._by_tag.get(tag)
            if decoder is None:
                result.unknown.append(UnknownMessage(source=self.source, type=tag, raw=bytes(raw)))
                continue
            try:
                result.messages.append(decoder.decode(raw))
            except DECODE_ERRORS as exc:
                result.errors.append(self._error(f"T={tag!r}: {exc}", raw, index))
                continue
            indices.append(index)
        return self._finish(result, indices, ts_recv)

    def _finish(self, result: Decoded, indices: Sequence[int], ts_recv: int) -> Decoded:
        """Convert the decoded wire structs in place; move those with a bad timestamp to the
        errors (``indices`` maps each message to its position in the frame)."""
        finish = self._finish_json if self.encoding == "json" else self._finish_msgpack
        bad = finish(result.messages, ts_recv)
        if not bad:
            return result
        drop = set()
        for position, reason in bad:
            drop.add(position)
            message = result.messages[position]
            raw = self._encode_for_excerpt(message)
            result.errors.append(self._error(reason, raw, indices[position]))
        result.messages = [m for i, m in enumerate(result.messages) if i not in drop]
        result.errors.sort(key=lambda e: e.index)
        return result

    def _error(self, reason: str, data: Any, index: int = -1) -> DecodeError:
        return DecodeError(source=self.source, reason=reason, excerpt=excerpt(data), index=index)

    # -- timestamps and class switch (the per-message hot path) --------------------------------

    def _finish_json(self, messages: list[Any], ts_recv: int) -> list[tuple[int, str]]:
        public_of = self._public
        seconds = SECONDS_CACHE.__getitem__
        scale = FRACTION_SCALE
        bad: list[tuple[int, str]] = []
        for position, message in enumerate(messages):
            public = public_of.get(type(message))
            if public is None:
                if type(message) in self._special:
                    self._finish_special(messages, position, ts_recv, bad)
                continue
            text = message.ts_event
            fraction = text[20:-1]
            try:
                if text[-1] == "Z" and text[19] == "." and text.isascii() and fraction.isdigit():
                    message.ts_event = seconds(text[:20]) + int(fraction) * scale[len(fraction)]
                else:
                    message.ts_event = parse_rfc3339_ns(text)
            except (TimestampError, IndexError) as exc:
                bad.append((position, f"bad timestamp t={text[:40]!r}: {exc}"))
                continue
            message.ts_recv = ts_recv
            message.__class__ = public
        return bad

    def _finish_msgpack(self, messages: list[Any], ts_recv: int) -> list[tuple[int, str]]:
        public_of = self._public.get
        from_bytes = int.from_bytes  # big-endian by default
        bad: list[tuple[int, str]] = []
        for position, message in enumerate(messages):
            public = public_of(type(message))
            if public is None:
                if type(message) in self._special:
                    self._finish_special(messages, position, ts_recv, bad)
                continue
            ext = message.ts_event
            data = ext.data
            if len(data) == 8 and ext.code == _MSGPACK_TIMESTAMP:
                packed = from_bytes(data)
                nanos = packed >> 34
                if nanos < NS_PER_SECOND:
                    message.ts_event = (packed & 0x3_FFFF_FFFF) * NS_PER_SECOND + nanos
                    message.ts_recv = ts_recv
                    message.__class__ = public
                    continue
            try:
                message.ts_event = _ext_to_ns(ext)
            except TimestampError as exc:
                bad.append((position, f"bad timestamp t: {exc}"))
                continue
            message.ts_recv = ts_recv
            message.__class__ = public
        return bad

    def _finish_special(
        self, messages: list[Any], position: int, ts_recv: int, bad: list[tuple[int, str]]
    ) -> None:
        try:
            messages[position] = self._special[type(messages[position])](
                messages[position], ts_recv
            )
        except TimestampError as exc:
            bad.append((position, f"bad timestamp: {exc}"))

    def _option(self, message: Any, ts_recv: int) -> Trade | Quote:
        message.ts_event = self._to_ns(message.ts_event)
        message.conditions = (message.conditions,) if message.conditions else ()
        message.ts_recv = ts_recv
        message.__class__ = message._public
        return cast(Trade | Quote, message)

    def _news(self, wire: Any, ts_recv: int) -> News:
        to_ns = self._to_ns
        return News(
            provider="alpaca",
            id=str(wire.id),
            ts_event=to_ns(wire.created_at),
            ts_updated=to_ns(wire.updated_at),
            headline=wire.headline,
            summary=wire.summary or "",
            author=wire.author or "",
            url=wire.url or "",
            content=wire.content or "",
            symbols=tuple(wire.symbols or ()),
            source=wire.source or "",
            ts_recv=ts_recv,
        )


def _union(types: tuple[type, ...]) -> Any:
    union: Any = types[0]
    for tp in types[1:]:
        union = union | tp
    return union


def _text_to_ns(value: str) -> int:
    return parse_rfc3339_ns(value)


def _ext_to_ns(value: msgspec.msgpack.Ext) -> int:
    if value.code != _MSGPACK_TIMESTAMP:
        raise TimestampError(f"msgpack extension type {value.code} is not a timestamp (-1)")
    return msgpack_ext_to_ns(bytes(value.data))


# --- encoding -----------------------------------------------------------------------------------

_LOCAL_FIELDS: Final = frozenset({"ts_recv"})


@functools.cache
def _plan(cls: type[Struct]) -> list[tuple[str, str, Any]]:
    """(attribute, wire key, default) for the fields that go on the wire, in order (once per
    struct type: ``msgspec.structs.fields`` resolves the type annotations on every call)."""
    plan = []
    for info in msgspec.structs.fields(cls):
        if info.name in _LOCAL_FIELDS:
            continue
        default = info.default if info.default is not msgspec.NODEFAULT else msgspec.NODEFAULT
        plan.append((info.name, info.encode_name, default))
    return plan


class AlpacaEncoder:
    """Encode schema structs as the frames an Alpaca market-data stream sends (for the fake
    exchange and the tests). Fields at their default are left out, as Alpaca leaves out keys a
    message does not carry."""

    def __init__(self, stream: Stream, encoding: Encoding = "json") -> None:
        if stream not in STREAM_TYPES:
            raise ValueError(f"unknown Alpaca stream {stream!r}")
        self.stream: Final = stream
        self.encoding: Final = encoding
        self.source: Final = f"alpaca.{stream}.{encoding}"
        self._json = encoding == "json"
        self._encode = msgspec.json.encode if self._json else msgspec.msgpack.encode
        self._types = STREAM_TYPES[stream]
        self._plans = {cls: _plan(cls) for cls in self._types if cls is not News}

    def encode(self, messages: Any) -> bytes:
        """One frame holding ``messages`` (data messages and/or control messages)."""
        return self._encode([self.to_wire(m) for m in messages])

    def to_wire(self, message: Any) -> Any:
        """The wire object (dict, or the control struct itself) for one message."""
        if isinstance(message, CONTROL_TYPES):
            return message
        cls = type(message)
        if cls not in self._types:
            raise CodecError(
                DecodeError(
                    source=self.source,
                    reason=f"{cls.__name__} is not carried by the {self.stream} stream",
                    excerpt=b"",
                )
            )
        if cls is News:
            return self._news(message)
        wire: dict[str, Any] = {"T": _tag(cls)}
        for name, key, default in self._plans[cls]:
            value = getattr(message, name)
            if name == "ts_event":
                value = self._time(value)
            elif value == default:
                continue
            elif name == "conditions" and self.stream == "options":
                if len(value) != 1:
                    raise self._error(f"an option message carries one condition, got {value!r}")
                value = value[0]
            wire[key] = value
        return wire

    def _news(self, news: News) -> dict[str, Any]:
        if news.provider != "alpaca" or not news.id.isdigit():
            raise self._error(f"Alpaca news ids are integers, got {news.id!r}")
        return {
            "T": "n",
            "id": int(news.id),
            "headline": news.headline,
            "summary": news.summary,
            "author": news.author,
            "created_at": self._time(news.ts_event),
            "updated_at": self._time(news.ts_updated),
            "url": news.url,
            "content": news.content,
            "symbols": list(news.symbols),
            "source": news.source,
        }

    def _time(self, ns: int) -> Any:
        try:
            if self._json:
                return format_rfc3339_ns(ns)
            return _Ext(_MSGPACK_TIMESTAMP, ns_to_msgpack_ext(ns))
        except TimestampError as exc:
            raise self._error(str(exc)) from None

    def _error(self, reason: str) -> CodecError:
        return CodecError(DecodeError(source=self.source, reason=reason, excerpt=b""))


# --- client -> server messages (what the feed sends; what the fake exchange reads) -------------


class AuthRequest(Struct, tag_field="action", tag="auth", frozen=True, gc=False):
    """``{"action": "auth", "key", "secret"}``; ``key`` may be ``access_token``/``oauth``."""

    key: str
    secret: str


class SubscribeRequest(
    ChannelSets, tag_field="action", tag="subscribe", frozen=True, kw_only=True, omit_defaults=True
):
    """Add these symbols to the channels named (the server answers with the full set)."""


class UnsubscribeRequest(
    ChannelSets,
    tag_field="action",
    tag="unsubscribe",
    frozen=True,
    kw_only=True,
    omit_defaults=True,
):
    """Remove these symbols from the channels named."""


ClientMessage: TypeAlias = AuthRequest | SubscribeRequest | UnsubscribeRequest
_CLIENT_DECODERS: Final[dict[str, Any]] = {
    "json": msgspec.json.Decoder(ClientMessage),
    "msgpack": msgspec.msgpack.Decoder(ClientMessage),
}


def decode_client_message(
    data: bytes | str, encoding: Encoding = "json"
) -> ClientMessage | DecodeError:
    """A client's message to a market-data stream, or the typed error the server should answer."""
    try:
        message: ClientMessage = _CLIENT_DECODERS[encoding].decode(data)
    except DECODE_ERRORS as exc:
        return DecodeError(
            source=f"alpaca.client.{encoding}", reason=str(exc), excerpt=excerpt(data)
        )
    return message


def encode_client_message(message: ClientMessage, encoding: Encoding = "json") -> bytes:
    """Encode a client message in the connection's negotiated encoding."""
    return msgspec.json.encode(message) if encoding == "json" else msgspec.msgpack.encode(message)
