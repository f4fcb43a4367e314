"""The daemon end to end: the App in process, and ``tickd run`` as a real subprocess with signals,
both against the loopback Alpaca server."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from tickd.codecs.schema import Bar, Quote, Trade
from tickd.daemon import cli
from tickd.daemon.actors import Mailbox
from tickd.daemon.app import DEFAULT_INDICATORS, App
from tickd.daemon.config import load
from tickd.daemon.indicators import IndicatorActor, IndicatorSnapshot
from tickd.strategies.indicators import ema

from .alpaca_server import Connection, MiniAlpaca

pytestmark = pytest.mark.usefixtures("compiled_bank")
START = 1_717_162_200_000_000_000


def bars(symbol: str, closes: list[float]) -> list[Bar]:
    return [
        Bar(
            symbol=symbol,
            ts_event=START + i * 60_000_000_000,
            open=c,
            high=c + 1,
            low=c - 1,
            close=c,
            volume=100,
        )
        for i, c in enumerate(closes)
    ]


def config_file(tmp_path: Path, url: str, **alpaca: Any) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in alpaca.items())
    path = tmp_path / "tickd.toml"
    path.write_text(
        f'[alpaca]\nfeed = "test"\nstream_url = "{url}"\n{extra}'
        '[symbols]\nstocks = ["AAPL", "MSFT"]\n'
        "[runtime]\nreconnect_initial = 0.01\nreconnect_cap = 0.05\n"
    )
    return path


@pytest.mark.anyio
async def test_bars_flow_through_the_bank_to_indicator_snapshots(tmp_path: Path) -> None:
    closes = [100.0 + math.sin(i / 3) for i in range(40)]

    async def send_bars(connection: Connection) -> None:
        for bar in bars("AAPL", closes):
            await connection.send(
                [bar, Trade(symbol="AAPL", ts_event=bar.ts_event, price=1.0, size=1)]
            )
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[send_bars])
    async with server.running():
        environ = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret"}
        app = App(load(config_file(tmp_path, server.url.rsplit("/v2", 1)[0]), environ=environ))
        strategy: Mailbox[Any] = Mailbox("strategy", 1000)
        app.bus.subscribe(strategy, IndicatorSnapshot, ["AAPL"])
        snapshots: list[IndicatorSnapshot] = []
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            with anyio.fail_after(10):
                while not snapshots or snapshots[-1].ts_event != bars("AAPL", closes)[-1].ts_event:
                    snapshots += await strategy.receive_batch(1000)
            app.stop()
    (subscribe,) = [m for m in server.received if type(m).__name__ == "SubscribeRequest"]
    assert subscribe.bars == ("AAPL", "MSFT")
    column = app.indicators.columns.index("ema(timeperiod=12)")
    expected = ema(__import__("numpy").array(closes), timeperiod=12)
    assert snapshots[-1].values[column] == expected[-1]  # the bank is exact against batch
    assert app.indicators.ignored == {}  # the trades are not routed to the bank at all
    assert app.bus.unrouted["Trade"] == len(closes)
    assert app.indicators.mailbox.closed  # ordered shutdown closed and drained it


def run_tickd(*args: str, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    return subprocess.Popen(
        [sys.executable, "-m", "tickd.daemon.cli", *args],
        env=environ | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.anyio
async def test_tickd_run_reports_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = MiniAlpaca()
    async with server.running():
        path = config_file(tmp_path, server.url.rsplit("/v2", 1)[0])
        process = run_tickd(
            "run", "--config", str(path), APCA_API_KEY_ID="key", APCA_API_SECRET_KEY="secret"
        )
        with anyio.fail_after(60):
            while server.connections == 0 or len(server.received) < 2:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = await anyio.to_thread.run_sync(process.communicate, 10)
    assert process.returncode == 0, err
    assert time.monotonic() - started < 5
    assert "daemon_ready" in out and "daemon_stopped" in out
    assert "startup_heap_frozen" in out  # once ready (tickd.daemon.heap)


@pytest.mark.anyio
async def test_tickd_run_exits_69_when_the_server_refuses_the_keys(tmp_path: Path) -> None:
    server = MiniAlpaca()
    async with server.running():
        path = config_file(tmp_path, server.url.rsplit("/v2", 1)[0])
        process = run_tickd(
            "run", "--config", str(path), APCA_API_KEY_ID="key", APCA_API_SECRET_KEY="bad"
        )
        _, err = await anyio.to_thread.run_sync(process.communicate, 60)
    assert process.returncode == cli.EX_UNAVAILABLE
    assert "402 auth failed" in err


def test_check_config_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s3cret")
    path = config_file(tmp_path, "ws://127.0.0.1:1")
    assert cli.main(["check-config", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alpaca"]["secret_key"] == "***" and shown["alpaca"]["feed"] == "test"
    assert shown["symbols"]["stocks"] == ["AAPL", "MSFT"]


def test_a_bad_config_exits_78_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[alpaca]\nfeed = "nasdaq"\n')
    assert cli.main(["check-config", str(path)]) == 78
    assert "$.alpaca.feed" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(path)]) == 78


def test_run_without_keys_exits_78_and_check_config_only_notes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    path = config_file(tmp_path, "ws://127.0.0.1:1")
    assert cli.main(["run", "--config", str(path)]) == 78
    assert "$.alpaca.key_id: not set" in capsys.readouterr().err
    assert cli.main(["check-config", str(path)]) == 0
    assert "alpaca.secret_key is not set" in capsys.readouterr().err


def test_the_default_bank_is_the_one_the_fixture_compiles() -> None:
    assert [s.name for s in DEFAULT_INDICATORS] == ["ema", "ema", "rsi", "atr"]


@pytest.mark.anyio
async def test_the_indicator_actor_takes_trades_in_batches_larger_than_the_bank() -> None:
    from tickd.strategies.indicators import Bank

    published: list[Any] = []

    async def publish(items: list[Any]) -> None:
        published.append(items)

    bank = Bank(DEFAULT_INDICATORS, 2, capacity=3)
    actor = IndicatorActor(Mailbox("m", 10), bank, ["AAPL", "MSFT"], publish, source="trades")
    prices = [10.0, 11.0, 12.0, 13.0, 14.0]
    batch: list[Any] = [
        Trade(symbol="AAPL", ts_event=START + i, price=p, size=1, ts_recv=i)
        for i, p in enumerate(prices)
    ]
    batch.insert(2, Trade(symbol="TSLA", ts_event=START, price=1.0, size=1))  # not in the bank
    batch.insert(3, bars("AAPL", [1.0])[0])  # a bar, but this bank takes trades
    await actor.handle(batch)
    assert [len(p) for p in published] == [1, 1]  # 5 trades: two bank calls of 3 and 2
    last = published[-1][0]
    assert (last.symbol, last.ts_recv) == ("AAPL", 4)
    column = actor.columns.index("ema(timeperiod=12)")
    assert math.isnan(last.values[column])  # still warming up
    assert actor.ignored == {"Trade": 1, "Bar": 1}
    with pytest.raises(ValueError, match="3 symbols for a bank of 2"):
        IndicatorActor(Mailbox("m", 1), bank, ["A", "B", "C"], publish)


@pytest.mark.anyio
@pytest.mark.parametrize("pack_max", [0, 5, 32], ids=["by-column", "mixed", "packed"])
async def test_whole_batches_of_trades_read_packed_or_by_column_match_the_general_pass(
    monkeypatch: pytest.MonkeyPatch, pack_max: int
) -> None:
    """The read of a batch the bank takes whole (packed event by event when small, else column by
    column) gives the snapshots and the bank state the per-event pass gives (that pass is forced
    by one trade of an unknown symbol)."""
    import random

    from tickd.strategies.indicators import Bank, Spec

    specs = [Spec("ema", {"timeperiod": 3}), Spec("vwap"), Spec("atr", {"timeperiod": 2})]
    symbols = ["AAPL", "MSFT", "NVDA"]
    rnd = random.Random(7)
    day = 86_400 * 10**9
    ts = START // day * day - 40 * 10**9  # the trades cross a UTC midnight: vwap resets there
    batches: list[list[Any]] = []
    for i in range(40):
        batch = []
        for _ in range(rnd.randrange(1, 9) if i % 5 else 20):  # 20: more than the bank holds
            ts += rnd.randrange(1, 3 * 10**9)
            symbol = rnd.choice(symbols)
            price, size = round(rnd.uniform(99, 101), 2), rnd.randrange(1, 500)
            batch.append(Trade(symbol=symbol, ts_event=ts, price=price, size=size, ts_recv=ts))
        batches.append(batch)
    assert batches[0][0].ts_event // day != batches[-1][-1].ts_event // day

    async def run(whole: bool) -> tuple[list[Any], Bank]:
        published: list[Any] = []

        async def publish(items: list[Any]) -> None:
            published.extend(items)

        bank = Bank(specs, len(symbols), capacity=8)
        actor = IndicatorActor(Mailbox("m", 10), bank, symbols, publish, source="trades")
        for batch in batches:
            stray = Trade(symbol="TSLA", ts_event=batch[-1].ts_event, price=1.0, size=1)
            await actor.handle(batch if whole else [*batch, stray])
        assert actor.ignored == ({} if whole else {"Trade": len(batches)})
        return published, bank

    import tickd.daemon.indicators as indicators

    taken: list[int] = []  # the sizes of the batches read whole
    packed: list[int] = []  # one entry per event packed on its own
    take, pack = IndicatorActor._take_trades, indicators._PACK_EVENT

    async def counted(self: IndicatorActor, batch: list[Any], rows: list[int]) -> None:
        taken.append(len(batch))
        await take(self, batch, rows)

    def counted_pack(*args: Any) -> None:
        packed.append(1)
        pack(*args)

    monkeypatch.setattr(IndicatorActor, "_take_trades", counted)
    monkeypatch.setattr(IndicatorActor, "pack_max", pack_max)
    monkeypatch.setattr(indicators, "_PACK_EVENT", counted_pack)
    whole, whole_bank = await run(True)
    calls = len(batches) + 8 * 2  # a batch of 20 takes three calls for a bank of 8
    assert len(taken) == calls  # every whole batch was read whole...
    small = sum(n for n in taken if n <= pack_max)
    assert len(packed) == small  # ...event by event when small, else column by column
    if pack_max in (0, 32):  # by column only, packed only
        assert small == (0 if pack_max == 0 else sum(taken))
    else:
        assert 0 < small < sum(taken)  # mixed: some of each
    general, general_bank = await run(False)
    assert len(taken) == calls and len(packed) == small  # and no batch with a stray was
    assert [(s.symbol, s.ts_event, s.ts_recv) for s in whole] == [
        (s.symbol, s.ts_event, s.ts_recv) for s in general
    ]
    assert str([s.values for s in whole]) == str([s.values for s in general])  # NaN compare equal
    assert whole_bank.state.tobytes() == general_bank.state.tobytes()


@pytest.mark.anyio
async def test_every_configured_source_reaches_the_bus(tmp_path: Path) -> None:
    """Alpaca bars, order updates, Finnhub trades and company news, NewsAPI: each from its own
    loopback server, all built by the App from one config file."""
    from tickd.codecs.finnhub import encode_company_news
    from tickd.codecs.newsapi import encode_articles
    from tickd.codecs.schema import News, OrderUpdate

    from . import finnhub_server
    from .finnhub_server import MiniFinnhub
    from .http_server import HttpServer, Received, Reply
    from .test_feed_trade_updates import fills
    from .trading_server import MiniTradingStream

    async def finnhub_trades(connection: finnhub_server.Connection) -> None:
        await connection.received_at_least(2)  # AAPL and MSFT subscribed
        await connection.send_trades([Trade(symbol="MSFT", ts_event=START, price=2.0, size=3)])

    async def order_update(connection: Any) -> None:
        await connection.send(fills(1))
        await connection.websocket.wait_closed()

    now = time.time_ns() // 10**9 * 10**9  # whole seconds: Finnhub's unit
    common: dict[str, Any] = {"ts_event": now, "ts_updated": now, "headline": "h"}

    def respond(request: Received) -> Reply:
        if request.path.endswith("/everything"):
            url = "https://n.example/1"
            article = News(provider="newsapi", id=url, url=url, **common)
            return Reply(body=encode_articles([article]))
        symbols = (request.query["symbol"],)
        url = "https://f.example/7"
        item = News(provider="finnhub", id="7", url=url, symbols=symbols, **common)
        return Reply(body=encode_company_news([item]))

    alpaca, trading = MiniAlpaca(), MiniTradingStream("json", [order_update])
    finnhub, http = MiniFinnhub([finnhub_trades]), HttpServer()
    http.respond = respond
    async with alpaca.running(), trading.running(), finnhub.running():
        with http.running():
            path = tmp_path / "tickd.toml"
            path.write_text(
                f'[alpaca]\nfeed = "test"\nstream_url = "{alpaca.url.rsplit("/v2", 1)[0]}"\n'
                f'trade_updates = true\ntrading_stream_url = "{trading.url}"\n'
                '[symbols]\nstocks = ["AAPL", "MSFT"]\n'
                f'[finnhub]\nenabled = true\nstream_url = "{finnhub.url}"\n'
                f'rest_url = "{http.url}"\n'
                f'[newsapi]\nenabled = true\nurl = "{http.url}"\n'
                "[runtime]\nreconnect_initial = 0.01\nreconnect_cap = 0.05\n"
            )
            environ = {
                "APCA_API_KEY_ID": "key",
                "APCA_API_SECRET_KEY": "secret",
                "FINNHUB_TOKEN": finnhub_server.TOKEN,
                "NEWSAPI_KEY": "news-key",
            }
            app = App(load(path, environ=environ))
            seen: Mailbox[Any] = Mailbox("seen", 100)
            for kind in (Trade, OrderUpdate, News):
                app.bus.subscribe(seen, kind)
            events: list[Any] = []
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    await tg.start(app.run)
                    while {(type(e), getattr(e, "provider", "")) for e in events} != {
                        (Trade, ""),
                        (OrderUpdate, ""),
                        (News, "finnhub"),
                        (News, "newsapi"),
                    }:
                        events += await seen.receive_batch(100)
                    app.stop()
    assert sorted(f.source for f in app.feeds) == [
        "alpaca.stocks",
        "alpaca.trade_updates",
        "finnhub.news",
        "finnhub.trades",
        "newsapi",
    ]
    news_request = next(r for r in http.received if r.path.endswith("/everything"))
    assert news_request.headers["x-api-key"] == "news-key"
    assert "AAPL" in news_request.query["q"] and "MSFT" in news_request.query["q"]


@pytest.mark.anyio
async def test_bars_the_bank_already_took_are_left_out_and_counted() -> None:
    """A gap's backfill overlaps the live stream on both sides: each bar must count once."""
    from tickd.strategies.indicators import Bank

    published: list[IndicatorSnapshot] = []

    async def publish(items: list[Any]) -> None:
        published.extend(items)

    closes = [100.0 + math.sin(i / 2) for i in range(30)]
    every = bars("AAPL", closes)
    actor = IndicatorActor(Mailbox("m", 10), Bank(DEFAULT_INDICATORS, 1), ["AAPL"], publish)
    await actor.handle(every[:20])
    await actor.handle(every[18:25])  # the backfill: two bars the bank has, five new
    await actor.handle(every[24:])  # the live stream again: one bar the backfill brought
    assert actor.stale == 3
    column = actor.columns.index("ema(timeperiod=12)")
    expected = ema(__import__("numpy").array(closes), timeperiod=12)
    assert published[-1].values[column] == expected[-1]


