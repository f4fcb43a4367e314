"""The built-in strategies by kind: build() from configuration values, with errors that name the
kind and the parameter; and the OrderIntent checks every strategy relies on."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tests.strategies.host import Host
from tickd.codecs.synthetic.market import MarketConfig, SyntheticMarket
from tickd.strategies.base import OrderIntent, SignalStrategy, Strategy
from tickd.strategies.catalog import STRATEGIES, build, parameters
from tickd.strategies.ema_cross import EmaCross
from tickd.strategies.news_momentum import NewsMomentum
from tickd.strategies.rsi_reversion import RsiReversion


def test_kinds() -> None:
    assert dict(STRATEGIES) == {
        "ema_cross": EmaCross,
        "rsi_reversion": RsiReversion,
        "news_momentum": NewsMomentum,
    }


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_build_with_defaults(kind: str) -> None:
    strategy = build(kind, name="s1", symbols=["AAPL", "MSFT"], params={})
    assert type(strategy) is STRATEGIES[kind]
    assert isinstance(strategy, Strategy)
    assert isinstance(strategy, SignalStrategy) == (kind == "ema_cross")
    assert strategy.name == "s1" and strategy.symbols == ("AAPL", "MSFT")
    assert parameters(kind)["qty"] == Decimal(1)
    assert parameters(kind)["allow_short"] is False


def test_build_passes_the_parameters() -> None:
    ema = build(
        "ema_cross",
        name="trend",
        symbols=("SPY",),
        params={"fast": 5, "slow": 10, "qty": "0.5", "allow_short": True},
    )
    assert isinstance(ema, EmaCross)
    assert (ema.fast, ema.slow, ema.qty, ema.allow_short) == (5, 10, Decimal("0.5"), True)
    rsi = build("rsi_reversion", name="r", symbols=["SPY"], params={"qty": 0.1, "oversold": 20})
    assert isinstance(rsi, RsiReversion)
    assert (rsi.qty, rsi.oversold) == (Decimal("0.1"), 20.0)  # a float qty reads as written
    news = build("news_momentum", name="n", symbols=["SPY"], params={"hold_bars": 15})
    assert isinstance(news, NewsMomentum) and news.hold_bars == 15


@pytest.mark.parametrize(
    ("kind", "symbols", "params", "message"),
    [
        ("macd_cross", ["A"], {}, "unknown strategy kind 'macd_cross'; known: ema_cross, "),
        ("ema_cross", ["A"], {"fastt": 3}, "strategy 's' (ema_cross): unknown parameter 'fastt'"),
        (
            "ema_cross",
            ["A"],
            {"a": 1, "b": 2},
            "strategy 's' (ema_cross): unknown parameters 'a', 'b'; known: fast, slow, qty",
        ),
        ("ema_cross", ["A"], {"fast": 30}, "strategy 's' (ema_cross): fast (30) must be less"),
        ("rsi_reversion", ["A"], {"qty": -1}, "strategy 's' (rsi_reversion): qty must be > 0"),
        ("rsi_reversion", ["A"], {"order_type": "stop"}, "(rsi_reversion): order_type must"),
        ("news_momentum", ["A"], {"threshold": "2"}, "(news_momentum): threshold must be an int"),
        ("news_momentum", [], {}, "strategy 's' (news_momentum): symbols must name at least"),
        ("news_momentum", ["A"], {"name": "x"}, "(news_momentum): unknown parameter 'name'"),
        ("news_momentum", ["A", ""], {}, "symbols must be non-empty strings, got ''"),
        ("ema_cross", ["A"], {"qty": True}, "(ema_cross): qty must be a number, got True"),
        ("ema_cross", ["A"], {"qty": [1]}, "(ema_cross): qty must be a number, got [1]"),
        ("rsi_reversion", ["A"], {"oversold": "20"}, "oversold must be a number, got '20'"),
    ],
)
def test_build_errors_name_the_kind_and_the_parameter(
    kind: str, symbols: list[str], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        build(kind, name="s", symbols=symbols, params=params)
    assert message in str(info.value)


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_repr_shows_the_parameters(kind: str) -> None:
    text = repr(build(kind, name="s", symbols=["A"], params={"qty": "2"}))
    assert text.startswith(f"{STRATEGIES[kind].__name__}(name='s', symbols=['A'], ")
    assert "qty=2" in text


def intent(**fields: Any) -> OrderIntent:
    base: dict[str, Any] = {
        "strategy": "s",
        "symbol": "AAPL",
        "side": "buy",
        "qty": Decimal(1),
        "event_id": "Bar:AAPL:0",
        "ts_event": 0,
    }
    return OrderIntent(**{**base, **fields})


def test_order_intent_validation() -> None:
    assert intent().signed_qty == 1 and intent(side="sell").signed_qty == -1
    assert intent(type="limit", limit_price=Decimal("1.5")).limit_price == Decimal("1.5")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"qty": Decimal(0)}, "intent quantity must be > 0"),
        ({"qty": Decimal(-2)}, "intent quantity must be > 0"),
        ({"type": "limit"}, "a limit intent needs a limit price"),
        ({"limit_price": Decimal(1)}, "a limit intent needs a limit price"),
        ({"type": "limit", "limit_price": Decimal(0)}, "limit price must be > 0"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            intent(**bad)


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_same_events_same_decisions(kind: str) -> None:
    """No clock, no randomness: two strategies built alike decide alike, byte for byte."""
    config = MarketConfig(
        seed=5, crypto=(), trade_rate=0.1, quote_rate=0.0, book_rate=0.0, news_rate=30.0
    )
    events = SyntheticMarket(config).events(8_000)
    params: dict[str, dict[str, Any]] = {
        "ema_cross": {"fast": 3, "slow": 7},
        "news_momentum": {"hold_bars": 2},
        "rsi_reversion": {"rsi_period": 5, "bb_period": 5, "bb_dev": 1.0},
    }
    runs = []
    for _ in range(2):
        strategy = build(kind, name="s", symbols=["AAPL", "MSFT"], params=params[kind])
        host = Host(strategy, [s for s, _ in config.equities])
        host.feed(events)
        runs.append(msgspec.msgpack.encode([x for _, x in host.intents]))
    assert runs[0] == runs[1]
    assert len(msgspec.msgpack.decode(runs[0])) > 5
