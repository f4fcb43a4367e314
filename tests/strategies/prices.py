"""Every real price file in tests/data/prices (copied from ../shared/data, see its SOURCES.md)
as OHLCV arrays, whatever the file's format quirks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tickd.codecs.synthetic.market import Ohlcv

ROOT = Path(__file__).parents[1] / "data" / "prices"


def _column(
    rows: list[dict[str, str]], *names: str, blank: float | None = None
) -> np.ndarray | None:
    """The first of ``names`` present in every row (blanks read as ``blank`` when it is given)."""
    for name in names:
        if name not in rows[0]:
            continue
        cells = [r[name] for r in rows]
        if blank is None and any(c in ("", None) for c in cells):
            continue
        return np.array([blank if c in ("", None) else float(c) for c in cells])
    return None


def _from_rows(rows: list[dict[str, str]]) -> Ohlcv | None:
    close = _column(rows, "Close", "close")
    if close is None:
        return None
    high = _column(rows, "High", "high")
    low = _column(rows, "Low", "low")
    open_ = _column(rows, "Open", "open")
    volume = _column(rows, "Volume", "volume", blank=0.0)
    high = close.copy() if high is None else high
    low = close.copy() if low is None else low
    open_ = close.copy() if open_ is None else open_
    volume = np.zeros_like(close) if volume is None else volume
    return Ohlcv(open_, high, low, close, volume)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    width = len(lines[1].split(","))
    if width == len(header) + 1 and header[:2] == ["Date", "Open"]:
        # backtrader's 1-minute file: the header lacks the Time column its rows have.
        header = ["Date", "Time", *header[1:]]
    return list(csv.DictReader(lines[1:], fieldnames=header))


def load(path: Path) -> Ohlcv | None:
    """OHLCV of one file (missing high/low default to close, missing volume to 0), or None if
    the file holds no price series (e.g. a table of expected values)."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
        return _from_rows([{k: str(v) for k, v in r.items()} for r in rows])
    if path.name.endswith(".expected.csv"):
        return None
    return _from_rows(_read_csv(path))


def real_files() -> list[Path]:
    """Every price file, sorted, for parametrized tests."""
    return sorted(
        p for p in ROOT.rglob("*") if p.suffix in (".csv", ".txt", ".json") and load(p) is not None
    )
