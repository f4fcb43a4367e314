"""Alpaca stock frames -> tickd structs, vs alpaca-py's receive path and msgspec's lossy decode.

One frame = 10 trades or 10 quotes, built with :class:`AlpacaEncoder` from realistic structs
(nanosecond timestamps, SIP-like condition lists), in JSON and msgpack. The same bytes go to:

* tickd: ``AlpacaDecoder("stocks", encoding).decode(frame, ts_recv)``, exact-ns ``Trade``/``Quote``;
* alpaca-py (msgpack only): what ``DataStream._consume`` does per frame, ``msgpack.unpackb`` and
  the real ``DataStream._cast`` for each message (pydantic ``Trade``/``Quote``, ``t`` -> datetime);
* msgspec lossy: one reused msgspec decoder into a tagged union of structs with ``t: datetime``,
  which rounds to microseconds -- the floor for a decoder that keeps the nanoseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]
import msgspec
import numpy as np
from msgspec import Struct, field

from bench.harness import Config, Report, at_most, benchmark, compare, faster_by
from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder, Encoding
from tickd.codecs.schema import Quote, Trade

FRAME_SIZE = 10
TS_RECV = 1_717_162_200_500_000_000
ALPACA_PY_TARGET = faster_by(15, "alpaca-py")
MSGSPEC_TARGET = at_most(1.4, "msgspec lossy")

_SYMBOLS = (
    "AAPL",
    "MSFT",
    "NVDA",
    "AMZN",
    "TSLA",
    "META",
    "GOOGL",
    "AMD",
    "SPY",
    "QQQ",
    "BRK.B",
    "JPM",
    "PLTR",
    "SOFI",
    "F",
)
_BASE_PRICES = (
    191.3,
    415.2,
    1094.5,
    178.9,
    177.6,
    467.1,
    172.4,
    164.8,
    527.4,
    450.7,
    405.6,
    199.0,
    21.9,
    6.83,
    11.97,
)
_EXCHANGES = ("V", "Q", "N", "P", "Z", "K", "D", "X", "Y", "J", "H", "U")
# SIP trade condition sets as Alpaca sends them (regular, odd lot, ISO, form T, ...).
_TRADE_CONDITIONS = (
    ("@",),
    ("@", "I"),
    ("@", "F"),
    ("@", "F", "I"),
    ("@", "T"),
    ("@", "T", "I"),
    ("@", "4"),
    ("@", "Z"),
)
_TRADE_CONDITION_WEIGHTS = (0.40, 0.30, 0.10, 0.08, 0.05, 0.04, 0.02, 0.01)


def _tape(symbol: str) -> str:
    """SIP tape: A = NYSE-listed, B = NYSE Arca/other (ETFs here), C = Nasdaq-listed."""
    return "A" if symbol in ("BRK.B", "JPM", "F") else "B" if symbol == "SPY" else "C"


def _times(rng: np.random.Generator, count: int) -> list[int]:
    """Rising nanosecond times within about a second of 2024-05-31 13:30 UTC; 9 digits each."""
    start = 1_717_162_200_000_000_000 + int(rng.integers(0, 400_000_000))
    steps = rng.integers(1_000, 80_000_000, size=count)
    times = [start + int(x) for x in np.cumsum(steps)]
    return [t if t % 10 else t + 7 for t in times]  # last digit non-zero: all 9 digits matter


def make_trades(rng: np.random.Generator, count: int = FRAME_SIZE) -> list[Trade]:
    picks = rng.integers(0, len(_SYMBOLS), size=count)
    conditions = rng.choice(len(_TRADE_CONDITIONS), size=count, p=_TRADE_CONDITION_WEIGHTS)
    trades = []
    for ts, pick, cond in zip(_times(rng, count), picks, conditions, strict=True):
        symbol = _SYMBOLS[pick]
        price = round(_BASE_PRICES[pick] * (1 + rng.normal(0, 0.002)), 2)
        size = int(rng.choice((100, 200, 500))) if rng.random() < 0.4 else int(rng.integers(1, 99))
        trades.append(
            Trade(
                symbol=symbol,
                ts_event=ts,
                price=price,
                size=size,
                trade_id=int(rng.integers(1_000, 60_000_000_000_000)),
                exchange=_EXCHANGES[int(rng.integers(0, len(_EXCHANGES)))],
                conditions=_TRADE_CONDITIONS[cond],
                tape=_tape(symbol),
            )
        )
    return trades


def make_quotes(rng: np.random.Generator, count: int = FRAME_SIZE) -> list[Quote]:
    picks = rng.integers(0, len(_SYMBOLS), size=count)
    quotes = []
    for ts, pick in zip(_times(rng, count), picks, strict=True):
        symbol = _SYMBOLS[pick]
        mid = _BASE_PRICES[pick] * (1 + rng.normal(0, 0.002))
        tick = 0.01 * int(rng.integers(1, 4))
        quotes.append(
            Quote(
                symbol=symbol,
                ts_event=ts,
                bid_price=round(mid - tick / 2, 2),
                bid_size=int(rng.integers(1, 20)),
                ask_price=round(mid + tick / 2 + 0.01, 2),
                ask_size=int(rng.integers(1, 20)),
                bid_exchange=_EXCHANGES[int(rng.integers(0, len(_EXCHANGES)))],
                ask_exchange=_EXCHANGES[int(rng.integers(0, len(_EXCHANGES)))],
                conditions=("R",),
                tape=_tape(symbol),
            )
        )
    return quotes


# --- peer: msgspec with its own (microsecond) datetime decoding -----------------------------------


# Fields in the wire's key order, as tickd's structs: msgspec matches keys fastest in that order.
class LossyTrade(Struct, tag_field="T", tag="t", kw_only=True):
    symbol: str = field(name="S")
    trade_id: int = field(default=0, name="i")
    exchange: str = field(default="", name="x")
    price: float = field(name="p")
    size: int = field(name="s")
    conditions: tuple[str, ...] = field(default=(), name="c")
    tape: str = field(default="", name="z")
    ts_event: dt.datetime = field(name="t")


class LossyQuote(Struct, tag_field="T", tag="q", kw_only=True):
    symbol: str = field(name="S")
    bid_exchange: str = field(default="", name="bx")
    bid_price: float = field(name="bp")
    bid_size: int = field(name="bs")
    ask_exchange: str = field(default="", name="ax")
    ask_price: float = field(name="ap")
    ask_size: int = field(name="as")
    conditions: tuple[str, ...] = field(default=(), name="c")
    tape: str = field(default="", name="z")
    ts_event: dt.datetime = field(name="t")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _dt_ns(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


# --- peer: alpaca-py ---------------------------------------------------------------------------


def _alpaca_py_stream() -> Any:
    """A real ``StockDataStream`` (never connected), whose ``_cast`` we call."""
    from alpaca.data.live.stock import StockDataStream

    return StockDataStream("bench-key", "bench-secret")


def _alpaca_py_receive(stream: Any) -> Callable[[bytes], list[Any]]:
    cast = stream._cast
    unpackb = msgpack.unpackb

    def receive(frame: bytes) -> list[Any]:
        # DataStream._consume: msgs = msgpack.unpackb(r); for msg in msgs: ... _dispatch(msg),
        # and _dispatch starts with self._cast(msg). Handlers and asyncio are left out.
        return [cast(msg) for msg in unpackb(frame)]

    return receive


# --- checks -------------------------------------------------------------------------------------


def _check_tickd(decoder: AlpacaDecoder, frame: bytes, truth: list[Any]) -> None:
    result = decoder.decode(frame, TS_RECV)
    if result.errors or result.unknown:
        raise AssertionError(f"tickd reported errors: {result.errors} {result.unknown}")
    expected = [msgspec.structs.replace(m, ts_recv=TS_RECV) for m in truth]
    if result.messages != expected:
        raise AssertionError(f"tickd decoded {result.messages!r}, expected {expected!r}")
    for got, want in zip(result.messages, truth, strict=True):
        if type(got.ts_event) is not int or got.ts_event != want.ts_event:
            raise AssertionError(f"tickd timestamp {got.ts_event!r} != {want.ts_event}")


def _check_lossy(decoder: Any, frame: bytes, truth: list[Any]) -> None:
    decoded = decoder.decode(frame)
    assert len(decoded) == len(truth)
    lost = 0
    for got, want in zip(decoded, truth, strict=True):
        assert got.symbol == want.symbol
        ns = _dt_ns(got.ts_event)
        if abs(ns - want.ts_event) > 500:  # must be the µs-rounded value...
            raise AssertionError(f"msgspec lossy {got.ts_event} is not {want.ts_event} to the µs")
        lost += ns != want.ts_event
    if lost != len(truth):  # ...and must really have lost the last three digits
        raise AssertionError(f"msgspec lossy kept the nanoseconds of {len(truth) - lost} messages")


def _check_alpaca_py(receive: Callable[[bytes], list[Any]], frame: bytes, truth: list[Any]) -> None:
    from alpaca.data.models import Quote as PyQuote
    from alpaca.data.models import Trade as PyTrade

    models = receive(frame)
    assert len(models) == len(truth)
    for got, want in zip(models, truth, strict=True):
        kind = PyTrade if isinstance(want, Trade) else PyQuote
        if not isinstance(got, kind) or got.symbol != want.symbol:
            raise AssertionError(f"alpaca-py cast {got!r} for {want!r}")
        if abs(_dt_ns(got.timestamp) - want.ts_event) >= 1_000:
            raise AssertionError(f"alpaca-py timestamp {got.timestamp} for {want.ts_event}")


# --- the benchmark ------------------------------------------------------------------------------


@benchmark("decode", "Alpaca stock frames (10 trades / 10 quotes, JSON and msgpack) -> structs")
def run(config: Config) -> Report:
    report = Report(
        packages=("msgspec", "msgpack", "alpaca-py", "pydantic", "pydantic-core", "numpy")
    )
    rng = np.random.default_rng(20240531)
    batches = {"trades": make_trades(rng), "quotes": make_quotes(rng)}
    stream = _alpaca_py_stream()
    alpaca_receive = _alpaca_py_receive(stream)
    lossy_type = list[LossyTrade | LossyQuote]

    encodings: tuple[Encoding, ...] = ("msgpack", "json")
    for encoding in encodings:
        module: Any = msgspec.msgpack if encoding == "msgpack" else msgspec.json
        lossy = module.Decoder(lossy_type)
        for kind, truth in batches.items():
            frame = AlpacaEncoder("stocks", encoding).encode(truth)
            tickd = AlpacaDecoder("stocks", encoding)
            _check_tickd(tickd, frame, truth)
            _check_lossy(lossy, frame, truth)
            candidates: dict[str, Callable[[], object]] = {
                "tickd": partial(tickd.decode, frame, TS_RECV),
                "msgspec lossy": partial(lossy.decode, frame),
            }
            if encoding == "msgpack":
                _check_alpaca_py(alpaca_receive, frame, truth)
                candidates["alpaca-py"] = partial(alpaca_receive, frame)
            timings = compare(candidates, config, items=len(truth))
            label = f"{encoding} {kind} x{len(truth)} ({len(frame)} B)"
            if encoding == "msgpack":
                report.versus(
                    f"{label} tickd",
                    timings["tickd"],
                    "alpaca-py",
                    timings["alpaca-py"],
                    ALPACA_PY_TARGET,
                )
            report.versus(
                f"{label} tickd",
                timings["tickd"],
                "msgspec lossy",
                timings["msgspec lossy"],
                MSGSPEC_TARGET,
            )
            noisy = [f"{n} {t.spread:.0%}" for n, t in timings.items() if t.spread > 0.10]
            if noisy:
                report.notes.append(f"{label}: noisy, IQR/median: {', '.join(noisy)}")

    report.notes += [
        "ns/msg = median over interleaved rounds of (time per frame / 10); ratio = median of the "
        "per-round ratios. All outputs verified before timing (tickd: exact ns; msgspec lossy: "
        "rounded to the µs; alpaca-py: right models, µs timestamps).",
        "alpaca-py peer is msgpack only: alpaca-py's market-data stream always speaks msgpack "
        "(its _cast needs msgpack Timestamp objects); there is no JSON path to compare with.",
        "alpaca-py = msgpack.unpackb + the real DataStream._cast per message (no handlers, no "
        "asyncio); msgspec lossy = one reused Decoder(list[LossyTrade | LossyQuote]) with "
        "t: datetime (rounds to µs).",
    ]
    return report
