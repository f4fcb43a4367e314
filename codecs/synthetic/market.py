"""A seeded, reproducible synthetic market: equities, crypto and news as schema structs.

``SyntheticMarket(config).events(n)`` returns the first ``n`` events a live feed would deliver, in
delivery order (see :func:`available_at`): equity :class:`Trade`/:class:`Quote` during the regular
session, minute :class:`Bar` aggregated from the market's own trades, :class:`TradingStatus`
halts and resumptions (no equity trades or quotes while halted), :class:`CryptoTrade`,
:class:`CryptoQuote` and :class:`OrderbookUpdate` around the clock, and :class:`News` mentioning
the symbols. ``ts_recv`` is left at 0: whoever decodes the frames stamps it.

How it works: time advances one minute at a time. Per minute the random draws are vectorised
(Poisson counts per second and per stream, uniform offsets within the second, one normal shock
per event for the mid-price), so ~1e5 events take well under a second; building the structs is
most of the cost. All draws come from one ``np.random.default_rng(seed)`` in a fixed order, so the
same config gives the same events, byte for byte once encoded.

Model, deliberately simple but with the shapes real feeds have:

* mid-price: geometric Brownian motion per symbol, stepped at each of its events with the elapsed
  time (capped at :data:`MAX_STEP_SECONDS`, so a night or a weekend is one modest gap); equities
  use a trading-time year (252 x 6.5 h), crypto a calendar year;
* quotes: bid/ask on the tick grid around the mid, ``spread_bps`` wide (at least one tick);
  equity quote sizes in round lots, as Alpaca sends them, crypto sizes fractional;
* trades: at the bid or the ask (sometimes at the rounded mid), heavy-tailed sizes with odd lots,
  SIP-style conditions (``@``, ``I`` odd lot, ``F`` intermarket sweep), weighted real exchange
  codes and the listing tape;
* bursts: a symbol's event rates jump ``burst_intensity`` times for ``burst_seconds``;
* halts: an equity pauses for ``halt_seconds`` (a LULD volatility pause), only inside the session;
* order book: a snapshot (``reset=True``) at a crypto symbol's first book event, then deltas that
  keep the book uncrossed around the moving mid.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterator
from typing import Final, NamedTuple, TypeAlias

import msgspec
import numpy as np
import numpy.typing as npt

from ..schema import (
    Bar,
    BookLevel,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    News,
    OrderbookUpdate,
    Quote,
    Trade,
    TradingStatus,
)

__all__ = [
    "EQUITY_EXCHANGES",
    "MAX_STEP_SECONDS",
    "MarketConfig",
    "MarketEvent",
    "Ohlcv",
    "SyntheticMarket",
    "available_at",
    "in_session",
    "price_path",
]

NS_PER_SECOND: Final = 1_000_000_000
NS_PER_MINUTE: Final = 60 * NS_PER_SECOND
NS_PER_DAY: Final = 86_400 * NS_PER_SECOND
MAX_STEP_SECONDS: Final = 1_800.0
_TRADING_YEAR_SECONDS: Final = 252 * 6.5 * 3600
_CALENDAR_YEAR_SECONDS: Final = 365.25 * 86_400

MarketEvent: TypeAlias = (
    Trade
    | Quote
    | Bar
    | TradingStatus
    | CryptoTrade
    | CryptoQuote
    | CryptoBar
    | OrderbookUpdate
    | News
)

# Alpaca/SIP exchange codes with rough shares of consolidated volume (D = FINRA TRF, off-exchange).
EQUITY_EXCHANGES: Final[dict[str, float]] = {
    "D": 0.36,
    "Q": 0.14,
    "N": 0.08,
    "P": 0.08,
    "K": 0.07,
    "Z": 0.06,
    "V": 0.03,
    "U": 0.03,
    "Y": 0.03,
    "J": 0.02,
    "H": 0.02,
    "X": 0.02,
    "B": 0.02,
    "A": 0.01,
    "M": 0.01,
    "L": 0.01,
    "I": 0.01,
}
_QUOTE_EXCHANGES: Final = ("Q", "N", "P", "K", "Z", "V", "U", "Y", "J", "H", "X", "B")
_TAPES: Final = {"SPY": "B", "QQQ": "C", "IWM": "B", "DIA": "B", "GLD": "B"}
_NYSE_LISTED: Final = frozenset({"JPM", "XOM", "IBM", "KO", "BA", "GE", "V", "WMT", "DIS", "F"})
_COMPANIES: Final = {
    "AAPL": "Apple",
    "MSFT": "Microsoft",
    "NVDA": "Nvidia",
    "AMZN": "Amazon",
    "GOOGL": "Alphabet",
    "META": "Meta Platforms",
    "TSLA": "Tesla",
    "JPM": "JPMorgan Chase",
    "XOM": "Exxon Mobil",
    "SPY": "SPDR S&P 500 ETF",
    "BTC/USD": "Bitcoin",
    "ETH/USD": "Ether",
}
_HEADLINES: Final = (
    "{name} shares {move} after {event}",
    "{name} {move} as analysts weigh {event}",
    "Why {name} stock is {moving} today",
    "{name} ({symbol}) {move} following {event}",
)
_EVENTS: Final = (
    "earnings beat",
    "revenue miss",
    "guidance update",
    "analyst upgrade",
    "analyst downgrade",
    "product launch",
    "regulatory filing",
    "CEO interview",
    "buyback announcement",
    "supply-chain report",
)
_SOURCES: Final = ("benzinga", "reuters", "bloomberg", "marketwatch")
_AUTHORS: Final = ("Staff Writer", "Jane Doe", "Rahul Mehta", "Chris Katje", "Ana Lopez")


class MarketConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything that shapes a :class:`SyntheticMarket`; same config, same events.

    Rates are events per second per symbol (before bursts); probabilities are per symbol per
    minute. Session times are UTC ``HH:MM`` on weekdays (the default is the US regular session in
    winter); crypto ignores them. ``news_rate`` is items per hour for the whole market.
    """

    equities: tuple[tuple[str, float], ...] = (
        ("AAPL", 190.0),
        ("MSFT", 410.0),
        ("NVDA", 880.0),
        ("SPY", 510.0),
        ("JPM", 185.0),
    )
    crypto: tuple[tuple[str, float], ...] = (("BTC/USD", 65_000.0), ("ETH/USD", 3_400.0))
    seed: int = 0
    start_ns: int = 1_709_559_000 * NS_PER_SECOND  # Monday 2024-03-04 13:30 UTC, the open
    volatility: float = 0.3
    spread_bps: float = 2.0
    session_open_utc: str = "13:30"
    session_close_utc: str = "20:00"
    trade_rate: float = 2.0
    quote_rate: float = 6.0
    crypto_trade_rate: float = 1.0
    crypto_quote_rate: float = 2.0
    book_rate: float = 1.0
    book_depth: int = 10
    burst_probability: float = 0.02
    burst_intensity: float = 10.0
    burst_seconds: int = 5
    halt_probability: float = 0.001
    halt_seconds: int = 300
    news_rate: float = 6.0
    bars: bool = True

    def __post_init__(self) -> None:
        open_s, close_s = _hhmm(self.session_open_utc), _hhmm(self.session_close_utc)
        if open_s >= close_s:
            raise ValueError("session_open_utc must be before session_close_utc")
        names = [s for s, _ in self.equities] + [s for s, _ in self.crypto]
        if len(set(names)) != len(names):
            raise ValueError(f"symbols must be unique: {names}")
        if any(
            not (price > 0 and math.isfinite(price)) for _, price in (*self.equities, *self.crypto)
        ):
            raise ValueError("start prices must be positive and finite")
        if not names and self.news_rate <= 0:
            raise ValueError("nothing to generate: no symbols and no news")
        rates = (
            self.trade_rate,
            self.quote_rate,
            self.crypto_trade_rate,
            self.crypto_quote_rate,
            self.book_rate,
            self.news_rate,
            self.volatility,
            self.spread_bps,
        )
        if any(not (r >= 0 and math.isfinite(r)) for r in rates):
            raise ValueError("rates, volatility and spread must be finite and >= 0")
        for p in (self.burst_probability, self.halt_probability):
            if not 0 <= p <= 1:
                raise ValueError("probabilities must be within [0, 1]")
        if self.burst_intensity < 1 or self.burst_seconds < 1 or self.halt_seconds < 1:
            raise ValueError("burst_intensity, burst_seconds and halt_seconds must be >= 1")
        if self.book_depth < 1:
            raise ValueError("book_depth must be >= 1")
        if self.start_ns < 0:
            raise ValueError("start_ns must be >= 0")


