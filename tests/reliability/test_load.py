"""Overload and soak (bench/reliability/load.py) at CI size: the daemon's graph in this process,
the market from a frame writer in its own process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from bench.harness import Row
from bench.reliability import load

pytestmark = pytest.mark.anyio

Figures = Callable[[Iterable[Row]], None]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the scenarios count asyncio tasks


def _value(rows: list[Row], prefix: str) -> float:
    (row,) = [r for r in rows if r.metric.startswith(prefix)]
    return row.value


async def test_a_burst_of_ten_times_the_sustainable_rate_conflates_quotes_and_loses_nothing_else(
    figures: Figures,
) -> None:
    rows = await load.overload(quick=True)
    figures(rows)
    assert _value(rows, "overload: connections") == 1
    assert _value(rows, "overload: quotes conflated") > 0
    assert {r.metric for r in rows} >= {
        "overload: high-water of the strategies mailbox",
        "overload: high-water of the alpaca.stocks.raw mailbox",
    }


async def test_conflation_off_the_same_burst_gets_the_daemon_dropped_as_a_slow_client() -> None:
    """The control: the burst is a real overload. With every quote held (the host's mailbox
    as it was, blocking), the strategy falls behind, the daemon stops reading its socket in
    time and the writer drops it as a slow client: what it had not read is lost, trades too,
    and the reconnect gets nothing again (a market is not replayed)."""
    rate = 3_000  # msg/s: about what the first test measures as sustainable
    with load._writer() as writer:
        schedule = load.Schedule(((rate, 1.0), (10 * rate, 4.0)))
        probe = load.QuoteProbe(load.SYMBOLS, load.QUOTE_COST, load.ORDER_EVERY)
        run = await load._run(writer, schedule, probe, conflate=False)
    written = run.written
    assert written is not None and written.dropped
    assert written.backlog > load.SLOW_CLIENT
    assert run.connects == 2  # dropped once, reconnected, and not dropped again
    assert run.quotes_conflated == 0
    assert run.frames_read < written.frames  # frames written that never reached the daemon
    _, kinds = load.templates()
    trades_written = sum(kinds[i % load.TEMPLATES]["Trade"] for i in range(written.frames))
    assert run.trades_banked < trades_written  # the slow client's unread frames are lost


async def test_a_soak_with_random_disconnects_holds_memory_tasks_and_descriptors(
    figures: Figures,
) -> None:
    rows = await load.soak(seconds=30.0, warm_up=10.0, slope_limit=load.QUICK_SLOPE_LIMIT)
    figures(rows)
    assert _value(rows, "soak: reconnects") >= 1
