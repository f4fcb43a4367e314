"""Feed faults against the fake exchange on loopback (``bench/reliability/feeds.py``): the
exchange killed and restarted, a half-open connection, malformed frames and payloads."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from bench.harness import Row
from bench.reliability import feeds

pytestmark = pytest.mark.anyio
Figures = Callable[[Iterable[Row]], None]


def value(rows: list[Row], metric: str) -> float:
    (row,) = [r for r in rows if r.metric.endswith(metric)]
    return row.value


async def test_a_killed_exchange_is_back_in_data_fast_with_every_gap_reported_and_filled(
    figures: Figures,
) -> None:
    rows = await feeds.restarts(20, (0.2, 0.8))
    figures(rows)
    assert value(rows, "minute bars expected") >= 20  # bars were made across the outages...
    assert value(rows, "minute bars backfilled") > 0  # ... and some only reached us by REST
    assert value(rows, "reconnect attempts per outage, max") >= 2  # the port really was shut
    assert value(rows, "gap reports / outages") == 1.0  # no double report hiding a missed one


async def test_a_half_open_connection_is_found_and_left_within_ten_seconds(
    figures: Figures,
) -> None:
    rows = await feeds.half_open(3)
    figures(rows)
    assert value(rows, "stall -> given up, p50") > 1.0  # found by the keepalive, not a close
    assert value(rows, "stall -> reconnected, max of 3") >= value(
        rows, "stall -> given up, max of 3"
    )


async def test_every_malformed_frame_is_counted_and_the_feed_lives_on(figures: Figures) -> None:
    rows = await feeds.malformed(3)
    figures(rows)
    injected = [r for r in rows if r.metric.endswith("frames injected")]
    assert len(injected) == len(feeds.KINDS)
    assert all(r.value >= 6 for r in injected)  # per_kind into each of the two feeds
