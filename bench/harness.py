"""The benchmark harness: registry, interleaved timing, table printer, JSON writer.

A benchmark is a module in this package that registers a function with :func:`benchmark`. The
function gets a :class:`Config` and returns a :class:`Report` (rows plus notes). Peers are timed
with :func:`compare`, which interleaves the candidates round by round so that the noise of a shared
machine hits all of them alike; only ratios measured that way are worth reporting.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "REGISTRY",
    "Benchmark",
    "Config",
    "Report",
    "Row",
    "Target",
    "Timing",
    "at_most",
    "benchmark",
    "compare",
    "discover",
    "faster_by",
    "format_table",
    "machine_info",
    "write_json",
]

_NOT_BENCHMARKS = frozenset({"harness", "__main__"})


# --- configuration and results -------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How hard to measure. ``quick`` is the seconds-long CI smoke run."""

    quick: bool = False
    rounds: int = 41
    sample_ns: int = 30_000_000  # aim for one sample (one timed inner loop) of ~30 ms
    tracing: bool = False  # pipeline: tracing on against off, instead of the peers

    @classmethod
    def make(cls, quick: bool, rounds: int | None = None, tracing: bool = False) -> Config:
        if quick:
            return cls(quick=True, rounds=rounds or 5, sample_ns=3_000_000, tracing=tracing)
        return cls(quick=False, rounds=rounds or 41, sample_ns=30_000_000, tracing=tracing)


@dataclass(frozen=True)
class Target:
    """A goal stated as a ratio against a peer.

    ``kind == "at_most"``: ratio = value / peer_value (time relative to the peer), must be <= goal.
    ``kind == "faster_by"``: ratio = peer_value / value (speed-up over the peer), must be >= goal.
    """

    kind: str
    goal: float
    peer: str

    @property
    def text(self) -> str:
        if self.kind == "at_most":
            return f"<= {self.goal:g}x {self.peer}"
        return f">= {self.goal:g}x faster than {self.peer}"

    def ratio(self, value: float, peer_value: float) -> float:
        return value / peer_value if self.kind == "at_most" else peer_value / value

    def met(self, ratio: float) -> bool:
        return ratio <= self.goal if self.kind == "at_most" else ratio >= self.goal


def at_most(goal: float, peer: str) -> Target:
    """Target: this costs at most ``goal`` times what ``peer`` costs (e.g. ``<= 1.0x talib``)."""
    return Target("at_most", goal, peer)


def faster_by(goal: float, peer: str) -> Target:
    """Target: this is at least ``goal`` times faster than ``peer``."""
    return Target("faster_by", goal, peer)


@dataclass
class Row:
    """One line of the table and of the JSON ``rows``."""

    metric: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    ratio_vs_peer: float | None = None
    target: str | None = None
    meets_target: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    packages: tuple[str, ...] = ()  # distributions whose versions go into the machine info

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def measured(self, metric: str, timing: Timing, unit: str = "ns/msg") -> Row:
        """A row for a candidate on its own (no peer)."""
        return self.add(Row(metric, _round(timing.per_item), unit))

    def versus(
        self,
        metric: str,
        timing: Timing,
        peer: str,
        peer_timing: Timing,
        target: Target | None = None,
        unit: str = "ns/msg",
    ) -> Row:
        """A row comparing ``timing`` with ``peer_timing`` (both from the same :func:`compare`).

        The ratio is the median of the per-round ratios (paired, side by side), which is steadier
        on a noisy machine than the ratio of the two medians; it may differ slightly from
        ``value / peer_value``. Without a target the ratio is value / peer_value.
        """
        kind = target or at_most(float("inf"), peer)
        paired = [
            kind.ratio(a, b) for a, b in zip(timing.samples, peer_timing.samples, strict=True)
        ]
        ratio = statistics.median(paired)
        return self.add(
            Row(
                metric=metric,
                value=_round(timing.per_item),
                unit=unit,
                peer=peer,
                peer_value=_round(peer_timing.per_item),
                ratio_vs_peer=round(ratio, 3),
                target=target.text if target else None,
                meets_target=target.met(ratio) if target else None,
            )
        )


def _round(value: float) -> float:
    return round(value, 1) if value >= 10 else round(value, 3)


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    run: Callable[[Config], Report]


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, summary: str) -> Callable[[Callable[[Config], Report]], Any]:
    """Register ``fn(config) -> Report`` as benchmark ``name``."""

    def register(fn: Callable[[Config], Report]) -> Callable[[Config], Report]:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY[name] = Benchmark(name, summary, fn)
        return fn

    return register