def _hhmm(text: str) -> int:
    """``"13:30"`` -> seconds after midnight."""
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 24 or int(minutes) > 59:
        raise ValueError(f"not an HH:MM time: {text!r}")
    return min(int(hours) * 3600 + int(minutes) * 60, 86_400)


def in_session(ts_ns: int, config: MarketConfig) -> bool:
    """Whether equities trade at ``ts_ns``: a weekday (UTC) within the configured session."""
    day, into = divmod(ts_ns, NS_PER_DAY)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday == 0
    seconds = into // NS_PER_SECOND
    return bool(
        weekday < 5 and _hhmm(config.session_open_utc) <= seconds < _hhmm(config.session_close_utc)
    )


def available_at(event: MarketEvent) -> int:
    """When a live feed delivers ``event``: its ``ts_event``, except a minute bar, which is
    stamped with the start of its minute but sent when the minute is over."""
    if type(event) is Bar or type(event) is CryptoBar:
        return event.ts_event + NS_PER_MINUTE
    return event.ts_event


def _tape(symbol: str) -> str:
    if symbol in _TAPES:
        return _TAPES[symbol]
    return "A" if symbol in _NYSE_LISTED else "C"


def _decimals(price: float) -> int:
    """Price decimals for a crypto pair: about seven significant digits."""
    return int(min(9, max(0, 6 - math.floor(math.log10(price)))))


