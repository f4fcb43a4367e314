"""Orders under faults: ambiguous submits resolved by client order id (never doubled, never
taken for a rejection), and a daemon killed with orders resting at the venue that restarts,
takes them as working, submits nothing again and applies their later fills once. The same
scenario code as ``python -m bench reliability``, at CI size."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from bench.harness import Row
from bench.reliability import orders


@pytest.mark.anyio
async def test_ambiguous_submits_place_each_intent_exactly_once(
    figures: Callable[[Iterable[Row]], None],
) -> None:
    run = await orders.ambiguous_submits(150)
    figures(run.rows())
    # Every kind of ambiguous answer was met, and each intent is one order at the venue.
    assert set(run.faults) == {"submit_fail", "submit_lost", "submit_throttle",
                               "submit_fail_kept", "submit_timeout"}  # fmt: skip
    assert run.venue_orders == run.intents and run.filled == run.intents
    # The kept ones were found by their id; none was given up on or called a rejection.
    kept = run.faults["submit_fail_kept"] + run.faults["submit_timeout"]
    assert run.broker["found by client order id"] >= kept
    assert run.broker["rejected"] == run.broker["unavailable"] == 0
    assert run.corrected == []


def test_a_daemon_killed_with_open_orders_restores_them_and_submits_nothing_again(
    figures: Callable[[Iterable[Row]], None], tmp_path: Path
) -> None:
    run = orders.restart_trials(tmp_path, 2)
    figures(run.rows())
    assert len(run.ready_seconds) == 2 and run.kills_with_open_orders == 2
    # Orders rested at each kill and the restarted daemon took the ones still open as working.
    assert run.open_at_kills >= 2 and run.restored >= 1
    # The kill switch on the daemon's path: halted with orders open, the stop cancelled them.
    assert run.halted_open >= 1 and run.halted_cancelled >= 1 and run.left_open == 0
