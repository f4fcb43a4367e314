"""Freezing the start-up heap: what was alive leaves the collector's generations, what the run
makes afterwards is still collected, cycles included."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tickd.daemon.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def frozen() -> Iterator[int]:
    count = freeze_startup_heap()
    yield count
    gc.unfreeze()  # the rest of the test run collects as usual


def test_the_startup_heap_leaves_every_generation(frozen: int) -> None:
    assert frozen > 1000  # this process's modules at least
    assert gc.get_count()[2] == 0 and not gc.get_objects(generation=2)


def test_a_cycle_made_after_the_freeze_is_still_collected(frozen: int) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert gone() is None


def test_a_frozen_object_is_still_freed_by_its_last_reference() -> None:
    kept = Node()
    gone = weakref.ref(kept)
    freeze_startup_heap()
    try:
        del kept
        assert gone() is None
    finally:
        gc.unfreeze()
