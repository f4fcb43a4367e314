"""Compile every kernel up front (or load it from numba's on-disk cache).

``python -m tickd.strategies.indicators.warmup [--streams]`` fills the cache from the command line
(the tests do this in a process coverage does not trace: tracing numba's compiler, which is
Python, makes compiling several times slower) and ``python -m bench kernels`` times
:func:`compile_all` cold and cached. The daemon itself compiles only its own bank, when it builds
it, before it reports ready.

numba compiles under a process-wide lock, so a cold cache is filled by several processes: each
compiles a share of the batch kernels into a private cache folder, the private folders are merged
into the real one, and this process then loads what the others compiled. The processes do not
share one folder while they compile because numba's cache index is read, extended and rewritten
without a lock: two processes saving different signatures of one helper at once could leave an
index that points a signature at the other's machine code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tickd.strategies.indicators.bank import CATALOG, Bank, Spec
from tickd.strategies.indicators.bars import BarBank
from tickd.strategies.indicators.jit import cache_dir
from tickd.strategies.indicators.streaming import Stream

_MODULE = "tickd.strategies.indicators.warmup"
_N = 64
_CLOSE = 100.0 + np.sin(np.arange(_N) / 5.0)
_FIELDS = {
    "high": _CLOSE + 1.0,
    "low": _CLOSE - 1.0,
    "close": _CLOSE,
    "volume": np.full(_N, 1000.0),
    "session": np.repeat([0.0, 1.0], _N // 2),
}


def compile_batch(names: Iterable[str]) -> None:
    """Run the batch kernels of ``names`` once, with the argument types the public functions
    pass."""
    for name in names:
        indicator = CATALOG[name]
        indicator.batch(*(_FIELDS[field] for field in indicator.inputs))


def compile_bank(specs: Iterable[Spec]) -> None:
    """Build and run the bank loop for ``specs`` and the bar kernel."""
    bank = Bank(specs, symbols=1, capacity=_N)
    events = Bank.events(_N)
    events[:, 1:] = np.column_stack(
        [_FIELDS[f] for f in ("high", "low", "close", "volume")] + [_FIELDS["session"]]
    )
    bank.update(events)
    bars = BarBank(1)
    bars.update(*BarBank.trades(1))
    bars.flush(0)


def compile_all(specs: Iterable[Spec] | None = None, *, jobs: int | None = None) -> float:
    """Compile (or load) every batch kernel, the bank loop for ``specs`` (default: every
    indicator, in catalog order) and the bar kernel; return the seconds it took.

    ``jobs`` is how many processes share the compiling; the default is every usable core until
    this version of the kernels has been compiled here once, then 1 (loading from the cache is
    faster than starting a process)."""
    start = time.perf_counter()
    names = list(CATALOG)
    bank = [Spec(name) for name in CATALOG] if specs is None else list(specs)
    done = cache_dir() / "catalog-compiled"
    if jobs is None:
        jobs = 1 if done.exists() else usable_cores()
    shared = False
    if jobs > 1:
        try:
            compile_shared(names, bank, jobs)  # the bank included
            shared = True
        except OSError as exc:  # no writable cache folder or no process: compile here alone
            warnings.warn(f"kernel warm-up in one process: {exc}", stacklevel=2)
    if not shared:
        compile_bank(bank)
    compile_batch(names)  # loads what the other processes compiled, compiles what they did not
    with contextlib.suppress(OSError):  # a read-only cache (numba warns): no marker, no harm
        done.touch()
    return time.perf_counter() - start


def compile_shared(names: Sequence[str], specs: Sequence[Spec], jobs: int) -> int:
    """Compile the bank for ``specs`` here while ``jobs - 1`` worker processes and this one take
    the batch kernels of ``names`` from one queue, then merge the workers' caches into ours;
    return how many functions' cache entries the workers added."""
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in names:
        todo.put(name)
    merged = 0
    with tempfile.TemporaryDirectory(prefix=".warmup-", dir=base.parent) as private:
        workers = [_Worker(Path(private, str(i)), todo) for i in range(1, jobs)]
        try:
            compile_bank(specs)  # the largest item: started while the workers import numba
            while (name := _next(todo)) is not None:
                compile_batch([name])
        except BaseException:
            for worker in workers:
                worker.process.kill()
            raise
        for worker in workers:
            code = worker.finish()
            if code == 0:
                merged += merge_cache(worker.cache / base.name, base)
            else:  # what it was given is compiled again by compile_all's last pass
                warnings.warn(f"kernel warm-up worker exited with {code}", stacklevel=2)
    return merged