class _Book:
    """One crypto symbol's book in integer ticks (price -> size)."""

    __slots__ = ("asks", "bids", "scale")

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}


class _State:
    """Everything that carries over from one simulated minute to the next."""

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.eq_symbols = [s for s, _ in config.equities]
        self.cr_symbols = [s for s, _ in config.crypto]
        self.symbols = self.eq_symbols + self.cr_symbols
        self.n_eq = len(self.eq_symbols)
        self.n_cr = len(self.cr_symbols)
        prices = [p for _, p in config.equities] + [p for _, p in config.crypto]
        self.log_mid = np.log(np.asarray(prices, dtype=np.float64))
        self.last_t = np.full(len(prices), config.start_ns, dtype=np.int64)
        year = np.array([_TRADING_YEAR_SECONDS] * self.n_eq + [_CALENDAR_YEAR_SECONDS] * self.n_cr)
        self.sigma = config.volatility / np.sqrt(year)  # per sqrt(second)
        self.decimals = [2] * self.n_eq + [_decimals(p) for _, p in config.crypto]
        self.scale = np.array([10.0**d for d in self.decimals])
        self.tapes = [_tape(s) for s in self.eq_symbols]
        self.halt_start = np.zeros(self.n_eq, dtype=np.int64)
        self.halt_until = np.zeros(self.n_eq, dtype=np.int64)
        self.burst_start = np.zeros(len(prices), dtype=np.int64)
        self.burst_until = np.zeros(len(prices), dtype=np.int64)
        self.trade_ids = [int(i) for i in self.rng.integers(1, 10**6, len(prices))]
        self.news_id = int(self.rng.integers(30_000_000, 40_000_000))
        self.books = [_Book(float(self.scale[self.n_eq + k])) for k in range(self.n_cr)]
        self.pending: list[tuple[int, int, MarketEvent]] = []  # (time, seq, event), sorted
        self.seq = 0
        self.open_s = _hhmm(config.session_open_utc)
        self.close_s = _hhmm(config.session_close_utc)
        weights = np.array(list(EQUITY_EXCHANGES.values()))
        self.exchange_p = weights / weights.sum()
        self.exchange_codes = list(EQUITY_EXCHANGES)

    def schedule(self, ts: int, event: MarketEvent) -> None:
        self.seq += 1
        insort(self.pending, (ts, self.seq, event), key=lambda item: (item[0], item[1]))

    def session_bounds(self, minute: int) -> tuple[int, int] | None:
        """The session (open, close) in ns if ``minute`` lies inside it, else None."""
        day, into = divmod(minute, NS_PER_DAY)
        if (day + 3) % 7 >= 5:
            return None
        seconds = into // NS_PER_SECOND
        if not self.open_s <= seconds < self.close_s:
            return None
        start = day * NS_PER_DAY
        return start + self.open_s * NS_PER_SECOND, start + self.close_s * NS_PER_SECOND

    def next_open(self, minute: int) -> int:
        """The next session open at or after ``minute``."""
        day = minute // NS_PER_DAY
        for offset in range(8):
            d = day + offset
            if (d + 3) % 7 >= 5:
                continue
            candidate = d * NS_PER_DAY + self.open_s * NS_PER_SECOND
            if candidate >= minute:
                return candidate
        raise AssertionError("unreachable: a weekday comes within 8 days")