def _resting(n: int, price: str) -> Any:
    """A limit buy far below the market: it rests until cancelled."""
    from decimal import Decimal

    from tickd.daemon.broker.base import OrderRequest
    from tickd.strategies.base import OrderIntent

    intent = OrderIntent(
        strategy="ema_cross", symbol="AAPL", side="buy", qty=Decimal(1), type="limit",
        limit_price=Decimal(price), event_id=f"Bar:AAPL:{n}", ts_event=n,
    )  # fmt: skip
    return OrderRequest(client_order_id=f"tickd-{n}", intent=intent)


def _cancelling(tmp_path: Path) -> App:
    path = tmp_path / "tickd.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n[symbols]\nstocks = ["AAPL"]\n'
        '[broker]\non_stop = "cancel"\n[risk]\ntrading_hours = "always"\n'
        '[[strategies]]\nkind = "ema_cross"\nparams = { fast = 3, slow = 6, qty = 1 }\n'
    )
    return App(load(path), feeds=False)


@pytest.mark.anyio
async def test_the_stop_cancels_what_is_open_after_the_orders_on_their_way(tmp_path: Path) -> None:
    app = _cancelling(tmp_path)
    assert app.broker is not None
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            await app.broker.submit(_resting(0, "1"))
            # On its way through the graph when the stop comes: sent, then cancelled.
            await app.broker_actor.mailbox.send(_resting(1, "2"))
            app.stop()
    assert await app.broker.open_orders() == []
    assert app.risk.stopping  # no new intent was approved meanwhile
    [swept] = [line for line in logs if line["event"] == "stop_orders_cancelled"]
    assert swept["cancelled"] == 2


