"""Alpaca's trading stream (``trade_updates``, authorization, listening, errors), both ways.

Frames are single objects ``{"stream": ..., "data": ...}`` (paper sends them as binary frames
even in JSON mode). Every number is a decimal string and almost everything may be ``null``
(alpaca-py broke on a missing ``execution_id``): only ``event`` and ``order.id`` are required.
Times carry ``Z`` or a numeric offset and up to nine fraction digits; they become UTC ns.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec
from msgspec import Struct

from .errors import DECODE_ERRORS, Decoded, DecodeError, DecodeStats, UnknownMessage, excerpt
from .schema import Authorization, LegExecution, Listening, Order, OrderUpdate, StreamError
from .timestamps import TimestampError, format_rfc3339_ns, parse_rfc3339_ns

__all__ = [
    "ListenRequest",
    "TradingAuthRequest",
    "TradingStreamDecoder",
    "decode_client_message",
    "encode_client_message",
    "encode_control",
    "encode_trade_update",
]

_TIME_FIELDS: Final = (
    "created_at",
    "updated_at",
    "submitted_at",
    "filled_at",
    "expired_at",
    "canceled_at",
    "cancel_requested_at",
    "failed_at",
    "replaced_at",
)
_DECIMAL_FIELDS: Final = (
    "qty",
    "notional",
    "filled_qty",
    "filled_avg_price",
    "limit_price",
    "stop_price",
    "trail_price",
    "trail_percent",
    "hwm",
    "ratio_qty",
)


class _OrderWire(Struct, kw_only=True):
    id: str
    client_order_id: str | None = None
    symbol: str | None = None
    asset_id: str | None = None
    asset_class: str | None = None
    side: str | None = None
    order_type: str | None = None
    type: str | None = None
    order_class: str | None = None
    time_in_force: str | None = None
    status: str | None = None
    extended_hours: bool | None = None
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    ratio_qty: Decimal | None = None
    created_at: str | None = None
    updated_at: str | None = None
    submitted_at: str | None = None
    filled_at: str | None = None
    expired_at: str | None = None
    canceled_at: str | None = None
    cancel_requested_at: str | None = None
    failed_at: str | None = None
    replaced_at: str | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    legs: "list[_OrderWire] | None" = None


class _LegWire(Struct, kw_only=True):
    execution_id: str
    order_id: str
    symbol: str
    qty: Decimal
    price: Decimal
    timestamp: str


class _UpdateWire(Struct, kw_only=True):
    event: str
    order: _OrderWire
    timestamp: str | None = None
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    event_id: str | None = None
    at: str | None = None
    position_qtys: dict[str, Decimal] | None = None
    legs: list[_LegWire] | None = None


class _Envelope(Struct, kw_only=True):
    stream: str | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class _ErrorData(Struct, kw_only=True):
    error_message: str = ""


def _time(text: str | None) -> int | None:
    return None if text is None else parse_rfc3339_ns(text)


def _finite(value: Decimal, name: str) -> Decimal:
    """msgspec takes "NaN" and "Infinity" as decimals: here they are bad input (an sNaN raises
    on any comparison, far from the frame that carried it)."""
    if not value.is_finite():
        raise msgspec.ValidationError(f"{name}: not a finite number ({value})")
    return value


def _finite_or_none(value: Decimal | None, name: str) -> Decimal | None:
    return None if value is None else _finite(value, name)


def _order(wire: _OrderWire) -> Order:
    fields: dict[str, Any] = {
        name: _finite_or_none(getattr(wire, name), name) for name in _DECIMAL_FIELDS
    }
    fields.update((name, _time(getattr(wire, name))) for name in _TIME_FIELDS)
    return Order(
        id=wire.id,
        client_order_id=wire.client_order_id or "",
        symbol=wire.symbol or "",
        asset_id=wire.asset_id or "",
        asset_class=wire.asset_class or "",
        side=wire.side or "",
        order_type=wire.order_type or wire.type or "",
        order_class=wire.order_class or "",
        time_in_force=wire.time_in_force or "",
        status=wire.status or "",
        extended_hours=bool(wire.extended_hours),
        replaced_by=wire.replaced_by,
        replaces=wire.replaces,
        legs=None if wire.legs is None else tuple(_order(leg) for leg in wire.legs),
        **fields,
    )


def _update(wire: _UpdateWire, ts_recv: int) -> OrderUpdate:
    return OrderUpdate(
        event=wire.event,
        order=_order(wire.order),
        ts_event=_time(wire.timestamp),
        execution_id=wire.execution_id,
        price=_finite_or_none(wire.price, "price"),
        qty=_finite_or_none(wire.qty, "qty"),
        position_qty=_finite_or_none(wire.position_qty, "position_qty"),
        event_id=wire.event_id,
        ts_at=_time(wire.at),
        position_qtys=None
        if wire.position_qtys is None
        else {k: _finite(v, "position_qtys") for k, v in wire.position_qtys.items()},
        leg_executions=None
        if wire.legs is None
        else tuple(
            LegExecution(
                execution_id=leg.execution_id,
                order_id=leg.order_id,
                symbol=leg.symbol,
                qty=_finite(leg.qty, "legs.qty"),
                price=_finite(leg.price, "legs.price"),
                ts_event=parse_rfc3339_ns(leg.timestamp),
            )
            for leg in wire.legs
        ),
        ts_recv=ts_recv,
    )


_NULL: Final = msgspec.Raw(b"null")
_Errors = (*DECODE_ERRORS, TimestampError)


class TradingStreamDecoder:
    """Decode trading-stream frames (one object each); never raises on bad input."""

    def __init__(self, encoding: Literal["json", "msgpack"] = "json") -> None:
        self.source: Final = f"alpaca.trading.{encoding}"
        self.stats = DecodeStats()
        module: Any = msgspec.json if encoding == "json" else msgspec.msgpack
        self._envelope = module.Decoder(_Envelope)
        self._update = module.Decoder(_UpdateWire)
        self._authorization = module.Decoder(Authorization)
        self._listening = module.Decoder(Listening)
        self._error_data = module.Decoder(_ErrorData)

    def decode(self, frame: bytes | bytearray | memoryview | str, ts_recv: int = 0) -> Decoded:
        result = Decoded()
        try:
            envelope = self._envelope.decode(frame)
            message = self._message(envelope, ts_recv)
        except _Errors as exc:
            result.errors.append(
                DecodeError(source=self.source, reason=f"{exc}", excerpt=excerpt(frame))
            )
            return self.stats.record(result)
        if message is None:
            kind = envelope.stream or envelope.action or ""
            result.unknown.append(UnknownMessage(source=self.source, type=kind, raw=excerpt(frame)))
        else:
            result.messages.append(message)
        return self.stats.record(result)

    def _message(self, envelope: _Envelope, ts_recv: int) -> Any:
        data = envelope.data
        if envelope.stream is None and envelope.action == "error":
            detail = _ErrorData() if data == _NULL else self._error_data.decode(data)
            return StreamError(code=0, msg=detail.error_message)
        if envelope.stream == "trade_updates":
            return _update(self._update.decode(data), ts_recv)
        if envelope.stream == "authorization":
            return self._authorization.decode(data)
        if envelope.stream == "listening":
            return self._listening.decode(data)
        return None


# --- encoding -----------------------------------------------------------------------------------


def _time_text(ns: int | None) -> str | None:
    return None if ns is None else format_rfc3339_ns(ns)


def _order_wire(order: Order) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "asset_id": order.asset_id,
        "asset_class": order.asset_class,
        "side": order.side,
        "order_type": order.order_type,
        "type": order.order_type,
        "order_class": order.order_class,
        "time_in_force": order.time_in_force,
        "status": order.status,
        "extended_hours": order.extended_hours,
    }
    wire.update((name, getattr(order, name)) for name in _DECIMAL_FIELDS)
    wire.update((name, _time_text(getattr(order, name))) for name in _TIME_FIELDS)
    wire["replaced_by"] = order.replaced_by
    wire["replaces"] = order.replaces
    wire["legs"] = None if order.legs is None else [_order_wire(leg) for leg in order.legs]
    return wire


def _skip_none(items: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in items.items() if value is not None}


def encode_trade_update(update: OrderUpdate) -> bytes:
    """A ``{"stream": "trade_updates", "data": {...}}`` frame (JSON, as paper sends it)."""
    data = _skip_none(
        {
            "event": update.event,
            "timestamp": _time_text(update.ts_event),
            "execution_id": update.execution_id,
            "price": update.price,
            "qty": update.qty,
            "position_qty": update.position_qty,
            "event_id": update.event_id,
            "at": _time_text(update.ts_at),
            "position_qtys": update.position_qtys,
            "legs": None
            if update.leg_executions is None
            else [
                {
                    "execution_id": leg.execution_id,
                    "qty": leg.qty,
                    "price": leg.price,
                    "order_id": leg.order_id,
                    "symbol": leg.symbol,
                    "timestamp": format_rfc3339_ns(leg.ts_event),
                }
                for leg in update.leg_executions
            ],
        }
    )
    data["order"] = _order_wire(update.order)
    return msgspec.json.encode({"stream": "trade_updates", "data": data})


def encode_control(message: Authorization | Listening | StreamError) -> bytes:
    """The server's control frames: ``authorization``, ``listening`` and the error frame."""
    if isinstance(message, StreamError):
        return msgspec.json.encode({"action": "error", "data": {"error_message": message.msg}})
    stream = "authorization" if isinstance(message, Authorization) else "listening"
    return msgspec.json.encode({"stream": stream, "data": message})


