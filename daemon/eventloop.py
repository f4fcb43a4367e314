"""The event loop every ``tickd`` command runs on: uvloop where it is installed (a dependency
wherever it builds, so everywhere but Windows), else asyncio's own.

anyio hides the difference: the code is the same on both. uvloop's loop is compiled, asyncio's
``_run_once`` and callback handles are Python, and the actor graph is made of short hops between
tasks: measured on the 1M-trade replay benchmark, uvloop replays about 6 % faster with the same
decisions (``bench/README.md``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, TypeVarTuple, Unpack

import anyio

__all__ = ["BACKEND_OPTIONS", "run"]

T = TypeVar("T")
Args = TypeVarTuple("Args")

BACKEND_OPTIONS: Final = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def run(func: Callable[[Unpack[Args]], Awaitable[T]], *args: *Args) -> T:
    """``anyio.run(func, *args)`` on the asyncio backend, on uvloop when it is there."""
    return anyio.run(func, *args, backend_options=BACKEND_OPTIONS)
