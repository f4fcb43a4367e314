"""``tickd demo``: what exists today, end to end, with no account and no network.

1. Codecs: a seeded synthetic market is encoded as the frames Alpaca's stock and crypto streams
   send (JSON and msgpack), decoded back through the real codecs and checked message for message;
   a few broken frames show the typed errors and counters.
2. Trading: four hours of the synthetic market's minute bars go through the daemon's real graph
   (indicator bank -> EMA-cross strategy -> risk -> simulated broker -> portfolio), entering at
   the bus as a feed would publish them; it prints the orders, fills, positions and PnL, and
   checks the portfolio against the broker.

The fake exchange (a later issue) will put websockets and Alpaca's protocols between the two.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import structlog

from tickd.codecs.alpaca import AlpacaDecoder, Encoding, Stream
from tickd.codecs.schema import Bar, OrderUpdate
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket, alpaca_frames, alpaca_view

from .actors import Mailbox
from .app import App
from .broker.sim import SimBroker
from .clock import ManualClock
from .config import Config

_BROKEN_FRAMES: tuple[tuple[str, bytes], ...] = (
    ("truncated", b'[{"T":"t","S":"AAPL","p":1'),
    ("unknown type", b'[{"T":"zz","S":"AAPL"},{"T":"success","msg":"authenticated"}]'),
    (
        "bad timestamp",
        b'[{"T":"t","S":"AAPL","p":190.1,"s":5,"t":"2024-02-30T14:00:00Z"},'
        b'{"T":"t","S":"AAPL","p":190.2,"s":7,"t":"2024-03-04T14:00:00.000000001Z"}]',
    ),
    ("not json", b"\x00\xffgarbage"),
)


def run_demo(events: int, seed: int, show: int, out: Callable[[str], None] = print) -> int:
    """Run the demo; returns the process exit status (0 when every frame round-tripped)."""
    market = SyntheticMarket(MarketConfig(seed=seed))
    started = time.perf_counter()
    generated = market.events(events)
    counts = Counter(type(e).__name__ for e in generated).most_common()
    out(
        f"synthetic market: seed {seed}, {len(generated)} events in "
        f"{time.perf_counter() - started:.2f} s ({', '.join(f'{n} {k}' for k, n in counts)})"
    )
    failures = 0
    for stream in ("stocks", "crypto"):
        for encoding in ("json", "msgpack"):
            failures += _round_trip(generated, stream, encoding, show, out)
            show = 0
    _broken(out)
    # The graph logs every order at info level: quiet here, the summary says what happened.
    logging_before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        failures += anyio.run(_trade, seed, out)
    finally:
        structlog.configure(**logging_before)
    out("demo: ok" if failures == 0 else f"demo: {failures} mismatches")
    return 0 if failures == 0 else 1


def _round_trip(
    generated: list[Any], stream: Stream, encoding: Encoding, show: int, out: Callable[[str], None]
) -> int:
    expected = alpaca_view(generated, stream)
    frames = alpaca_frames(generated, stream, encoding, batch=50)
    decoder = AlpacaDecoder(stream, encoding)
    decoded: list[Any] = []
    started = time.perf_counter_ns()
    for frame in frames:
        result = decoder.decode(frame, ts_recv=time.time_ns())
        decoded.extend(result.messages)
    elapsed = time.perf_counter_ns() - started
    stamped = all(m.ts_recv > 0 for m in decoded)
    same = [msgspec.structs.replace(m, ts_recv=0) for m in decoded] == expected
    out(
        f"alpaca {stream:<6} {encoding:<7}: {len(frames):>5} frames, {len(decoded):>6} messages, "
        f"{elapsed / max(len(decoded), 1):,.0f} ns/msg, round trip "
        f"{'exact' if same and stamped else 'MISMATCH'}, counters {decoder.stats.as_dict()}"
    )
    for message in decoded[:show]:
        out(f"    {message!r}")
    return 0 if same and stamped else 1


def _broken(out: Callable[[str], None]) -> None:
    decoder = AlpacaDecoder("stocks", "json")
    for label, frame in _BROKEN_FRAMES:
        result = decoder.decode(frame, ts_recv=time.time_ns())
        out(f"broken frame ({label}): {len(result.messages)} good message(s) kept")
        for error in result.errors:
            out(f"    DecodeError index={error.index} reason={error.reason[:90]!r}")
        for unknown in result.unknown:
            out(f"    UnknownMessage type={unknown.type!r} raw={unknown.raw[:40]!r}")
    out(f"broken frames: counters {decoder.stats.as_dict()}")


async def _trade(seed: int, out: Callable[[str], None]) -> int:
    """Replay four hours of minute bars through the trading graph; 0 when the books agree."""
    market = MarketConfig(
        equities=(("AAPL", 190.0), ("MSFT", 410.0), ("NVDA", 880.0)),
        crypto=(),
        seed=seed,
        trade_rate=0.3,
        quote_rate=0.0,
        news_rate=0.0,
        volatility=0.6,
    )
    end = market.start_ns + 4 * 3600 * 10**9
    bars = [
        msgspec.structs.replace(e, ts_recv=e.ts_event)
        for e in SyntheticMarket(market).events_until(end)
        if type(e) is Bar
    ]
    with tempfile.TemporaryDirectory(prefix="tickd-demo-") as state:
        config = msgspec.convert(
            {
                "state_dir": state,
                "symbols": {"stocks": ["AAPL", "MSFT", "NVDA"]},
                "risk": {"trading_hours": "always", "max_position": 50},
                "broker": {"kind": "sim", "slippage_bps": 1.0, "fee_per_share": 0.005},
                "strategies": [
                    {
                        "kind": "ema_cross",
                        "params": {"fast": 5, "slow": 20, "qty": 10, "allow_short": True},
                    }
                ],
            },
            Config,
        )
        clock = ManualClock(bars[0].ts_event)
        app = App(config, clock=clock, feeds=False)
        seen: Mailbox[Any] = Mailbox("demo", 1_000_000)
        app.bus.subscribe(seen, OrderUpdate)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            for bar in bars:  # lockstep: each bar's consequences settle before the next
                clock.set(max(clock.now_ns(), bar.ts_event))
                await app.bus.publish_many([bar])
                await app.drained()
            app.stop()
        elapsed = time.perf_counter() - started
        updates: list[OrderUpdate] = []
        while len(seen):
            updates += await seen.receive_batch(1_000_000)
        fills = [u for u in updates if u.event == "fill"]
        assert isinstance(app.broker, SimBroker)
        venue = await app.broker.positions()
        portfolio = app.portfolio
        local = {s: q for s in ("AAPL", "MSFT", "NVDA") if (q := portfolio.position(s))}
        agree = venue == local and len(fills) > 0
        fees = app.broker.stats.fees
        out(
            f"trading: {len(bars)} bars through ema_cross(5, 20) -> risk -> sim broker in "
            f"{elapsed:.2f} s: {app.host.intents} intents, {app.broker_actor.sent} orders, "
            f"{len(fills)} fills, {sum(app.risk.denied.values())} denied {dict(app.risk.denied)}"
        )
        for fill in fills[:3]:
            order = fill.order
            out(f"    fill {order.side} {fill.qty} {order.symbol} at {fill.price}")
        out(
            f"trading: positions {dict(sorted((s, str(q)) for s, q in local.items()))}, "
            f"realised {portfolio.realized():.2f}, unrealised {portfolio.unrealized():.2f}, "
            f"fees {fees:.2f}, net {portfolio.pnl() - fees:.2f}; books "
            f"{'agree' if agree else 'DISAGREE'}"
        )
        return 0 if agree else 1