class SyntheticMarket:
    """The market a :class:`MarketConfig` describes. Iterating starts afresh every time."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config if config is not None else MarketConfig()

    def iter_events(self) -> Iterator[MarketEvent]:
        """All events, forever, in delivery order (non-decreasing :func:`available_at`)."""
        state = _State(self.config)
        minute = self.config.start_ns - self.config.start_ns % NS_PER_MINUTE
        while True:
            if (
                state.n_cr == 0
                and state.n_eq > 0
                and not state.pending
                and state.session_bounds(minute) is None
            ):
                minute = state.next_open(minute)
                continue
            yield from _simulate_minute(state, minute)
            minute += NS_PER_MINUTE

    def events(self, n: int) -> list[MarketEvent]:
        """The first ``n`` events."""
        out: list[MarketEvent] = []
        if n <= 0:
            return out
        for event in self.iter_events():
            out.append(event)
            if len(out) >= n:
                break
        return out

    def events_until(self, end_ns: int) -> list[MarketEvent]:
        """Every event delivered before ``end_ns``."""
        out: list[MarketEvent] = []
        for event in self.iter_events():
            if available_at(event) >= end_ns:
                break
            out.append(event)
        return out


# Stream kinds, in column order of the per-minute rate matrix.
_EQ_TRADE, _EQ_QUOTE, _CR_TRADE, _CR_QUOTE, _BOOK = range(5)


def _simulate_minute(state: _State, minute: int) -> list[MarketEvent]:
    config, rng = state.config, state.rng
    n_eq, n_cr = state.n_eq, state.n_cr
    n_sym = n_eq + n_cr
    seconds = minute + np.arange(60, dtype=np.int64) * NS_PER_SECOND
    session = state.session_bounds(minute) if n_eq else None

    # Halts (equities, inside the session, resumed before the close).
    halt_draw = rng.random(n_eq)
    halt_second = rng.integers(0, 60, n_eq)
    if session is not None:
        for i in np.flatnonzero(halt_draw < config.halt_probability).tolist():
            start = minute + int(halt_second[i]) * NS_PER_SECOND
            until = start + config.halt_seconds * NS_PER_SECOND
            if start < config.start_ns or state.halt_until[i] > start or until > session[1]:
                continue
            state.halt_start[i], state.halt_until[i] = start, until
            state.schedule(start, _status(state, i, start, halted=True))
            state.schedule(until, _status(state, i, until, halted=False))

    # Bursts (every symbol).
    burst_draw = rng.random(n_sym)
    burst_second = rng.integers(0, 60, n_sym)
    for k in np.flatnonzero(burst_draw < config.burst_probability).tolist():
        start = minute + int(burst_second[k]) * NS_PER_SECOND
        if state.burst_until[k] <= start:
            state.burst_start[k] = start
            state.burst_until[k] = start + config.burst_seconds * NS_PER_SECOND
    col = seconds[:, None]
    boost = np.where(
        (col >= state.burst_start[None, :]) & (col < state.burst_until[None, :]),
        config.burst_intensity,
        1.0,
    )

    # Poisson counts per second and per stream.
    blocks = []
    if n_eq:
        active = np.zeros((60, n_eq), dtype=bool)
        if session is not None:
            halted = (col >= state.halt_start[None, :]) & (col < state.halt_until[None, :])
            active = ~halted
        eq = boost[:, :n_eq] * active
        blocks += [eq * config.trade_rate, eq * config.quote_rate]
    if n_cr:
        cr = boost[:, n_eq:]
        blocks += [cr * config.crypto_trade_rate, cr * config.crypto_quote_rate]
        blocks += [cr * config.book_rate]
    kinds = np.repeat(
        np.array([_EQ_TRADE, _EQ_QUOTE] * bool(n_eq) + [_CR_TRADE, _CR_QUOTE, _BOOK] * bool(n_cr)),
        [n_eq] * 2 * bool(n_eq) + [n_cr] * 3 * bool(n_cr),
    )
    owners = np.concatenate(
        [np.tile(np.arange(n_eq), 2 * bool(n_eq)), np.tile(np.arange(n_eq, n_sym), 3 * bool(n_cr))]
    ).astype(np.int64)
    events: list[MarketEvent] = []
    times = np.empty(0, dtype=np.int64)
    if blocks:
        rates = np.concatenate(blocks, axis=1)
        n_streams = rates.shape[1]
        counts = rng.poisson(rates).ravel()
        stream = np.repeat(np.tile(np.arange(n_streams), 60), counts)
        second = np.repeat(np.repeat(np.arange(60, dtype=np.int64), n_streams), counts)
        times = minute + second * NS_PER_SECOND + rng.integers(0, NS_PER_SECOND, second.size)
        keep = times >= config.start_ns
        order = np.lexsort((stream[keep], times[keep]))
        times = times[keep][order]
        stream = stream[keep][order]
        events, bars = _build_ticks(state, times, kinds[stream], owners[stream], minute)
    else:
        bars = []

    _add_news(state, minute)
    # Merge scheduled events (statuses, news) that fall within this minute: before ticks at the
    # same nanosecond, so a resumption precedes the first trade after it.
    end = minute + NS_PER_MINUTE
    due = 0
    while due < len(state.pending) and state.pending[due][0] < end:
        due += 1
    if due:
        scheduled = state.pending[:due]
        del state.pending[:due]
        at = np.searchsorted(times, np.array([s[0] for s in scheduled], dtype=np.int64), "left")
        merged: list[MarketEvent] = []
        last = 0
        for position, (_, _, event) in zip(at.tolist(), scheduled, strict=True):
            merged.extend(events[last:position])
            merged.append(event)
            last = position
        merged.extend(events[last:])
        events = merged
    events.extend(bars)
    return events


def _status(state: _State, i: int, ts: int, *, halted: bool) -> TradingStatus:
    tape = state.tapes[i]
    if tape == "C":
        code, text = ("H", "Trading Halt") if halted else ("T", "Trading Resumption")
        reason, reason_text = "LUDP", "Volatility Trading Pause"
    else:
        code, text = ("2", "Trading Halt") if halted else ("3", "Resume")
        reason, reason_text = "M", "Volatility Trading Pause"
    return TradingStatus(
        symbol=state.eq_symbols[i],
        ts_event=ts,
        status_code=code,
        status_message=text,
        reason_code=reason,
        reason_message=reason_text,
        tape=tape,
    )


def _add_news(state: _State, minute: int) -> None:
    config, rng = state.config, state.rng
    count = int(rng.poisson(config.news_rate / 60.0))
    if not count:
        return
    offsets = np.sort(rng.integers(0, 60, count)).tolist()
    picks = rng.random((count, 6)).tolist()
    for offset, (u_sym, u_two, u_other, u_head, u_event, u_src) in zip(offsets, picks, strict=True):
        state.news_id += 1
        ts = minute + offset * NS_PER_SECOND
        if ts < config.start_ns:
            continue
        symbols: list[str] = []
        if state.symbols:
            first = state.symbols[int(u_sym * len(state.symbols))]
            symbols.append(first)
            if u_two < 0.3 and len(state.symbols) > 1:
                other = state.symbols[int(u_other * len(state.symbols))]
                if other != first:
                    symbols.append(other)
        lead = symbols[0] if symbols else "Market"
        name = _COMPANIES.get(lead, lead)
        up = u_event < 0.5
        event = _EVENTS[int(u_event * len(_EVENTS))]
        headline = _HEADLINES[int(u_head * len(_HEADLINES))].format(
            name=name,
            symbol=lead,
            move="rise" if up else "fall",
            moving="rising" if up else "falling",
            event=event,
        )
        source = _SOURCES[int(u_src * len(_SOURCES))]
        slug = "-".join(headline.lower().replace("(", "").replace(")", "").split())
        state.schedule(
            ts,
            News(
                provider="alpaca",
                id=str(state.news_id),
                ts_event=ts,
                ts_updated=ts,
                headline=headline,
                summary=f"{name} is in focus after the {event}.",
                author=_AUTHORS[int(u_src * 7) % len(_AUTHORS)],
                url=f"https://www.{source}.com/news/{state.news_id}/{slug}",
                symbols=tuple(s.replace("/", "") for s in symbols),
                source=source,
            ),
        )


def _build_ticks(
    state: _State,
    times: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
    owner: npt.NDArray[np.int64],
    minute: int,
) -> tuple[list[MarketEvent], list[MarketEvent]]:
    """Structs for the minute's ticks (already in time order) and its bars."""
    rng = state.rng
    n = times.size
    # Mid-price: GBM per symbol, stepped at each of its events.
    z = rng.standard_normal(n)
    mid = np.empty(n)
    for k in np.unique(owner).tolist():
        idx = np.flatnonzero(owner == k)
        t = times[idx]
        dt = np.diff(t, prepend=state.last_t[k]).astype(np.float64) / NS_PER_SECOND
        dt = np.minimum(dt, MAX_STEP_SECONDS)
        sigma = state.sigma[k]
        steps = -0.5 * sigma * sigma * dt + sigma * np.sqrt(dt) * z[idx]
        path = state.log_mid[k] + np.cumsum(steps)
        mid[idx] = np.exp(path)
        state.log_mid[k] = path[-1]
        state.last_t[k] = t[-1]

    # Bid/ask in integer ticks around the mid; trade prices at the touch or the rounded mid.
    scale = state.scale[owner]
    half = mid * (state.config.spread_bps / 20_000.0)
    bid_t = np.floor((mid - half) * scale).astype(np.int64)
    ask_t = np.maximum(np.ceil((mid + half) * scale).astype(np.int64), bid_t + 1)
    u_side = rng.random(n)
    buy = u_side >= 0.5
    trade_t = np.where(buy, ask_t, bid_t)
    inside = u_side < 0.1
    trade_t = np.where(inside, np.clip(np.rint(mid * scale), bid_t, ask_t), trade_t).astype(
        np.int64
    )
    bid = bid_t / scale
    ask = ask_t / scale
    price = trade_t / scale

    # Equity sizes and conditions.
    lots = rng.geometric(0.35, n)
    odd = rng.integers(1, 100, n)
    u_size = rng.random(n)
    eq_size = np.where(u_size < 0.35, odd, lots * 100 + np.where(u_size > 0.9, odd, 0))
    iso = rng.random(n) < 0.1
    exch = rng.choice(len(state.exchange_codes), n, p=state.exchange_p)
    q_bid_lots = rng.geometric(0.3, n)
    q_ask_lots = rng.geometric(0.3, n)
    q_bx = rng.integers(0, len(_QUOTE_EXCHANGES), n)
    q_ax = rng.integers(0, len(_QUOTE_EXCHANGES), n)
    # Crypto sizes: log-normal notional in USD, 8 decimals, at least one unit of the 8th.
    notional = np.exp(rng.normal(np.log(2_000.0), 1.5, (3, n)))
    cr_sizes = np.maximum(np.round(notional / mid, 8), 1e-8)
    u_book = rng.random((4, n))

    events: list[MarketEvent] = [None] * n  # type: ignore[list-item]
    t_list = times.tolist()
    owner_list = owner.tolist()
    kind_list = kind.tolist()
    bid_l, ask_l, price_l = bid.tolist(), ask.tolist(), price.tolist()
    eq_size_l, iso_l, exch_l = eq_size.tolist(), iso.tolist(), exch.tolist()
    buy_l = buy.tolist()
    symbols, codes, tapes = state.symbols, state.exchange_codes, state.tapes
    trade_ids = state.trade_ids
    qbl, qal, qbx, qax = q_bid_lots.tolist(), q_ask_lots.tolist(), q_bx.tolist(), q_ax.tolist()
    cr_trade_size, cr_bid_size, cr_ask_size = cr_sizes.tolist()
    conditions = {
        (False, False): ("@",),
        (False, True): ("@", "I"),
        (True, False): ("@", "F"),
        (True, True): ("@", "F", "I"),
    }
    for i in range(n):
        k = owner_list[i]
        what = kind_list[i]
        if what == _EQ_TRADE:
            size = eq_size_l[i]
            trade_ids[k] += 1
            events[i] = Trade(
                symbol=symbols[k],
                ts_event=t_list[i],
                price=price_l[i],
                size=size,
                trade_id=trade_ids[k],
                exchange=codes[exch_l[i]],
                conditions=conditions[iso_l[i], size < 100],
                tape=tapes[k],
            )
        elif what == _EQ_QUOTE:
            events[i] = Quote(
                symbol=symbols[k],
                ts_event=t_list[i],
                bid_price=bid_l[i],
                bid_size=qbl[i],
                ask_price=ask_l[i],
                ask_size=qal[i],
                bid_exchange=_QUOTE_EXCHANGES[qbx[i]],
                ask_exchange=_QUOTE_EXCHANGES[qax[i]],
                conditions=("R",),
                tape=tapes[k],
            )
        elif what == _CR_TRADE:
            trade_ids[k] += 1
            events[i] = CryptoTrade(
                symbol=symbols[k],
                ts_event=t_list[i],
                price=price_l[i],
                size=cr_trade_size[i],
                trade_id=trade_ids[k],
                taker_side="B" if buy_l[i] else "S",
            )
        elif what == _CR_QUOTE:
            events[i] = CryptoQuote(
                symbol=symbols[k],
                ts_event=t_list[i],
                bid_price=bid_l[i],
                bid_size=cr_bid_size[i],
                ask_price=ask_l[i],
                ask_size=cr_ask_size[i],
            )
        else:
            events[i] = _book_update(
                state, k, t_list[i], int(bid_t[i]), int(ask_t[i]), u_book[:, i].tolist()
            )

    bars: list[MarketEvent] = []
    if state.config.bars:
        is_trade = (kind == _EQ_TRADE) | (kind == _CR_TRADE)
        sizes = np.where(kind == _EQ_TRADE, eq_size, cr_sizes[0])
        for k in range(state.n_eq + state.n_cr):
            idx = np.flatnonzero(is_trade & (owner == k))
            if idx.size:
                bars.append(_bar(state, k, minute, price[idx], sizes[idx]))
    return events, bars


