"""The fake exchange's market: events for any symbol asked for, paced by the wall clock.

Each symbol follows its own seeded path from the synthetic market factory
(:class:`~tickd.codecs.synthetic.SyntheticMarket` with that one symbol), so adding a symbol while
running changes nothing for the others: a symbol's events depend only on the seed, its name and
the minute its path starts (its *origin*). Symbols in the settings start with the exchange; any
other one starts when first asked for (a subscription, a bar request, an order). A path starts
``history_minutes`` before that moment: its minute bars up to now are the REST history a
warm-up or a backfill asks for, with no wait.

Time: the market clock starts at the exchange's start (timestamps look live) and runs ``speed``
market seconds per wall second. By default the session never closes: the generator runs in
*model time* on a Monday whose session lasts the whole day, one model day per segment, each
segment re-seeded and starting at the previous one's last price, and every timestamp is shifted
onto the live clock. ``always_open=False`` keeps the factory's own calendar (weekday sessions,
13:30-20:00 UTC) on the live clock, nights and weekends included.

With a ``tape``, the recorded Alpaca frames are replayed instead (decoded by the real codec),
their times shifted so the tape's first frame lands on the exchange's start.

Every :meth:`Market.step` hands the new events, in delivery order, to the subscribers (the
streams, the matching engine); the market keeps the latest trade, quote and bar of each symbol
and a bounded history of minute bars.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec
import structlog

from tickd.codecs.alpaca import AlpacaDecoder, Encoding, Stream
from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    DailyBar,
    News,
    Quote,
    Trade,
)
from tickd.codecs.synthetic import MarketConfig, MarketEvent, SyntheticMarket, available_at
from tickd.codecs.tape import TapeReader

from ..clock import Clock, LiveClock

__all__ = ["Market", "MarketSettings", "MarketStats", "is_crypto", "valid_symbol"]

_log = structlog.get_logger("tickd.fake_exchange")

NS_PER_SECOND: Final = 1_000_000_000
NS_PER_MINUTE: Final = 60 * NS_PER_SECOND
NS_PER_DAY: Final = 86_400 * NS_PER_SECOND
# Model time for the always-open market: a Monday (2024-03-04 00:00 UTC) with a 24-hour session.
_MODEL_MONDAY: Final = 1_709_510_400 * NS_PER_SECOND
_KNOWN_PRICES: Final = dict(MarketConfig().equities + MarketConfig().crypto)
_SYMBOL: Final = re.compile(r"[A-Z][A-Z0-9.\-]{0,19}(/[A-Z0-9]{1,10})?")

Subscriber = Callable[[list[Any]], None]
_TAPE_STREAMS: Final[dict[str, Stream]] = {
    "alpaca.stocks": "stocks",
    "alpaca.crypto": "crypto",
    "alpaca.news": "news",
}


def is_crypto(symbol: str) -> bool:
    """Crypto pairs are written ``BASE/QUOTE`` (Alpaca's form); everything else is an equity."""
    return "/" in symbol


def valid_symbol(symbol: str) -> bool:
    """An upper-case ticker (``BRK.B`` too) or a ``BASE/QUOTE`` pair."""
    return _SYMBOL.fullmatch(symbol) is not None


class MarketSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "BTC/USD")
    seed: int = 7
    speed: float = 60.0  # market seconds per wall second
    always_open: bool = True  # False: weekday sessions, 13:30-20:00 UTC
    history_minutes: int = 120  # minute bars a symbol has when it starts
    max_bars: int = 10_000  # minute bars kept per symbol
    tick: float = 0.05  # wall seconds between steps
    tape: str | None = None  # replay this tape instead of the synthetic market
    # Activity, per symbol and market second (the factory's defaults are busier than a demo needs).
    trade_rate: float = 0.5
    quote_rate: float = 1.0
    crypto_trade_rate: float = 0.5
    crypto_quote_rate: float = 1.0
    book_rate: float = 0.5
    news_per_hour: float = 2.0  # per symbol

    def __post_init__(self) -> None:
        if not (self.speed > 0 and self.tick > 0):
            raise ValueError("speed and tick must be > 0")
        if self.history_minutes < 0 or self.max_bars < 1:
            raise ValueError("history_minutes must be >= 0 and max_bars >= 1")
        bad = [s for s in self.symbols if not valid_symbol(s)]
        if bad:
            raise ValueError(f"not a symbol: {bad}")


class MarketStats(msgspec.Struct, kw_only=True):
    steps: int = 0
    events: int = 0  # published to subscribers
    subscriber_errors: int = 0
    tape_errors: int = 0  # tape frames (or messages in them) that did not decode


