"""The whole daemon trading through Alpaca's protocols on loopback: market bars over the data
stream, a strategy, risk, the real alpaca-py client against a scripted REST server, and the fill
coming back on the ``trade_updates`` stream. It starts from what the venue already holds."""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tickd.codecs.timestamps import format_rfc3339_ns
from tickd.daemon.app import App
from tickd.daemon.config import load

from .alpaca_rest_server import AlpacaRestServer
from .alpaca_server import Connection, MiniAlpaca
from .test_app import bars
from .trading_server import Connection as TradingConnection
from .trading_server import MiniTradingStream


@pytest.mark.anyio
async def test_the_daemon_trades_through_alpaca_and_applies_the_streamed_fill(
    tmp_path: Path, compiled_banks: None
) -> None:
    rest = AlpacaRestServer()
    closes = [100.0 + 3 * math.sin(i / 4) for i in range(60)]  # the EMAs cross on the way
    streamed: list[dict[str, Any]] = []

    async def send_bars(connection: Connection) -> None:
        for bar in bars("AAPL", closes):
            await connection.send([bar])
            await anyio.sleep(0.005)
        await connection.websocket.wait_closed()

    async def fill_what_arrives(connection: TradingConnection) -> None:
        """Fill each order the daemon places, as the venue would, on the stream."""
        while True:
            placed = [o for c, o in rest.orders.items() if c.startswith("tickd-")]
            for order in placed[len(streamed) :]:
                activity = rest.fill(order["client_order_id"], "101.5")
                frame = {
                    "stream": "trade_updates",
                    "data": {
                        "event": "fill",
                        "execution_id": activity["id"].split("::")[1],
                        "order": order,
                        "price": "101.5",
                        "qty": order["qty"],
                        "position_qty": str(rest.positions["AAPL"]),
                        "timestamp": format_rfc3339_ns(time.time_ns()),
                    },
                }
                await connection.send_raw(json.dumps(frame).encode())
                streamed.append(frame)
            with anyio.move_on_after(0.01):
                await connection.websocket.wait_closed()
                return

    market = MiniAlpaca(behaviours=[send_bars])
    trading = MiniTradingStream(behaviours=[fill_what_arrives])
    with rest.running():
        # What the venue holds from before this start: 5 AAPL and an open order.
        rest.add_order(
            {
                "symbol": "AAPL",
                "qty": "5",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": "earlier-1",
            }
        )
        rest.fill("earlier-1", "99")
        rest.add_order(
            {
                "symbol": "AAPL",
                "qty": "1",
                "side": "sell",
                "type": "limit",
                "limit_price": "150",
                "time_in_force": "gtc",
                "client_order_id": "earlier-2",
            }
        )
        async with market.running(), trading.running():
            path = tmp_path / "tickd.toml"
            path.write_text(
                f"""
state_dir = "{tmp_path}"
[alpaca]
feed = "test"
stream_url = "{market.url.rsplit("/v2", 1)[0]}"
trading_stream_url = "{trading.url}"
backfill = false
[symbols]
stocks = ["AAPL"]
[risk]
trading_hours = "always"
[broker]
kind = "alpaca"
trading_url = "{rest.url}"
timeout = 2.0
[[strategies]]
kind = "ema_cross"
params = {{fast = 3, slow = 8, qty = 2, allow_short = true}}
""",
                encoding="utf-8",
            )
            environ = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret"}
            app = App(load(path, environ=environ))
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    await tg.start(app.run)
                    while (  # every bar decided on, every order filled and the fill applied
                        app.indicators.mailbox.stats.received < len(closes)
                        or any(len(a.mailbox) or a.current for a in app.actors)
                        or len(streamed) < len([c for c in rest.orders if c.startswith("tickd-")])
                        or app.portfolio.fills < len(streamed)
                        or app.broker_actor.reconciliations < 2
                    ):
                        await anyio.sleep(0.02)
                    app.stop()
    # At start: the venue's position and open order became the portfolio's; once trade_updates
    # was ready, a second reconciliation.
    assert app.broker_actor.reconciliations >= 2
    placed = {c: o for c, o in rest.orders.items() if c.startswith("tickd-")}
    assert len(placed) == len(streamed) >= 2  # each decision placed once
    assert len(rest.requests("submit")) == len(placed)  # no retries, no duplicates
    # The streamed fills moved the position from the 5 held before the start.
    signed = sum(
        (Decimal(o["qty"]) * (1 if o["side"] == "buy" else -1) for o in placed.values()),
        Decimal(0),
    )
    assert app.portfolio.position("AAPL") == 5 + signed == rest.positions["AAPL"]
    assert set(app.portfolio.orders) == {"earlier-2"}  # still open at the venue
    assert app.broker_actor.failed == {} and app.risk.denied == {}