def _bar(
    state: _State,
    k: int,
    minute: int,
    prices: npt.NDArray[np.float64],
    sizes: npt.NDArray[np.float64] | npt.NDArray[np.int64],
) -> Bar | CryptoBar:
    volume = sizes.sum()
    vwap = float(np.dot(prices, sizes) / volume)
    fields = {
        "symbol": state.symbols[k],
        "ts_event": minute,
        "open": float(prices[0]),
        "high": float(prices.max()),
        "low": float(prices.min()),
        "close": float(prices[-1]),
        "trade_count": int(prices.size),
        "vwap": vwap,
    }
    if k < state.n_eq:
        return Bar(volume=int(volume), **fields)  # type: ignore[arg-type]
    return CryptoBar(volume=float(volume), **fields)  # type: ignore[arg-type]


def _book_update(
    state: _State, k: int, ts: int, bid_t: int, ask_t: int, u: list[float]
) -> OrderbookUpdate:
    """A snapshot on the symbol's first book event, then deltas that follow the touch."""
    book = state.books[k - state.n_eq]
    depth = state.config.book_depth
    step = max(1, ask_t - bid_t)
    mid = (bid_t + ask_t) / 2 / book.scale
    lot = 2_000.0 / mid  # a typical level: a couple of thousand dollars

    def size(x: float) -> float:
        return max(round(lot * (0.2 + 3.0 * x), 8), 1e-8)

    if not book.bids and not book.asks:
        for level in range(depth):
            scatter = level * 0.618_033_988_7  # golden-ratio steps: spread out, no pattern
            book.bids[bid_t - level * step] = size((u[0] + scatter) % 1.0)
            book.asks[ask_t + level * step] = size((u[1] + scatter) % 1.0)
        return OrderbookUpdate(
            symbol=state.symbols[k],
            ts_event=ts,
            bids=_levels(book.bids, book.scale, reverse=True),
            asks=_levels(book.asks, book.scale, reverse=False),
            reset=True,
        )
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    # Remove levels the new touch crosses, and levels that drifted too far away.
    for tick in [t for t in book.bids if t > bid_t or t < bid_t - 2 * depth * step]:
        del book.bids[tick]
        bids[tick] = 0.0
    for tick in [t for t in book.asks if t < ask_t or t > ask_t + 2 * depth * step]:
        del book.asks[tick]
        asks[tick] = 0.0
    # The touch itself, plus one level changed somewhere in the top ``depth``.
    book.bids[bid_t] = bids[bid_t] = size(u[0])
    book.asks[ask_t] = asks[ask_t] = size(u[1])
    level = int(u[2] * depth) * step
    if u[3] < 0.5:
        tick = bid_t - level
        book.bids[tick] = bids[tick] = size(u[3] * 2)
    else:
        tick = ask_t + level
        book.asks[tick] = asks[tick] = size(u[3] * 2 - 1)
    return OrderbookUpdate(
        symbol=state.symbols[k],
        ts_event=ts,
        bids=_levels(bids, book.scale, reverse=True),
        asks=_levels(asks, book.scale, reverse=False),
    )