@pytest.mark.anyio
async def test_a_venue_that_cannot_list_its_orders_at_the_stop_does_not_crash_it(
    tmp_path: Path,
) -> None:
    app = _cancelling(tmp_path)
    assert app.broker is not None

    async def unreachable() -> list[Any]:
        raise ConnectionError("venue down")

    app.broker.open_orders = unreachable  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            app.stop()
    events = [line["event"] for line in logs]
    assert "stop_cancel_failed" in events and events[-1] == "daemon_stopped"


@pytest.mark.anyio
async def test_open_orders_are_cancelled_at_the_stop_when_configured(tmp_path: Path) -> None:
    from decimal import Decimal

    from tickd.daemon.broker.base import OrderRequest
    from tickd.strategies.base import OrderIntent

    path = tmp_path / "tickd.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n[symbols]\nstocks = ["AAPL"]\n'
        '[broker]\non_stop = "cancel"\n[risk]\ntrading_hours = "always"\n'
        '[[strategies]]\nkind = "ema_cross"\nparams = { fast = 3, slow = 6, qty = 1 }\n'
    )
    app = App(load(path), feeds=False)
    assert app.broker is not None
    for n, price in enumerate(("1", "2")):  # limit buys far below the market: they rest
        intent = OrderIntent(
            strategy="ema_cross", symbol="AAPL", side="buy", qty=Decimal(1), type="limit",
            limit_price=Decimal(price), event_id=f"Bar:AAPL:{n}", ts_event=n,
        )  # fmt: skip
        await app.broker.submit(OrderRequest(client_order_id=f"tickd-{n}", intent=intent))
    assert len(await app.broker.open_orders()) == 2
    assert await app.cancel_open_orders() == 2
    assert await app.broker.open_orders() == []


@pytest.mark.anyio
async def test_the_strategy_host_keeps_the_latest_quote_per_symbol_and_every_other_event(
    tmp_path: Path,
) -> None:
    """Regression: the host's mailbox blocked on quotes, so a strategy busy on a burst of them
    held up the bank and the feed until the raw queue dropped frames, trades included."""
    app = _cancelling(tmp_path)
    box = app.host.mailbox
    quote = Quote(symbol="AAPL", ts_event=1, bid_price=1.0, bid_size=1, ask_price=1.1, ask_size=1)
    others = [*bars("AAPL", [1.0, 2.0]), Trade(symbol="AAPL", ts_event=3, price=1.0, size=1)]
    for event in (quote, others[0], quote, others[1], others[2], quote):
        await box.send(event)
    assert await box.receive_batch(10) == [*others, quote]  # the latest, behind what came first
    assert box.stats.conflated == 2