class _Path:
    """One symbol's synthetic events on the live clock (see the module)."""

    def __init__(self, symbol: str, settings: MarketSettings, origin_ns: int) -> None:
        self.symbol = symbol
        self._settings = settings
        self._origin = origin_ns
        self._price = _KNOWN_PRICES.get(symbol) or _hashed_price(symbol)
        self._segment = -1
        self._events: Iterator[MarketEvent] = iter(())
        self._offset = 0
        self._model_end = 0
        self._next: MarketEvent | None = None
        self._next_segment()

    def pull(self, until_ns: int) -> list[MarketEvent]:
        """The events delivered up to ``until_ns`` (live), in order."""
        out: list[MarketEvent] = []
        while True:
            event = self._next if self._next is not None else self._take()
            self._next = None
            if available_at(event) > until_ns:
                self._next = event
                return out
            out.append(event)

    def _take(self) -> MarketEvent:
        """The next event, moved onto the live clock (a new segment when the model day ends)."""
        while True:
            event = next(self._events)
            if self._model_end and available_at(event) >= self._model_end:
                self._next_segment()
                continue
            if type(event) is Trade or type(event) is CryptoTrade:
                self._price = event.price
            if self._offset:
                event.ts_event += self._offset
                if type(event) is News:
                    event.ts_updated += self._offset
            return event

    def _next_segment(self) -> None:
        settings = self._settings
        self._segment += 1
        seed = zlib.crc32(f"{settings.seed}:{self.symbol}:{self._segment}".encode())
        crypto = is_crypto(self.symbol)
        holding = ((self.symbol, self._price),)
        common: dict[str, Any] = {
            "seed": seed,
            "trade_rate": settings.trade_rate,
            "quote_rate": settings.quote_rate,
            "crypto_trade_rate": settings.crypto_trade_rate,
            "crypto_quote_rate": settings.crypto_quote_rate,
            "book_rate": settings.book_rate,
            "news_rate": settings.news_per_hour,
        }
        if settings.always_open:
            model_start = _MODEL_MONDAY
            common |= {"session_open_utc": "00:00", "session_close_utc": "24:00"}
            self._model_end = model_start + NS_PER_DAY
            self._offset = self._origin + self._segment * NS_PER_DAY - model_start
        else:
            model_start = self._origin  # one segment, on the live clock
        config = MarketConfig(
            equities=() if crypto else holding,
            crypto=holding if crypto else (),
            start_ns=model_start,
            **common,
        )
        self._events = SyntheticMarket(config).iter_events()


def _hashed_price(symbol: str) -> float:
    """A start price for a symbol the factory does not know: stable, from its name (equities
    between 10 and 1,000; crypto pairs between 0.1 and 10,000)."""
    unit = zlib.crc32(symbol.encode()) / 2**32
    if is_crypto(symbol):
        return round(10 ** (-1 + 5 * unit), 6)
    return round(10 ** (1 + 2 * unit), 2)


class _TapeSource:
    """A tape's Alpaca frames, decoded and shifted so its first frame lands on ``start_ns``."""

    def __init__(self, path: str, start_ns: int, stats: MarketStats) -> None:
        self._records: Iterator[Any] = iter(TapeReader(path))
        self._start = start_ns
        self._stats = stats
        self._decoders: dict[tuple[str, str], Any] = {}
        self._first: int | None = None
        self._pending: Any = None

    def pull(self, until_ns: int) -> list[Any]:
        out: list[Any] = []
        while True:
            record = self._pending if self._pending is not None else next(self._records, None)
            self._pending = None
            if record is None:
                return out
            if self._first is None:
                self._first = record.ts_ns
            offset = self._start - self._first
            if record.ts_ns + offset > until_ns:
                self._pending = record
                return out
            out += self._decode(record, offset)

    def _decode(self, record: Any, offset: int) -> list[Any]:
        stream = _TAPE_STREAMS.get(record.source)
        if stream is None:
            return []  # another source's frames (trade updates, Finnhub): not replayed here
        data = bytes(record.data)
        encoding: Encoding = "json" if data[:1] in (b"[", b" ", b"\n") else "msgpack"
        decoder = self._decoders.get((stream, encoding))
        if decoder is None:
            decoder = self._decoders[stream, encoding] = AlpacaDecoder(stream, encoding)
        decoded = decoder.decode(data, 0)
        for error in decoded.errors:
            self._stats.tape_errors += 1
            _log.error("tape_decode_error", source=record.source, error=error.reason)
        messages = [m for m in decoded.messages if hasattr(m, "ts_event")]
        for message in messages:
            message.ts_event += offset
            if type(message) is News:
                message.ts_updated += offset
        return messages