def _levels(side: dict[int, float], scale: float, *, reverse: bool) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(tick / scale, side[tick]) for tick in sorted(side, reverse=reverse))


# --- OHLCV arrays for the indicator kernels ---------------------------------------------------


class Ohlcv(NamedTuple):
    """Bar arrays (float64, C-contiguous, same length); unpacks as ``o, h, l, c, v``."""

    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]


def price_path(
    n: int,
    seed: int = 0,
    *,
    start_price: float = 100.0,
    volatility: float = 0.3,
    bar_seconds: float = 60.0,
    drift: float = 0.0,
    mean_volume: float = 50_000.0,
) -> Ohlcv:
    """``n`` realistic OHLCV bars: GBM closes with volatility regimes (calm and stormy stretches
    of random length), small opening gaps, wicks beyond the body, and whole-share volume that rises
    with the size of the move. ``volatility``/``drift`` are annualised over a trading year.

    Guarantees: ``high >= max(open, close)``, ``low <= min(open, close)``, ``low > 0``,
    ``volume >= 1``; same arguments, same arrays.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    dt = bar_seconds / _TRADING_YEAR_SECONDS
    # Volatility regimes: piecewise-constant multipliers with geometric lengths (mean 200 bars).
    lengths = rng.geometric(1 / 200, max(1, n // 20 + 1))
    while lengths.sum() < n:
        lengths = np.concatenate([lengths, rng.geometric(1 / 200, lengths.size)])
    regime = np.exp(rng.normal(0.0, 0.5, lengths.size))
    sigma = volatility * np.sqrt(dt) * np.repeat(regime, lengths)[:n]
    z = rng.standard_normal((5, n))
    returns = (drift * dt - 0.5 * sigma * sigma) + sigma * z[0]
    close = start_price * np.exp(np.cumsum(returns))
    previous = np.concatenate([[start_price], close[:-1]])
    open_ = previous * np.exp(0.1 * sigma * z[1])
    body_high = np.maximum(open_, close)
    body_low = np.minimum(open_, close)
    high = body_high * np.exp(np.abs(z[2]) * sigma * 0.5)
    low = body_low * np.exp(-np.abs(z[3]) * sigma * 0.5)
    surprise = np.abs(returns) / np.maximum(sigma, 1e-12)
    volume = np.maximum(np.rint(mean_volume * np.exp(0.4 * z[4]) * (0.5 + 0.5 * surprise)), 1.0)
    return Ohlcv(
        np.ascontiguousarray(open_),
        np.ascontiguousarray(high),
        np.ascontiguousarray(low),
        np.ascontiguousarray(close),
        np.ascontiguousarray(volume),
    )