class _Worker:
    """A child process compiling batch kernels into its own cache folder, fed one name at a
    time by a thread of ours (the thread mostly waits on the pipe, off the GIL)."""

    def __init__(self, cache: Path, todo: queue.SimpleQueue[str]) -> None:
        self.cache = cache
        self.process = subprocess.Popen(
            [sys.executable, "-m", _MODULE, "--serve"],
            env={**os.environ, "NUMBA_CACHE_DIR": str(cache)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.thread = threading.Thread(target=self._feed, args=(todo,), daemon=True)
        self.thread.start()

    def _feed(self, todo: queue.SimpleQueue[str]) -> None:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            while (name := _next(todo)) is not None:
                stdin.write(name + "\n")
                stdin.flush()
                if stdout.readline().strip() != name:
                    return  # the worker died: compile_all's last pass compiles what it missed
        except OSError:  # a broken pipe: the same
            return
        finally:
            with contextlib.suppress(OSError):  # closing flushes: the pipe may be broken too
                stdin.close()

    def finish(self) -> int:
        """Wait for the worker; its exit code (only a clean exit's cache is merged)."""
        self.thread.join()
        return self.process.wait()


def _next(todo: queue.SimpleQueue[str]) -> str | None:
    try:
        return todo.get_nowait()
    except queue.Empty:
        return None


def _serve() -> None:
    """A worker: compile the batch kernel named on each line of stdin, echo the name when done."""
    for line in sys.stdin:
        name = line.strip()
        compile_batch([name])
        print(name, flush=True)
    # Everything is in the cache files by now (numba writes them as it compiles). Skip the
    # interpreter's teardown of numba and LLVM: 0.16 s that the warm-up would wait for.
    os._exit(0)


def merge_cache(source: Path, target: Path) -> int:
    """Move every function's cache entry (its index and data files) from ``source`` into
    ``target`` where ``target`` has none for that function; return how many moved.

    A function ``target`` already holds (a helper compiled in two processes) keeps its own
    entry: mixing two processes' data files under one index is exactly what must not happen.
    The data files move first and the index last, so a reader never finds an index without its
    data."""
    moved = 0
    for index in sorted(source.rglob("*.nbi")):
        folder = target / index.parent.relative_to(source)
        if (folder / index.name).exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        stem = index.name.removesuffix("nbi")  # "mod.func-12.py311." + "1.nbc"
        for data in index.parent.glob(f"{stem}*.nbc"):
            shutil.move(data, folder / data.name)
        shutil.move(index, folder / index.name)
        moved += 1
    return moved


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def compile_streams() -> float:
    """Build the one-indicator bank loop every :class:`Stream` runs; return the seconds."""
    start = time.perf_counter()
    for name in CATALOG:
        Stream(name).update(100.0, high=101.0, low=99.0, volume=1000.0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", action="store_true", help="also every Stream's bank loop")
    parser.add_argument("--jobs", type=int, help="processes for a cold cache (default: cores)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a worker
    args = parser.parse_args(argv)
    if args.serve:
        _serve()
        return
    seconds = compile_all(jobs=args.jobs)
    if args.streams:
        seconds += compile_streams()
    print(f"kernels ready in {seconds:.1f} s")


if __name__ == "__main__":
    main()