def discover() -> dict[str, str]:
    """Import every benchmark module of this package; returns module -> import error, if any."""
    package = importlib.import_module(__package__ or "bench")
    failures: dict[str, str] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name in _NOT_BENCHMARKS or module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{package.__name__}.{module.name}")
        except Exception as exc:
            failures[module.name] = f"{type(exc).__name__}: {exc}"
    return failures


# --- timing -------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Per-call nanoseconds of one candidate, one sample per round (``samples`` in ns/item)."""

    name: str
    loops: int
    items: int
    samples: list[float]

    @property
    def per_item(self) -> float:
        """Median ns per item (per message, per bar...) over the rounds."""
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = 5 %)."""
        if len(self.samples) < 4:
            return 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.per_item


def _sample(fn: Callable[[], object], loops: int) -> int:
    """Time ``loops`` calls with the cycle collector off; returns total ns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        return time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


def _calibrate(fn: Callable[[], object], sample_ns: int) -> int:
    """Inner loop count so one sample takes about ``sample_ns``."""
    loops = 1
    while True:
        elapsed = _sample(fn, loops)
        if elapsed >= sample_ns // 5 or loops >= 1 << 30:
            break
        loops *= 10 if elapsed < sample_ns // 100 else 2
    return max(1, round(loops * sample_ns / max(elapsed, 1)))


def compare(
    candidates: Mapping[str, Callable[[], object]],
    config: Config,
    items: int = 1,
) -> dict[str, Timing]:
    """Time every candidate once per round, interleaved, for ``config.rounds`` rounds.

    Each candidate is a no-argument callable doing one unit of work covering ``items`` items
    (e.g. decoding one frame of 10 messages: ``items=10``). The loop count is picked per candidate
    so one sample takes about ``config.sample_ns``; the cycle collector is off during a sample and
    collected between samples. The start of the round-robin rotates each round so no candidate
    always runs right after the same neighbour. Returns :class:`Timing` per candidate, whose
    ``samples[i]`` all come from round ``i``.
    """
    names = list(candidates)
    for fn in candidates.values():  # warm up (caches, lazy imports, specialisation)
        _sample(fn, 3)
    loops = {name: _calibrate(candidates[name], config.sample_ns) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(config.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            elapsed = _sample(candidates[name], loops[name])
            samples[name].append(elapsed / (loops[name] * items))
    return {name: Timing(name, loops[name], items, samples[name]) for name in names}


# --- output -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def machine_info(packages: Iterable[str] = ()) -> dict[str, Any]:
    """CPU, cores, load, Python, platform, package versions and git revision."""
    versions: dict[str, str | None] = {}
    for name in ("tickd", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_avg": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": versions,
        "git": _git_revision(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def machine_line(machine: Mapping[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return (
        f"{machine['date']} | {machine['cpu']}, {machine['cores']} cores, "
        f"load {'/'.join(map(str, machine['load_avg']))} | {machine['python']} | "
        f"{machine['platform']} | {packages} | git {machine['git']}"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def format_table(name: str, report: Report, machine: Mapping[str, Any]) -> str:
    """The report as a Markdown table (readable in a terminal, pasteable into a README)."""
    header = ["metric", "value", "unit", "peer", "peer value", "ratio", "target", "met"]
    lines = [
        [
            row.metric,
            _fmt(row.value),
            row.unit,
            _fmt(row.peer),
            _fmt(row.peer_value),
            "-" if row.ratio_vs_peer is None else f"{row.ratio_vs_peer:.2f}x",
            _fmt(row.target),
            _fmt(row.meets_target),
        ]
        for row in report.rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    numeric = {1, 4, 5}

    def render(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    out = [f"benchmark: {name}", f"machine: {machine_line(machine)}", "", render(header), rule]
    out += [render(line) for line in lines]
    if report.notes:
        out.append("")
        out += [f"* {note}" for note in report.notes]
    return "\n".join(out)


def write_json(
    path: str | os.PathLike[str], name: str, report: Report, machine: Mapping[str, Any]
) -> None:
    document = {
        "benchmark": name,
        "machine": dict(machine),
        "rows": [asdict(row) for row in report.rows],
        "notes": report.notes,
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def run(
    name: str,
    quick: bool = False,
    json_path: str | None = None,
    rounds: int | None = None,
    tracing: bool = False,
) -> Report:
    """Run one registered benchmark, print its table, optionally write the JSON."""
    bench = REGISTRY[name]
    config = Config.make(quick, rounds, tracing)
    report = bench.run(config)
    machine = machine_info(report.packages)
    print(format_table(name, report, machine))
    sys.stdout.flush()
    if json_path:
        write_json(json_path, name, report, machine)
    return report
