"""The event loop every ``tickd`` command runs on: uvloop when it is installed, else asyncio's
own. anyio hides the difference: the code is the same on both.

uvloop is not a dependency, because it is faster only for some work. Measured on the Intel Xeon
(2026-11-26):
- the 1M-trade replay, which has no sockets, ran about 6 % faster on it, with the same decisions;
- the live pipeline benchmark did not gain from it. At 900k msg/s it sustained less: every offered
  rate from 900k lost frames, where asyncio's loop kept up to about 860k. At 800k it lost frames
  to the feed's 4096-frame raw queue, which a queue of 16384 (``queue`` in the feed's settings)
  avoided: more frames wait at once, likely because libuv reads more per turn of the loop (not
  measured). The default stays 4096: with 16384, the control of the overload tests (the burst
  that gets a daemon without conflation dropped as a slow client, tests/reliability/test_load.py)
  was not dropped in one CI run.
- The graph's wire-to-strategy latency was the same on both loops.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, TypeVarTuple

import anyio

__all__ = ["BACKEND_OPTIONS", "run"]

T = TypeVar("T")
Args = TypeVarTuple("Args")

BACKEND_OPTIONS: Final = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def run(func: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """``anyio.run(func, *args)`` on the asyncio backend, on uvloop when it is installed."""
    return anyio.run(func, *args, backend_options=BACKEND_OPTIONS)
