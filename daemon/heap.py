"""The cycle collector, once the daemon is ready: collect, then freeze the start-up heap.

Start-up (imports, numba compiling the kernels, config, warm-up) leaves about 200,000 live
objects and a good deal of cyclic garbage that no automatic full collection comes back for: a
streaming daemon allocates and frees in step, so the collector's counters barely move. The run
itself makes cyclic garbage at every lost connection (the connection, its protocol and tasks,
exception groups and their tracebacks: a few hundred objects), collected in the young
generations every few minutes. Measured in the reliability soak (10 min at 20k msg/s, ~120
reconnects, ``bench/reliability/load.py``): the resident memory grew 54-83 kB/min after the
warm-up in runs without this, 10 kB/min with it. The likely reason, not proven: without it each
round of that garbage took fresh memory pages, where the start-up garbage collected once ready
leaves free blocks in pages already resident for it to reuse.

Freezing (``gc.freeze``) also takes the start-up heap out of every later collection's scan.
Frozen objects are still freed by reference counting; only a cycle among them would stay.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, freeze what is alive, and collect once more (the
    oldest generation, now empty, sets the bar for the next full collection from nothing);
    the number of objects frozen."""
    gc.collect()
    gc.freeze()
    gc.collect()
    return gc.get_freeze_count()