# --- client -> server messages ------------------------------------------------------------------


class TradingAuthRequest(Struct, frozen=True, gc=False):
    """Either auth form: ``{"action":"auth","key","secret"}`` or the legacy ``authenticate``."""

    key: str
    secret: str


class ListenRequest(Struct, frozen=True):
    """``{"action":"listen","data":{"streams":[...]}}``: replaces the set of streams."""

    streams: tuple[str, ...]


class _ClientWire(Struct, kw_only=True):
    action: str
    key: str | None = None
    secret: str | None = None
    data: dict[str, Any] | None = None


_CLIENT: Final = msgspec.json.Decoder(_ClientWire)


def decode_client_message(data: bytes | str) -> TradingAuthRequest | ListenRequest | DecodeError:
    """A client's message to the trading stream, or the typed error the server should answer."""
    try:
        wire = _CLIENT.decode(data)
        body = wire.data or {}
        if wire.action == "auth" and wire.key is not None and wire.secret is not None:
            return TradingAuthRequest(wire.key, wire.secret)
        if wire.action == "authenticate":
            return msgspec.convert(
                {"key": body.get("key_id"), "secret": body.get("secret_key")}, TradingAuthRequest
            )
        if wire.action == "listen":
            return msgspec.convert(body, ListenRequest)
        reason = f"unknown or incomplete action {wire.action!r}"
    except DECODE_ERRORS as exc:
        reason = str(exc)
    return DecodeError(source="alpaca.trading.client", reason=reason, excerpt=excerpt(data))


def encode_client_message(message: TradingAuthRequest | ListenRequest) -> bytes:
    """Encode in the current documented form (``auth``, ``listen``)."""
    if isinstance(message, TradingAuthRequest):
        return msgspec.json.encode({"action": "auth", "key": message.key, "secret": message.secret})
    return msgspec.json.encode({"action": "listen", "data": {"streams": message.streams}})
