"""News momentum: trade a symbol in the direction of a strongly worded headline, for a while.

Configuration (``kind = "news_momentum"``)::

    name             the strategy's name (in every intent and client order id)
    symbols          the symbols it trades (news for other symbols is ignored)
    threshold = 2    act when a headline scores >= threshold or <= -threshold
    hold_bars = 5    exit after this many of the symbol's bars since the entry
    max_age = 300.0  ignore news received more than this many seconds after its event time
    remember = 4096  how many recent news ids it remembers (each id is acted on once)
    qty = 1          shares (or coins) per symbol: the size of the position it aims at
    allow_short = false
    time_in_force = "day"

**Scoring** (:func:`score`). Only the headline is scored. It is lower-cased and split into words
(letters and digits; an apostrophe inside a word is kept, so "doesn't" is one word; anything
else separates words). Scanning left to right, at each word the longest phrase of
:data:`NEGATIONS`, :data:`POSITIVE` or :data:`NEGATIVE` that starts there is taken:

* a positive phrase counts +1, a negative one -1;
* a negation ("not", "no", "never", "fails to", ...) flips the phrase that comes *right after
  it* (the next word; one word of reach): "fails to beat" is -1, "no recall" is +1, but "not
  expected to beat" is +1 (the negation lapses on "expected").

The score is the sum. Whole words only: "beats" does not match inside "upbeats".

**Trading**, on a :class:`~tickd.codecs.schema.News` item for one or more of the symbols:

1. An item whose ``(provider, id)`` was seen before is ignored (re-deliveries and later versions
   of an article alike); the last ``remember`` ids are kept.
2. An item received (``ts_recv``) more than ``max_age`` seconds after its ``ts_event`` is stale
   and ignored. ``ts_recv == 0`` (never stamped) counts as fresh.
3. With ``score >= threshold`` the target is ``+qty``; with ``score <= -threshold`` it is
   ``-qty`` with ``allow_short``, else 0 (exit a long). The item's symbols that the strategy
   trades are each sent ``target - (position + working)`` as a market order (none when that is 0),
   in the order of the strategy's ``symbols``.
4. After a non-zero target, its bars (``Bar`` or ``CryptoBar``) are counted from the next one
   received; at the ``hold_bars``-th the target becomes 0 and the position is closed. A new item
   in either direction restarts the count; an item that sets the target to 0 stops it.

Symbols are compared without "/" ("BTC/USD" trades on news tagged "BTCUSD", as Alpaca tags
crypto news). The strategy needs no indicators.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final, NamedTuple

from tickd.codecs.schema import Bar, CryptoBar, News
from tickd.strategies import targets
from tickd.strategies.base import Context, IndicatorView, OrderIntent, TimeInForce
from tickd.strategies.indicators import Spec

__all__ = ["NEGATIONS", "NEGATIVE", "POSITIVE", "NewsMomentum", "Score", "score"]

#: Words and phrases that make a headline better news for the stock (+1 each).
POSITIVE: Final[frozenset[str]] = frozenset(
    {
        "beat",
        "beats",
        "beat estimates",
        "beats estimates",
        "tops estimates",
        "top estimates",
        "upgrade",
        "upgrades",
        "upgraded",
        "record",
        "record high",
        "surge",
        "surges",
        "surged",
        "soar",
        "soars",
        "soared",
        "jump",
        "jumps",
        "jumped",
        "rally",
        "rallies",
        "rallied",
        "rise",
        "rises",
        "rising",
        "gain",
        "gains",
        "strong",
        "stronger",
        "outperform",
        "outperforms",
        "raises guidance",
        "raised guidance",
        "raises outlook",
        "buyback",
        "approval",
        "approved",
        "wins",
        "breakthrough",
        "profit rises",
        "dividend increase",
    }
)

#: Words and phrases that make a headline worse news for the stock (-1 each).
NEGATIVE: Final[frozenset[str]] = frozenset(
    {
        "miss",
        "misses",
        "missed",
        "downgrade",
        "downgrades",
        "downgraded",
        "lawsuit",
        "sued",
        "sues",
        "plunge",
        "plunges",
        "plunged",
        "recall",
        "recalls",
        "fall",
        "falls",
        "falling",
        "fell",
        "drop",
        "drops",
        "dropped",
        "tumble",
        "tumbles",
        "slump",
        "slumps",
        "sink",
        "sinks",
        "weak",
        "weaker",
        "warning",
        "warns",
        "cuts guidance",
        "cut guidance",
        "lowers guidance",
        "probe",
        "investigation",
        "fraud",
        "bankruptcy",
        "layoffs",
        "underperform",
        "halted",
        "delay",
        "delays",
        "loss",
        "losses",
        "fails",
    }
)

#: Words and phrases that flip the phrase right after them.
NEGATIONS: Final[frozenset[str]] = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "fails to",
        "failed to",
        "fail to",
        "didn't",
        "doesn't",
        "don't",
        "won't",
        "isn't",
    }
)

_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)*")


def _phrases(words: frozenset[str]) -> dict[tuple[str, ...], str]:
    return {tuple(p.split()): p for p in words}


_POSITIVE = _phrases(POSITIVE)
_NEGATIVE = _phrases(NEGATIVE)
_NEGATIONS = _phrases(NEGATIONS)
_LONGEST = max(len(p) for table in (_POSITIVE, _NEGATIVE, _NEGATIONS) for p in table)


class Score(NamedTuple):
    """A headline's score and the phrases that made it (a negated one prefixed with "not ")."""

    value: int
    terms: tuple[str, ...]


