"""The kill switch through the operator's path: ``tickd halt``/``reduce``/``resume`` write the
command file, the daemon's watcher applies it, risk decides, the broker places at the fake
venue. HALTED denies every new order from the next intent on; REDUCING lets through only orders
that shrink a position. (Cancels while halted go through the daemon's own stop: see the restart
scenario in ``test_orders.py``, where a halted ``tickd run`` with on_stop = "cancel" is stopped.)"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from bench.harness import Row
from bench.reliability import orders

pytestmark = pytest.mark.anyio


async def test_halt_denies_new_orders_and_reducing_lets_only_reductions_through(
    figures: Callable[[Iterable[Row]], None], tmp_path: Path
) -> None:
    run = await orders.kill_switch(tmp_path, rounds=10)
    figures(run.rows())
    assert run.denied_after_halt == 10 + 1  # the first denial, then every one after it
    assert run.reducing_passed == run.reducing_sent == 10
    assert run.increasing_denied == run.increasing_sent == 12  # 10, and 2 crossing zero
    assert run.resumed
    assert '"state": "active"' in (tmp_path / "risk.json").read_text()