class Market:
    """The market the fake exchange serves (see the module). Call :meth:`run` to pace it, or
    :meth:`step` with an injected clock."""

    def __init__(self, settings: MarketSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or MarketSettings()
        self.stats = MarketStats()
        self._clock: Clock = clock or LiveClock()
        self.start_ns = self._clock.now_ns()
        self._wall_start = self._clock.monotonic_ns()
        self._subscribers: list[Subscriber] = []
        self._paths: dict[str, _Path] = {}
        self._tape: _TapeSource | None = None
        self._latest_trade: dict[str, Trade | CryptoTrade] = {}
        self._latest_quote: dict[str, Quote | CryptoQuote] = {}
        self._latest_bar: dict[str, Bar | CryptoBar] = {}
        self._bars: dict[str, deque[Bar | CryptoBar]] = {}
        self._daily: dict[str, DailyBar | CryptoDailyBar] = {}
        self._symbols: dict[str, None] = {}  # every symbol seen, in order
        if self.settings.tape is not None:
            self._tape = _TapeSource(self.settings.tape, self.start_ns, self.stats)
        for symbol in self.settings.symbols:
            self.ensure(symbol)

    # --- reading ----------------------------------------------------------------------------

    def now_ns(self) -> int:
        """The market clock: the start time plus the wall time since, ``speed`` times faster."""
        elapsed = self._clock.monotonic_ns() - self._wall_start
        return self.start_ns + round(elapsed * self.settings.speed)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the market has events for so far."""
        return tuple(self._symbols)

    def latest_trade(self, symbol: str) -> Trade | CryptoTrade | None:
        return self._latest_trade.get(symbol)

    def latest_quote(self, symbol: str) -> Quote | CryptoQuote | None:
        return self._latest_quote.get(symbol)

    def latest_bar(self, symbol: str) -> Bar | CryptoBar | None:
        return self._latest_bar.get(symbol)

    def bars(
        self, symbol: str, start_ns: int = 0, end_ns: int | None = None
    ) -> list[Bar | CryptoBar]:
        """The kept minute bars of ``symbol`` that start in [start_ns, end_ns], oldest first."""
        end = self.now_ns() if end_ns is None else end_ns
        return [b for b in self._bars.get(symbol, ()) if start_ns <= b.ts_event <= end]

    # --- driving ----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback`` with each batch of new events (it must not block: queue, return)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def ensure(self, symbol: str) -> None:
        """Start generating ``symbol`` if it is new (its history up to now is made at once and
        kept, not published). With a tape, only the tape's symbols have events."""
        if symbol in self._paths or symbol == "*" or self._tape is not None:
            return
        if not valid_symbol(symbol):
            raise ValueError(f"not a symbol: {symbol!r}")
        now = self.now_ns()
        origin = now - now % NS_PER_MINUTE - self.settings.history_minutes * NS_PER_MINUTE
        path = self._paths[symbol] = _Path(symbol, self.settings, origin)
        self._record(path.pull(now))

    def step(self) -> list[Any]:
        """Publish every event delivered since the last step (in delivery order); returns them."""
        now = self.now_ns()
        batch: list[Any] = []
        for path in self._paths.values():
            batch += path.pull(now)
        if self._tape is not None:
            batch += self._tape.pull(now)
        if len(self._paths) > 1:
            batch.sort(key=available_at)  # stable: each path's own order is kept
        batch = self._record(batch)
        self.stats.steps += 1
        if batch:
            self.stats.events += len(batch)
            for callback in list(self._subscribers):
                try:
                    callback(batch)
                except Exception:  # one broken subscriber must not stop the market
                    self.stats.subscriber_errors += 1
                    _log.exception("market_subscriber_failed", subscriber=repr(callback))
        return batch

    async def run(self) -> None:
        """Step every ``tick`` wall seconds, until cancelled."""
        while True:
            self.step()
            await self._clock.sleep(self.settings.tick)

    # --- bookkeeping ------------------------------------------------------------------------

    def _record(self, events: list[Any]) -> list[Any]:
        """Keep the latest values and the bar history; returns ``events`` with each minute bar
        followed by its symbol's day-to-date bar (Alpaca's ``dailyBars``)."""
        out: list[Any] = []
        for event in events:
            out.append(event)
            kind = type(event)
            symbol = getattr(event, "symbol", None)
            if symbol is None:
                continue
            if symbol not in self._symbols:
                self._symbols[symbol] = None
            if kind is Trade or kind is CryptoTrade:
                self._latest_trade[symbol] = event
            elif kind is Quote or kind is CryptoQuote:
                self._latest_quote[symbol] = event
            elif kind is Bar or kind is CryptoBar:
                self._latest_bar[symbol] = event
                history = self._bars.get(symbol)
                if history is None:
                    history = self._bars[symbol] = deque(maxlen=self.settings.max_bars)
                history.append(event)
                out.append(self._day_to_date(event))
        return out

    def _day_to_date(self, bar: Bar | CryptoBar) -> DailyBar | CryptoDailyBar:
        day = bar.ts_event - bar.ts_event % NS_PER_DAY
        current = self._daily.get(bar.symbol)
        daily: DailyBar | CryptoDailyBar
        if current is None or current.ts_event != day:
            fields = msgspec.structs.asdict(bar) | {"ts_event": day, "ts_recv": 0}
            daily = DailyBar(**fields) if type(bar) is Bar else CryptoDailyBar(**fields)
        else:
            volume = current.volume + bar.volume
            vwap = None
            if current.vwap is not None and bar.vwap is not None and volume > 0:
                vwap = (current.vwap * current.volume + bar.vwap * bar.volume) / volume
            daily = msgspec.structs.replace(
                current,
                high=max(current.high, bar.high),
                low=min(current.low, bar.low),
                close=bar.close,
                volume=volume,
                trade_count=(current.trade_count or 0) + (bar.trade_count or 0),
                vwap=vwap,
            )
        self._daily[bar.symbol] = daily
        return daily
