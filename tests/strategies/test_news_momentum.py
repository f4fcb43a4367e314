"""NewsMomentum: the headline score, each news id once, stale news ignored, and the exit after
``hold_bars`` of the symbol's bars; scripted, and on the synthetic market's news and bars."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.strategies.host import Book, Host
from tickd.codecs.schema import Bar, CryptoBar, News, Trade
from tickd.codecs.synthetic.market import MarketConfig, SyntheticMarket
from tickd.strategies.base import Strategy, event_id
from tickd.strategies.news_momentum import NEGATIONS, NEGATIVE, POSITIVE, NewsMomentum, score

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("headline", "value", "terms"),
    [
        ("Apple beats estimates, posts record revenue", 2, ("beats estimates", "record")),
        ("APPLE BEATS; Record Quarter", 2, ("beats", "record")),
        ("Apple misses estimates amid recall", -2, ("misses", "recall")),
        ("Analyst upgrade: Nvidia shares surge", 2, ("upgrade", "surge")),
        ("Tesla faces lawsuit as shares plunge", -2, ("lawsuit", "plunge")),
        ("Apple fails to beat estimates", -1, ("not beat estimates",)),
        ("Apple failed to beat; shares fall", -2, ("not beat", "fall")),
        ("Bank fails", -1, ("fails",)),
        ("No recall for Ford, regulator says", 1, ("not recall",)),
        ("Not a downgrade: analysts upgrade Ford", 0, ("downgrade", "upgrade")),
        ("Not downgrade but upgrade", 2, ("not downgrade", "upgrade")),
        ("Apple not expected to beat", 1, ("beat",)),  # one word of reach
        ("Apple doesn't miss", 1, ("not miss",)),
        ("Apple doesn’t miss", 1, ("not miss",)),  # typographic apostrophe
        ("Acme cuts guidance, shares drop", -2, ("cuts guidance", "drop")),
        ("Acme raises guidance", 1, ("raises guidance",)),
        ("Upbeat mood; beatles tribute", 0, ()),  # whole words only
        ("Why Apple stock is rising today", 1, ("rising",)),
        ("", 0, ()),
        ("Not", 0, ()),
    ],
)
def test_score(headline: str, value: int, terms: tuple[str, ...]) -> None:
    assert score(headline) == (value, terms)


def test_lexicon_is_lower_case_and_disjoint() -> None:
    for words in (POSITIVE, NEGATIVE, NEGATIONS):
        assert all(w == w.lower().strip() and w for w in words)
    assert not POSITIVE & NEGATIVE
    assert not (POSITIVE | NEGATIVE) & NEGATIONS


def news(
    headline: str,
    *symbols: str,
    id: str = "1",
    t: int = 100,
    delay: float = 1.0,
    provider: Any = "alpaca",
) -> News:
    return News(
        provider=provider,
        id=id,
        ts_event=t * SECOND,
        ts_recv=t * SECOND + int(delay * SECOND),
        ts_updated=t * SECOND,
        headline=headline,
        symbols=symbols,
    )


def bar(symbol: str, minute: int) -> Bar:
    return Bar(
        symbol=symbol,
        ts_event=minute * 60 * SECOND,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1,
    )


GOOD = "Apple beats estimates, posts record revenue"
BAD = "Apple misses estimates amid recall"


def feed(strategy: NewsMomentum, events: list[Any], book: Book | None = None) -> list[Any]:
    book = book if book is not None else Book()
    out = []
    for k, event in enumerate(events):
        for intent in strategy.on_event(event, None, book):
            book.send(intent)
            out.append((k, intent.symbol, intent.side, intent.qty))
    return out


def test_enter_on_good_news_and_exit_after_hold_bars() -> None:
    s = NewsMomentum(name="news", symbols=["AAPL", "MSFT"], hold_bars=3, qty=Decimal(5))
    first = news(GOOD, "AAPL", "TSLA")
    events = [
        bar("AAPL", 0),
        first,  # 1: buy
        bar("AAPL", 1),  # 1st bar
        bar("MSFT", 1),  # another symbol's bar: not counted
        first,  # a re-delivery of the same id: ignored
        bar("AAPL", 2),  # 2nd
        Trade(symbol="AAPL", ts_event=0, price=1.0, size=1),  # not a bar
        bar("AAPL", 3),  # 8: 3rd: exit
        bar("AAPL", 4),
    ]
    assert feed(s, events) == [(1, "AAPL", "buy", Decimal(5)), (7, "AAPL", "sell", Decimal(5))]
    (entry,) = s.on_event(news(GOOD, "AAPL", id="2"), None, Book())
    assert entry.reason == (
        "news score +2 (beats estimates, record): 'Apple beats estimates, posts record revenue'"
        "; target +5 from +0"
    )
    assert entry.event_id == "News:alpaca:2" == event_id(news(GOOD, id="2"))
    assert (entry.ts_event, entry.ts_recv) == (100 * SECOND, 101 * SECOND)
    assert entry.type == "market"


def test_exit_reason_names_the_news() -> None:
    s = NewsMomentum(name="news", symbols=["AAPL"], hold_bars=1)
    book = Book()
    s.on_event(news(GOOD, "AAPL"), None, book)
    book.positions["AAPL"] = Decimal(1)
    (exit_,) = s.on_event(bar("AAPL", 7), None, book)
    assert exit_.reason.startswith("held 1 bars after news score +2 (beats estimates, record)")
    assert exit_.event_id == event_id(bar("AAPL", 7))


def test_one_item_for_several_symbols_in_the_strategys_order() -> None:
    s = NewsMomentum(name="news", symbols=["MSFT", "AAPL", "NVDA"], hold_bars=2)
    events = [news(GOOD, "AAPL", "MSFT", "TSLA"), bar("AAPL", 1), bar("MSFT", 1), bar("AAPL", 2)]
    assert feed(s, events) == [
        (0, "MSFT", "buy", Decimal(1)),
        (0, "AAPL", "buy", Decimal(1)),
        (3, "AAPL", "sell", Decimal(1)),
    ]


def test_bad_news_exits_a_long_or_goes_short() -> None:
    long_only = NewsMomentum(name="n", symbols=["AAPL"], hold_bars=2)
    events = [
        news(BAD, "AAPL", id="0"),  # flat: nothing to exit
        news(GOOD, "AAPL", id="1"),
        bar("AAPL", 1),
        news(BAD, "AAPL", id="2"),  # exits, and stops the count
        bar("AAPL", 2),
        bar("AAPL", 3),
    ]
    assert feed(long_only, events) == [(1, "AAPL", "buy", Decimal(1)), (3, "AAPL", "sell", 1)]
    short = NewsMomentum(name="n", symbols=["AAPL"], hold_bars=2, allow_short=True)
    assert feed(short, events) == [
        (0, "AAPL", "sell", Decimal(1)),
        (1, "AAPL", "buy", Decimal(2)),
        (3, "AAPL", "sell", Decimal(2)),
        (5, "AAPL", "buy", Decimal(1)),  # the short's 2nd bar
    ]


def test_new_news_restarts_the_count_and_working_orders_count() -> None:
    s = NewsMomentum(name="n", symbols=["AAPL"], hold_bars=2)
    book = Book(fills=False)
    events = [
        news(GOOD, "AAPL", id="1"),
        bar("AAPL", 1),
        news(GOOD, "AAPL", id="2"),  # already long (working): no order, count restarts
        bar("AAPL", 2),
        bar("AAPL", 3),  # 2nd bar since the latest news: exit
    ]
    assert feed(s, events, book) == [(0, "AAPL", "buy", Decimal(1)), (4, "AAPL", "sell", 1)]
    assert book.working("AAPL") == 0 and not book.positions


def test_weak_news_and_other_symbols_are_ignored() -> None:
    s = NewsMomentum(name="n", symbols=["AAPL"], threshold=2)
    assert feed(s, [news("Apple beats estimates", "AAPL")]) == []  # score 1
    assert feed(s, [news(GOOD, "MSFT")]) == []
    assert feed(s, [news(GOOD)]) == []
    three = NewsMomentum(name="n", symbols=["AAPL"], threshold=3)
    assert feed(three, [news(GOOD, "AAPL")]) == []
    assert feed(three, [news(GOOD + " and shares surge", "AAPL", id="9")]) == [
        (0, "AAPL", "buy", Decimal(1))
    ]


def test_stale_news_is_ignored() -> None:
    s = NewsMomentum(name="n", symbols=["AAPL"], max_age=60)
    assert feed(s, [news(GOOD, "AAPL", id="old", delay=60.001)]) == []
    assert feed(s, [news(GOOD, "AAPL", id="new", delay=60.0)]) == [(0, "AAPL", "buy", 1)]
    unstamped = news(GOOD, "AAPL", id="x", delay=0)
    unstamped = News(**{**{f: getattr(unstamped, f) for f in News.__struct_fields__}, "ts_recv": 0})
    assert len(NewsMomentum(name="n", symbols=["AAPL"]).on_event(unstamped, None, Book())) == 1


def test_each_id_once_with_bounded_memory() -> None:
    s = NewsMomentum(name="n", symbols=["AAPL"], remember=2, allow_short=True)
    events = [
        news(GOOD, "AAPL", id="a"),  # buy 1
        news(GOOD, "AAPL", id="a"),  # seen
        news(GOOD, "AAPL", id="a", provider="finnhub"),  # another provider's id "a": new
        news(BAD, "AAPL", id="b"),  # sell 2
        news(BAD, "AAPL", id="b"),  # seen
        news(GOOD, "AAPL", id="c"),  # buy 2; "a" (alpaca) is forgotten now
        news(BAD, "AAPL", id="a"),  # so this is new again: sell 2
    ]
    assert [(k, side, qty) for k, _, side, qty in feed(s, events)] == [
        (0, "buy", 1),
        (3, "sell", 2),
        (5, "buy", 2),
        (6, "sell", 2),
    ]


def test_crypto_symbols_match_news_tags_without_the_slash() -> None:
    s = NewsMomentum(name="n", symbols=["BTC/USD"], hold_bars=1)
    crypto_bar = CryptoBar(
        symbol="BTC/USD", ts_event=0, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.5
    )
    events = [news("Bitcoin surges to a record", "BTCUSD"), crypto_bar]
    assert feed(s, events) == [(0, "BTC/USD", "buy", 1), (1, "BTC/USD", "sell", 1)]


def test_on_the_synthetic_market() -> None:
    """Every entry is a fresh news item for the symbol scoring >= 2, and every exit comes at the
    hold_bars-th of the symbol's bars after its latest such item."""
    config = MarketConfig(
        seed=3,
        equities=(("AAPL", 190.0), ("MSFT", 410.0), ("NVDA", 880.0)),
        crypto=(),
        trade_rate=0.1,
        quote_rate=0.0,
        book_rate=0.0,
        news_rate=20.0,
    )
    events: list[Any] = SyntheticMarket(config).events(12_000)
    s = NewsMomentum(name="n", symbols=["AAPL", "NVDA"], hold_bars=4, qty=Decimal(3))
    host = Host(s, ["AAPL", "MSFT", "NVDA"])
    host.feed(events)
    want: list[tuple[int, str, str]] = []
    for symbol in ("AAPL", "NVDA"):
        held, entry = False, None
        for k, e in enumerate(events):
            if isinstance(e, News) and symbol in e.symbols and score(e.headline).value >= 2:
                if not held:
                    want.append((k, symbol, "buy"))
                held, entry = True, 0
            elif isinstance(e, Bar) and e.symbol == symbol and held and entry is not None:
                entry += 1
                if entry == 4:
                    want.append((k, symbol, "sell"))
                    held, entry = False, None
    assert len(want) > 20
    assert sorted((k, x.symbol, x.side) for k, x in host.intents) == sorted(want)
    assert all(x.qty == 3 for _, x in host.intents)


def test_meets_the_protocol() -> None:
    s = NewsMomentum(name="n", symbols=["AAPL"])
    assert isinstance(s, Strategy)
    assert s.indicators == ()
    assert {News, Bar, CryptoBar} <= s.events


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": 0}, "threshold must be >= 1"),
        ({"hold_bars": 0}, "hold_bars must be >= 1"),
        ({"hold_bars": True}, "hold_bars must be an integer"),
        ({"max_age": -1}, "max_age must be within"),
        ({"remember": 0}, "remember must be >= 1"),
        ({"symbols": []}, "symbols must name at least one symbol"),
        ({"symbols": "AAPL"}, "symbols must be a list of strings"),
        ({"symbols": ["AAPL", "AAPL"]}, "symbols must not repeat"),
        ({"symbols": ["BTC/USD", "BTCUSD"]}, "symbols must differ without '/'"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_rejects_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        NewsMomentum(**{"name": "n", "symbols": ["AAPL"], **params})
    assert message in str(info.value)