def _match(words: list[str], i: int, table: dict[tuple[str, ...], str]) -> int:
    """Length of the longest phrase of ``table`` starting at ``words[i]`` (0 if none)."""
    for n in range(min(_LONGEST, len(words) - i), 0, -1):
        if tuple(words[i : i + n]) in table:
            return n
    return 0


def score(headline: str) -> Score:
    """Score a headline with the lexicon and the negation rule (see the module's documentation)."""
    words = _WORD.findall(headline.lower().replace("’", "'"))
    value = 0
    terms: list[str] = []
    negated = False
    i = 0
    while i < len(words):
        n = _match(words, i, _NEGATIONS)
        if n:
            negated = True
            i += n
            continue
        sign = 0
        n = _match(words, i, _POSITIVE)
        m = _match(words, i, _NEGATIVE)
        if n or m:  # the longer phrase wins; "cuts guidance" over a shorter word
            sign, n = (1, n) if n >= m else (-1, m)
            phrase = " ".join(words[i : i + n])
            if negated:
                sign = -sign
                phrase = f"not {phrase}"
            value += sign
            terms.append(phrase)
        negated = False
        i += max(n, 1)
    return Score(value, tuple(terms))


def _plain(symbol: str) -> str:
    return symbol.replace("/", "")


class NewsMomentum:
    """Trades strongly scored headlines and exits after a number of bars; see the module."""

    def __init__(
        self,
        *,
        name: str,
        symbols: Sequence[str],
        threshold: int = 2,
        hold_bars: int = 5,
        max_age: float = 300.0,
        remember: int = 4096,
        qty: Decimal | int | float | str = Decimal(1),
        allow_short: bool = False,
        time_in_force: TimeInForce = "day",
    ) -> None:
        self.name = targets.strategy_name(name)
        self.symbols = targets.symbol_tuple(symbols)
        self.threshold = targets.integer(threshold, "threshold", minimum=1)
        self.hold_bars = targets.integer(hold_bars, "hold_bars", minimum=1)
        self.max_age = targets.number(max_age, "max_age", low=0.0, high=1e9)
        self.remember = targets.integer(remember, "remember", minimum=1)
        self.qty = targets.quantity(qty)
        self.allow_short = targets.flag(allow_short, "allow_short")
        self.time_in_force = targets.time_in_force(time_in_force)
        self.indicators: tuple[Spec, ...] = ()
        self.events: frozenset[type] = frozenset({News, Bar, CryptoBar})
        self._by_plain = {_plain(s): s for s in self.symbols}
        if len(self._by_plain) != len(self.symbols):
            raise ValueError(f"symbols must differ without '/': {list(self.symbols)}")
        self._max_age_ns = int(self.max_age * 1e9)
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Per held symbol: bars counted since the entry, and what the entry was (for the reason).
        self._holding: dict[str, tuple[int, str]] = {}

    def __repr__(self) -> str:
        return (
            f"NewsMomentum(name={self.name!r}, symbols={list(self.symbols)}, "
            f"threshold={self.threshold}, hold_bars={self.hold_bars}, max_age={self.max_age:g}, "
            f"qty={self.qty}, allow_short={self.allow_short})"
        )

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]:
        if isinstance(event, News):
            return self._on_news(event, context)
        if isinstance(event, Bar | CryptoBar):
            return self._on_bar(event, context)
        return ()

    def _first_time(self, key: tuple[str, str]) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True

    def _on_news(self, news: News, context: Context) -> Sequence[OrderIntent]:
        mentioned = {_plain(s) for s in news.symbols}
        symbols = [s for p, s in self._by_plain.items() if p in mentioned]
        if not symbols or not self._first_time((news.provider, news.id)):
            return ()
        if news.ts_recv and news.ts_recv - news.ts_event > self._max_age_ns:
            return ()
        value, terms = score(news.headline)
        if value >= self.threshold:
            target = self.qty
        elif value <= -self.threshold:
            target = -self.qty if self.allow_short else Decimal(0)
        else:
            return ()
        why = f"news score {value:+d} ({', '.join(terms)}): {news.headline!r}"
        intents: list[OrderIntent] = []
        for symbol in symbols:
            if target:
                self._holding[symbol] = (0, why)
            else:
                self._holding.pop(symbol, None)
            intents.extend(
                targets.toward(
                    target,
                    strategy=self.name,
                    symbol=symbol,
                    event=news,
                    context=context,
                    reason=why,
                    time_in_force=self.time_in_force,
                )
            )
        return intents

    def _on_bar(self, bar: Bar | CryptoBar, context: Context) -> Sequence[OrderIntent]:
        held = self._holding.get(bar.symbol)
        if held is None:
            return ()
        count, why = held[0] + 1, held[1]
        if count < self.hold_bars:
            self._holding[bar.symbol] = (count, why)
            return ()
        del self._holding[bar.symbol]
        return targets.toward(
            Decimal(0),
            strategy=self.name,
            symbol=bar.symbol,
            event=bar,
            context=context,
            reason=f"held {count} bars after {why}",
            time_in_force=self.time_in_force,
        )
