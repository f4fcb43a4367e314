"""The numba decorators every indicator kernel uses, so they all compile the same way.

``fastmath={"contract"}`` lets LLVM fuse ``a * b + c`` into one FMA, which is what TA-Lib's own
build does: with it the simple recurrences (EMA, Wilder smoothing) match TA-Lib bit for bit, and
without it they differ in the last bit. No other fast-math flag is on: NaN must behave as in TA-Lib.

Compiled code is cached on disk (``cache=True``) under ``$NUMBA_CACHE_DIR`` (the systemd unit
points it at ``CacheDirectory=``), else ``$XDG_CACHE_HOME`` or ``~/.cache``, in a ``tickd-<digest>``
folder. numba invalidates a cached function only when its own file changes, but the bank inlines
steps from every kernel module: the digest of all the kernel sources in the folder name makes any
change to any of them start from an empty cache instead of running stale machine code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, TypeVar

import numba
import numba.core.config
from numba.core import sigutils, types
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

F = TypeVar("F")

_OPTIONS: dict[str, Any] = {
    "cache": True,
    "nogil": True,
    "fastmath": {"contract"},
    "error_model": "numpy",
    "boundscheck": False,
}
_STEP_OPTIONS: dict[str, Any] = {
    **_OPTIONS,
    "forceinline": True,
    "no_cpython_wrapper": True,  # see step()
    "no_cfunc_wrapper": True,
    "_nrt": False,  # see step()
}


def _sources_digest() -> str:
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """Where this version of the kernels keeps its compiled code."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numba"
    )
    return Path(base) / f"tickd-{_DIGEST}"


_DIGEST = _sources_digest()


def _compile(func: Any, *signature: str, **options: Any) -> Any:
    # numba picks a function's cache folder when it is decorated: point it at ours just then.
    saved = numba.core.config.CACHE_DIR
    numba.core.config.CACHE_DIR = str(cache_dir())
    try:
        return numba.njit(*signature, **options)(func)
    finally:
        numba.core.config.CACHE_DIR = saved


def kernel(func: F) -> F:
    """Compile a batch kernel: arrays in, preallocated arrays out, no large allocation inside."""
    return _compile(func, **_OPTIONS)  # type: ignore[no-any-return]


class LaneKernel(CPUDispatcher):  # type: ignore[misc]
    """A batch kernel compiled with LLVM's SLP vectorizer, which numba leaves off (numba#8852:
    it miscompiled some code). Lanes written out by hand in straight-line code (eight
    accumulators, eight loads from consecutive slots) become one vector register only with it:
    LLVM's loop vectorizer handles loops, not a row of statements. The setting is numba's global
    one, so it is switched on for this compile only, under numba's compiler lock (re-entrant:
    the compile takes it again); the cache keeps the vectorized code."""

    def compile(self, sig: Any) -> Any:
        with global_compiler_lock:
            saved = numba.core.config.SLP_VECTORIZE
            numba.core.config.SLP_VECTORIZE = 1
            try:
                return super().compile(sig)
            finally:
                numba.core.config.SLP_VECTORIZE = saved


class InlineOnly(CPUDispatcher):  # type: ignore[misc]
    """A step's dispatcher: compiled without a CPython entry point, so Python may not call it.

    numba would otherwise compile it on a Python call and jump into the missing wrapper."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.py_func.__qualname__} is a compiled step: call it from a kernel")

    def compile(self, sig: Any) -> Any:
        # A constant argument reaches a step as a literal type (``Literal[int](0)``), and numba
        # compiles a step once per literal: ``sma_next`` four times, ``_stoch_update`` twice
        # (0.2 s). Steps are inlined by LLVM, which folds the constant anyway, so one compile
        # per plain type does.
        args, _ = sigutils.normalize_signature(sig)
        return super().compile(tuple(types.unliteral(a) for a in args))


def lane_kernel(func: F) -> F:
    """:func:`kernel` for a kernel that lays out vector lanes by hand (see :class:`LaneKernel`);
    the bit-for-bit tests against TA-Lib are what vouch for the vectorizer's code."""
    dispatcher = _compile(func, **_OPTIONS)
    dispatcher.__class__ = LaneKernel
    return dispatcher  # type: ignore[no-any-return]


def step(func: F) -> F:
    """Compile a streaming step or a scalar helper: one event into a state slice.

    Steps are compiled once each and marked for LLVM to always inline into their callers (the
    bank's generated loop, the batch kernels). Without the mark a call between two compiled
    functions goes through numba's status-returning ABI and costs about 10 ns an indicator per
    event in the bank, 5x the update itself; numba's own IR-level inlining gives the same machine
    code but re-types every step inside every caller, which made compiling the catalog take
    minutes instead of seconds. Steps run without numba's reference counting (NRT): they allocate
    nothing, and with it on, every step increments and decrements the count of the state array
    it is passed, with atomic instructions LLVM cannot remove once the step has branches. On an
    Intel Xeon that was 20-60 ns an event for TEMA, WMA, STDDEV, KAMA, ADX and STOCH in the bank
    (116 ns an event for the 8 of the benchmark, 42 without). Steps get no CPython wrapper
    (nothing in Python calls them, and building ~100 wrappers was a tenth of a cold compile):
    :class:`InlineOnly` refuses a call from Python."""
    dispatcher = _compile(func, **_STEP_OPTIONS)
    dispatcher.__class__ = InlineOnly
    return dispatcher  # type: ignore[no-any-return]


def compiled(signature: str, **options: Any) -> Any:
    """Eagerly compile an entry point called from Python with ``signature``: any other argument
    types are a ``TypeError`` rather than a silent new compile."""
    return lambda func: _compile(func, signature, **{**_OPTIONS, **options})


class FirstCall(CPUDispatcher):  # type: ignore[misc]
    """An entry point with one declared signature, compiled (or loaded from the cache) when its
    owner is built or on its first call. numba compiles a declared signature when the module is
    imported: every process importing the indicators, warm-up workers included, paid for kernels
    it might never call."""

    declared: str

    def ready(self) -> None:
        """Compile the declared signature now, and refuse any other argument types from then on
        (numba's ``TypeError``) rather than compile them."""
        if self._can_compile:
            self.compile(self.declared)
            self.disable_compile()

    def _compile_for_args(self, *args: Any, **kws: Any) -> Any:
        # numba comes here for argument types no compiled version takes and calls what this
        # returns: the dispatcher again, which now runs the declared signature or raises.
        self.ready()
        return self


def on_first_call(signature: str, **options: Any) -> Any:
    """:func:`compiled`, but compiled by :meth:`FirstCall.ready` or the first call instead of at
    import."""

    def decorate(func: F) -> F:
        dispatcher = _compile(func, **{**_OPTIONS, **options})
        dispatcher.__class__ = FirstCall
        dispatcher.declared = signature
        return dispatcher  # type: ignore[no-any-return]

    return decorate
