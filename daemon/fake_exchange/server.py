"""``tickd fake-exchange``: the market, its data streams and the trading side, on loopback.

:class:`FakeExchange` runs the :class:`~.market.Market` (paced by the wall clock), the market
data websockets and bar history (:class:`~.stream.StreamServer`, one port), and the trading REST
API and ``trade_updates`` stream (:class:`~.trading.TradingServer`) over a
:class:`~.matching.MatchingEngine` that fills orders against the market's trades and quotes.
One :class:`~.chaos.Chaos` is shared by every part (``POST /_chaos`` on the trading port
switches faults while running).

The command prints one JSON line with the URLs and keys (what a client or a test needs to
connect), then serves until SIGINT or SIGTERM; its logs go to stderr as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import typing
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import TaskStatus

from tickd.codecs.synthetic import MarketConfig

from .. import eventloop, logs
from ..config import LogConfig
from .chaos import Chaos, ChaosSettings
from .market import Market, MarketSettings
from .matching import MatchingEngine
from .stream import StreamServer, StreamSettings
from .trading import TradingServer

__all__ = ["FakeExchange", "FakeExchangeSettings", "configure_parser", "run_cli"]

# The synthetic market's weekday equity session (UTC), which ``--sessions`` keeps.
_SESSION: Final = (MarketConfig().session_open_utc, MarketConfig().session_close_utc)


class FakeExchangeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 0  # market data (websockets and bar history); 0: a free port
    trading_port: int = 0
    trading_stream_port: int = 0  # trade_updates
    key: str = "fake-key"
    secret: str = "fake-secret"
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "BTC/USD")
    seed: int = 7
    speed: float = 60.0
    always_open: bool = True
    tape: str | None = None
    sip: bool = True  # False: /v2/sip answers 409, as on the free plan
    symbol_limit: int = 0
    chaos: ChaosSettings = ChaosSettings()


class FakeExchange:
    """Everything behind the fake exchange's ports; :attr:`urls` once :meth:`run` has started."""

    def __init__(self, settings: FakeExchangeSettings | None = None) -> None:
        self.settings = settings = settings or FakeExchangeSettings()
        self.chaos = Chaos(settings.chaos)
        self.market = Market(
            MarketSettings(
                symbols=settings.symbols,
                seed=settings.seed,
                speed=settings.speed,
                always_open=settings.always_open,
                tape=settings.tape,
            )
        )
        self.engine = MatchingEngine(
            clock_ns=self.market.now_ns,
            chaos=self.chaos,
            seed=settings.seed,
            assets=settings.symbols,
            on_symbol=self.market.ensure,
            sessions=None if settings.always_open else _SESSION,
        )
        self.market.subscribe(self.engine.on_market)
        self.streams = StreamServer(
            self.market,
            self.chaos,
            StreamSettings(
                key=settings.key,
                secret=settings.secret,
                host=settings.host,
                port=settings.port,
                sip=settings.sip,
                symbol_limit=settings.symbol_limit,
            ),
        )
        self.trading = TradingServer(
            self.engine,
            key=settings.key,
            secret=settings.secret,
            chaos=self.chaos,
            host=settings.host,
            port=settings.trading_port,
            stream_port=settings.trading_stream_port,
        )
        self.urls: dict[str, str] = {}
        self._scope: anyio.CancelScope | None = None

    async def run(
        self, *, task_status: TaskStatus[dict[str, str]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled or :meth:`stop`; ``task_status.started(urls)`` once every port
        listens."""
        async with anyio.create_task_group() as tasks:
            self._scope = tasks.cancel_scope
            market_data = await tasks.start(self.streams.run)
            trading = await tasks.start(self.trading.run)
            tasks.start_soon(self.market.run)
            self.urls = {
                "market_data_url": market_data,
                "data_url": market_data.replace("ws://", "http://", 1),
                "trading_url": trading,
                "trading_stream_url": self.trading.stream_url,
                "key": self.settings.key,
                "secret": self.settings.secret,
            }
            task_status.started(self.urls)

    def stop(self) -> None:
        """End :meth:`run` (its ports close)."""
        if self._scope is not None:
            self._scope.cancel()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``tickd fake-exchange`` options."""
    defaults = FakeExchangeSettings()
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to listen on (default: loopback)")
    add("--port", type=int, default=0, help="market data port (0: a free one)")
    add("--trading-port", type=int, default=0, help="trading REST port (0: a free one)")
    add("--trading-stream-port", type=int, default=0, help="trade_updates port (0: a free one)")
    add("--key", help="API key id clients must use (default: random)")
    add("--secret", help="API secret clients must use (default: random)")
    add("--symbols", default=",".join(defaults.symbols), help="comma-separated, e.g. AAPL,BTC/USD")
    add("--seed", type=int, default=defaults.seed, help="market seed (same seed, same market)")
    add("--speed", type=float, default=defaults.speed, help="market seconds per wall second")
    add("--sessions", action="store_true", help="keep weekday sessions (default: always open)")
    add("--tape", help="replay this tape instead of the synthetic market")
    add("--no-sip", action="store_true", help="/v2/sip answers 409 (the free plan)")
    add("--symbol-limit", type=int, default=0, help="symbols per connection (0: no limit)")
    chaos = parser.add_argument_group("chaos (also switchable at run time: POST /_chaos)")
    for info in msgspec.structs.fields(ChaosSettings):
        option = "--chaos-seed" if info.name == "seed" else f"--{info.name.replace('_', '-')}"
        if typing.get_origin(info.type) is tuple:  # kinds: comma-separated, checked by _settings
            chaos.add_argument(
                option,
                dest=f"chaos_{info.name}",
                type=_names,
                default=info.default,
                metavar="KIND[,KIND...]",
                help=f"of {', '.join(typing.get_args(typing.get_args(info.type)[0]))}",
            )
        else:
            chaos.add_argument(
                option, dest=f"chaos_{info.name}", type=info.type, default=info.default
            )


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def run_cli(args: argparse.Namespace) -> int:
    """Print the JSON line, serve until SIGINT/SIGTERM; 0 on a stop asked for, 2 on bad options."""
    try:
        settings = _settings(args)
    except (ValueError, msgspec.ValidationError) as exc:
        print(f"tickd fake-exchange: {exc}", file=sys.stderr)
        return 2
    # JSON lines on stderr (stdout carries the URLs); the keys it accepts masked in them.
    logs.configure(
        LogConfig(format="json"), stream=sys.stderr, secrets=(settings.key, settings.secret)
    )
    eventloop.run(_serve, settings)
    return 0


def _settings(args: argparse.Namespace) -> FakeExchangeSettings:
    chaos = {name: getattr(args, f"chaos_{name}") for name in ChaosSettings.__struct_fields__}
    fields: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "trading_port": args.trading_port,
        "trading_stream_port": args.trading_stream_port,
        "key": args.key or f"FK{secrets.token_hex(8).upper()}",
        "secret": args.secret or secrets.token_urlsafe(24),
        "symbols": tuple(s.strip() for s in args.symbols.split(",") if s.strip()),
        "seed": args.seed,
        "speed": args.speed,
        "always_open": not args.sessions,
        "tape": args.tape,
        "sip": not args.no_sip,
        "symbol_limit": args.symbol_limit,
        "chaos": chaos,
    }
    settings = msgspec.convert(fields, FakeExchangeSettings)
    MarketSettings(symbols=settings.symbols, speed=settings.speed)  # validates them
    return settings


async def _serve(settings: FakeExchangeSettings) -> None:
    exchange = FakeExchange(settings)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:
            urls = await tasks.start(exchange.run)
            print(json.dumps(urls), flush=True)
            async for _ in signals:
                tasks.cancel_scope.cancel()
                break
