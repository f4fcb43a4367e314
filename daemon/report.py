"""The replay report: a JSON file to diff and one self-contained HTML page to look at.

``tickd replay`` and ``tickd demo`` collect a :class:`ReportData` and call :func:`write_report`.
The page draws its charts as inline SVG written here: no plotting library is installed, and the
page must open offline (no scripts, no fonts, no network; its own CSP forbids them). Long series
are cut to the extremes of each pixel column (:func:`downsample`), so a million-event tape draws
the same picture in a page of a few hundred kilobytes. NaN (an indicator's warm-up) breaks a line
rather than drawing it to zero. All panels share one time axis, so a trade lines up with the
equity step it caused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path, PurePath
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = [
    "COLUMNS",
    "MAX_MARKERS",
    "ReportData",
    "ReportError",
    "SymbolSeries",
    "Trade",
    "downsample",
    "write_report",
]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    ts_ns: int
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    price: float
    strategy: str = ""


class SymbolSeries(msgspec.Struct, kw_only=True):
    ts_ns: list[int]  # event times (bars or trades), ascending
    close: list[float]  # the price line
    indicators: dict[str, list[float]]  # same length as close, NaN during warm-up


class ReportData(msgspec.Struct, kw_only=True):
    title: str
    summary: dict[str, Any]  # JSON-able: counts, PnL, digest, latency percentiles per stage ...
    symbols: dict[str, SymbolSeries]
    trades: list[Trade]
    equity: list[tuple[int, float]]  # (ts_ns, realised + unrealised - fees), ascending


class ReportError(ValueError):
    """The data breaks the contract above; ``where`` names the part (``symbols['AAPL'].ts_ns``)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


WIDTH = 960
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 14, 12, 26
COLUMNS = WIDTH - _LEFT - _RIGHT  # pixel columns of a plot: the downsampling resolution
PRICE_HEIGHT, EQUITY_HEIGHT = 280, 180
# Per panel; past it the trades of one side in a slot of a few pixels share a marker (and say so).
MAX_MARKERS = 1000
_SLOT = -(-2 * COLUMNS // MAX_MARKERS)  # pixels: two sides per slot stay within MAX_MARKERS
_CLOSE_COLOUR, _EQUITY_COLOUR = "#222222", "#1f4e99"
_SIDE_COLOURS = {"buy": "#1a9850", "sell": "#d73027"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_SECOND = 1_000_000_000
_DAY = 86_400 * _SECOND
_TIME_STEPS = tuple(
    [m * 10**e for e in range(9) for m in (1, 2, 5)]
    + [s * _SECOND for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800)]
    + [h * 3600 * _SECOND for h in (1, 2, 3, 6, 12)]
    + [d * _DAY for d in (1, 2, 7, 14, 28, 91, 182, 364)]
)


def write_report(
    data: ReportData, directory: str | os.PathLike[str], *, stem: str = "report"
) -> tuple[Path, Path]:
    """Write ``{stem}.json`` and ``{stem}.html`` into ``directory`` (created if missing) and
    return their paths. Each file is replaced whole, so a reader never sees half a report.
    Raises :class:`ReportError` when the data breaks the contract, before writing anything."""
    panels = _panels(data)
    equity = _equity_series(data.equity)
    document = _json_document(data)
    page = _page(data, panels, equity).encode()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{stem}.json", folder / f"{stem}.html"
    for path, content in zip(paths, (document, page), strict=True):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        partial.replace(path)
    return paths


def downsample(ts_ns: Ints, values: Floats, t0: int, t1: int, columns: int) -> list[Indices]:
    """The samples worth drawing, as runs of indices to join with lines.

    Time ``t0..t1`` is cut into ``columns`` pixel columns; each keeps its lowest and highest
    finite sample, in time order, so a line through them shows every extreme and at most
    ``2 * columns`` points. A column of NaN only, or NaN at a column's start or end, breaks the
    run; NaN inside a column is narrower than a pixel and is not drawn."""
    n = len(values)
    if n == 0:
        return []
    offset = (ts_ns - t0).astype(np.float64) * (columns / max(t1 - t0, 1))
    column = np.clip(offset.astype(np.int64), 0, columns - 1)
    finite = np.isfinite(values)
    starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
    ends = np.r_[starts[1:], n]
    low = np.where(finite, values, np.inf)
    high = np.where(finite, values, -np.inf)
    lows = np.minimum.reduceat(low, starts)
    highs = np.maximum.reduceat(high, starts)
    index = np.arange(n)
    counts = ends - starts
    at_low = np.minimum.reduceat(np.where(low == np.repeat(lows, counts), index, n), starts)
    at_high = np.minimum.reduceat(np.where(high == np.repeat(highs, counts), index, n), starts)
    runs: list[list[int]] = [[]]
    for c, (a, b) in enumerate(zip(at_low.tolist(), at_high.tolist(), strict=True)):
        drawn = math.isfinite(lows[c])
        if runs[-1] and not (drawn and finite[starts[c]]):
            runs.append([])
        if drawn:
            runs[-1].extend(sorted({a, b}))
            if not finite[ends[c] - 1]:
                runs.append([])
    return [np.asarray(run, dtype=np.intp) for run in runs if run]


@dataclass(frozen=True, slots=True)
class _Line:
    name: str
    colour: str
    ts_ns: Ints
    values: Floats


@dataclass(frozen=True, slots=True)
class _Panel:
    symbol: str
    lines: list[_Line]  # the close first, then the indicators
    trades: list[Trade]


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where a panel's time and values land in its SVG viewBox."""

    height: int
    t0: int
    t1: int
    lo: float
    hi: float

    def x(self, ts_ns: Ints) -> Floats:
        scale = COLUMNS / max(self.t1 - self.t0, 1)
        return _LEFT + (ts_ns - self.t0).astype(np.float64) * scale

    def y(self, values: Floats) -> Floats:
        bottom = self.height - _BOTTOM
        return bottom - (values - self.lo) * ((bottom - _TOP) / (self.hi - self.lo))


def _ints(values: Sequence[int], where: str) -> Ints:
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    back = np.flatnonzero(np.diff(array) < 0)
    if back.size:
        raise ReportError(f"times go back at index {int(back[0]) + 1}", where)
    return array


def _panels(data: ReportData) -> list[_Panel]:
    trades: dict[str, list[Trade]] = {}
    for trade in data.trades:
        trades.setdefault(trade.symbol, []).append(trade)
    panels = []
    for symbol, series in data.symbols.items():
        where = f"symbols[{symbol!r}]"
        ts_ns = _ints(series.ts_ns, f"{where}.ts_ns")
        named = [("close", _CLOSE_COLOUR, series.close)] + [
            (name, _PALETTE[i % len(_PALETTE)], values)
            for i, (name, values) in enumerate(series.indicators.items())
        ]
        lines = []
        for name, colour, values in named:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
            if len(array) != len(ts_ns):
                raise ReportError(f"{len(array)} values for {len(ts_ns)} times", f"{where}.{name}")
            lines.append(_Line(name, colour, ts_ns, array))
        # Indicators on another scale than the price (RSI, ATR, volume) get a panel of their
        # own below it: on the price's axis they would flatten it.
        price, others = lines[:1], list[_Line]()
        for line in lines[1:]:
            (price if _on_price_scale(line.values, lines[0].values) else others).append(line)
        panels.append(_Panel(symbol, price, trades.pop(symbol, [])))
        if others:
            panels.append(_Panel(f"{symbol} · indicators on their own scale", others, []))
    # Trades of a symbol with no series still get a panel: nothing traded goes unseen.
    panels.extend(_Panel(symbol, [], traded) for symbol, traded in trades.items())
    return panels


def _on_price_scale(values: Floats, close: Floats) -> bool:
    """The indicator's typical value is within a factor of two of the price's."""
    mine, price = values[np.isfinite(values)], close[np.isfinite(close)]
    if not mine.size or not price.size:
        return True
    level, typical = float(np.median(np.abs(price))), float(np.median(np.abs(mine)))
    return level == 0.0 or 0.5 <= typical / level <= 2.0


def _equity_series(equity: list[tuple[int, float]]) -> _Line:
    ts_ns = _ints([ts for ts, _ in equity], "equity")
    values = np.fromiter((value for _, value in equity), dtype=np.float64, count=len(equity))
    return _Line("equity", _EQUITY_COLOUR, ts_ns, values)


def _json_document(data: ReportData) -> bytes:
    """The summary indented; one line per trade and per equity point, so two runs diff well."""
    encoder = msgspec.json.Encoder(enc_hook=_json_value)
    try:
        summary = msgspec.json.format(encoder.encode(data.summary), indent=2)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"not JSON-able: {exc}", "summary") from exc
    # Equity points are numbers only, so the encoded list can be split at "],[" (fast, safe).
    equity = encoder.encode(data.equity).replace(b"],[", b"],\n    [")
    parts = [
        b'{\n  "title": ' + encoder.encode(data.title),
        b'  "summary": ' + summary.replace(b"\n", b"\n  "),
        b'  "trades": ' + _json_lines([encoder.encode(t) for t in data.trades]),
        b'  "equity": ' + (b"[\n    " + equity[1:-1] + b"\n  ]" if data.equity else b"[]"),
    ]
    return b",\n".join(parts) + b"\n}\n"


def _json_lines(items: list[bytes]) -> bytes:
    return b"[\n    " + b",\n    ".join(items) + b"\n  ]" if items else b"[]"


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays and paths, which a summary easily holds, as plain JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"a {type(value).__name__} has no JSON form")


def _page(data: ReportData, panels: list[_Panel], equity: _Line) -> str:
    edges = [line.ts_ns[[0, -1]] for p in panels for line in p.lines[:1] if len(line.ts_ns)]
    edges += [np.asarray([t.ts_ns for t in data.trades], dtype=np.int64)]
    edges += [equity.ts_ns[[0, -1]]] if len(equity.ts_ns) else []
    times = np.concatenate(edges)
    t0, t1 = (int(times.min()), int(times.max())) if times.size else (0, 0)
    if t0 == t1:
        t0, t1 = t0 - _SECOND, t1 + _SECOND
    title = escape(data.title)
    body = [
        f"<h1>{title}</h1>",
        f'<p class="caption">times UTC, {_utc(t0)} to {_utc(t1)}</p>',
        _summary_html(data.summary),
        *(_panel_html(panel, t0, t1) for panel in panels),
        _equity_html(equity, t0, t1),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1000px;margin:2em auto;padding:0 8px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 2px}
table{border-collapse:collapse;margin:12px 0}caption{text-align:left;font-weight:600}
th,td{padding:2px 12px 2px 0;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
td{font-variant-numeric:tabular-nums}.caption{color:#555;margin:0}
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:2px 18px}
.swatch{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:6px}
.mark{margin-right:6px}svg{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:#555}.grid{stroke:#ececec}.axis{stroke:#999}
.zero{stroke:#999;stroke-dasharray:4 3}
path.series{fill:none;stroke-linejoin:round;stroke-linecap:round}
"""


def _summary_html(summary: Mapping[str, Any]) -> str:
    """Scalars in one table; a mapping of mappings (latency per stage) as a grid of its own."""
    rows, grids = [], []
    for key, value in summary.items():
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            columns = list(dict.fromkeys(k for inner in value.values() for k in inner))
            head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
            body = "".join(
                f"<tr><th>{escape(str(name))}</th>"
                + "".join(f"<td>{_cell(inner.get(c))}</td>" for c in columns)
                + "</tr>"
                for name, inner in value.items()
            )
            grids.append(
                f'<table class="grid" data-key="{escape(str(key))}"><caption>{escape(str(key))}'
                f"</caption><tr><th></th>{head}</tr>{body}</table>"
            )
        else:
            rows.append(f"<tr><th>{escape(str(key))}</th><td>{_cell(value)}</td></tr>")
    return '<table class="summary">' + "".join(rows) + "</table>" + "".join(grids)


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{escape(str(k))}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        shown = [_cell(v) for v in value[:20]]
        return ", ".join(shown + ([f"… ({len(value):,} in all)"] if len(value) > 20 else []))
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    return escape(_number(value))


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _panel_html(panel: _Panel, t0: int, t1: int) -> str:
    drawable = [t for t in panel.trades if math.isfinite(t.price) and math.isfinite(t.qty)]
    values = [line.values for line in panel.lines] + [np.asarray([t.price for t in drawable])]
    frame = _Frame(PRICE_HEIGHT, t0, t1, *_value_range(np.concatenate(values)))
    markers, notes = _markers(drawable, frame)
    events = len(panel.lines[0].values) if panel.lines else 0
    buys = sum(t.side == "buy" for t in panel.trades)
    facts = [f"{events:,} events", f"{buys:,} buys, {len(panel.trades) - buys:,} sells"]
    closes = panel.lines[0].values if panel.lines else np.empty(0)
    closes = closes[np.isfinite(closes)]
    facts += [f"last close {_number(float(closes[-1]))}"] if len(closes) else []
    if len(drawable) < len(panel.trades):
        facts.append(f"{len(panel.trades) - len(drawable):,} trades not drawn (price not finite)")
    symbol = escape(panel.symbol)
    empty = "" if events or drawable else "no events"
    chart = _svg_line_chart(frame, panel.lines, markers, f"{symbol}: price", empty)
    return (
        f'<section class="panel" data-symbol="{symbol}">\n<h2>{symbol}</h2>\n'
        f'<p class="caption">{" · ".join(facts + notes)}</p>\n'
        f"{_legend(panel.lines, bool(panel.trades))}\n{chart}\n</section>"
    )


def _equity_html(equity: _Line, t0: int, t1: int) -> str:
    values = equity.values[np.isfinite(equity.values)]
    facts = [f"{len(equity.values):,} points"]
    if values.size:
        drawdown = float(np.max(np.maximum.accumulate(values) - values))
        facts += [
            f"last {_number(float(values[-1]))}",
            f"low {_number(float(values.min()))}",
            f"high {_number(float(values.max()))}",
            f"max drawdown {_number(drawdown)}",
        ]
    frame = _Frame(EQUITY_HEIGHT, t0, t1, *_value_range(values))
    zero = float(frame.y(np.zeros(1))[0])
    baseline = (
        [f'<line class="zero" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}"/>']
        if frame.lo <= 0 <= frame.hi
        else []
    )
    empty = "" if values.size else "no equity points"
    chart = _svg_line_chart(frame, [equity], baseline, "equity", empty)
    return (
        '<section class="panel equity">\n<h2>Equity</h2>\n'
        f'<p class="caption">realised + unrealised − fees · {" · ".join(facts)}</p>\n'
        f"{_legend([equity], False)}\n{chart}\n</section>"
    )


def _legend(lines: list[_Line], trades: bool) -> str:
    items = [
        f'<li data-series="{escape(line.name)}" data-colour="{line.colour}">'
        f'<span class="swatch" style="background:{line.colour}"></span>{escape(line.name)}</li>'
        for line in lines
    ]
    if trades:
        items += [
            f'<li><span class="mark" style="color:{_SIDE_COLOURS[s]}">{m}</span>{s}</li>'
            for s, m in (("buy", "▲"), ("sell", "▼"))
        ]
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _svg_line_chart(
    frame: _Frame, lines: list[_Line], extras: list[str], label: str, empty: str
) -> str:
    """One panel as SVG: grid and axis labels, a path per line (``M`` starts each unbroken run),
    then ``extras`` (markers, a baseline) on top; ``empty``, if given, says why there is none."""
    bottom, right = frame.height - _BOTTOM, WIDTH - _RIGHT
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {frame.height}" role="img" aria-label="{label}">'
    ]
    for tick, text in [] if empty else _value_ticks(frame.lo, frame.hi):
        y = frame.y(np.asarray([tick]))[0]
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="ytick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        )
    for tick, text in _time_ticks(frame.t0, frame.t1):
        x = frame.x(np.asarray([tick], dtype=np.int64))[0]
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{bottom}"/>'
            f'<text class="xtick" x="{x:.1f}" y="{frame.height - 8}" text-anchor="middle">'
            f"{text}</text>"
        )
    parts.append(f'<path class="axis" fill="none" d="M{_LEFT},{_TOP}V{bottom}H{right}"/>')
    for line in lines:
        runs = downsample(line.ts_ns, line.values, frame.t0, frame.t1, COLUMNS)
        d = "".join(_subpath(frame.x(line.ts_ns[run]), frame.y(line.values[run])) for run in runs)
        width = 1.6 if line.name in ("close", "equity") else 1.2
        parts.append(
            f'<path class="series" data-series="{escape(line.name)}" stroke="{line.colour}" '
            f'stroke-width="{width}" d="{d}"><title>{escape(line.name)}</title></path>'
        )
    if empty:
        parts.append(
            f'<text class="empty" x="{_LEFT + COLUMNS / 2:.0f}" y="{(_TOP + bottom) / 2:.0f}" '
            f'text-anchor="middle">{empty}</text>'
        )
    parts += extras
    parts.append("</svg>")
    return "\n".join(parts)


def _subpath(xs: Floats, ys: Floats) -> str:
    points = [f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
    if len(points) == 1:  # a lone value between gaps: a dot
        return f"M{points[0]}h0"
    return f"M{points[0]}L{' '.join(points[1:])}"


def _markers(trades: list[Trade], frame: _Frame) -> tuple[list[str], list[str]]:
    """A triangle per trade (up for a buy, down for a sell, tip at the price) with a tooltip; past
    :data:`MAX_MARKERS`, one per side and slot of :data:`_SLOT` pixels, at the qty-weighted
    price."""
    if not trades:
        return [], []
    ts_ns = np.asarray([t.ts_ns for t in trades], dtype=np.int64)
    xs = frame.x(ts_ns)
    ys = frame.y(np.asarray([t.price for t in trades], dtype=np.float64))
    if len(trades) <= MAX_MARKERS:
        return [
            _marker(t.side, x, y, _trade_text(t), 1)
            for t, x, y in zip(trades, xs.tolist(), ys.tolist(), strict=True)
        ], []
    groups: dict[tuple[int, str], list[int]] = {}
    for i, (t, x) in enumerate(zip(trades, xs.tolist(), strict=True)):
        groups.setdefault((int(x) // _SLOT, t.side), []).append(i)
    markers = []
    for (_, side), members in groups.items():
        qty = np.asarray([trades[i].qty for i in members])
        prices = np.asarray([trades[i].price for i in members])
        price = float(np.average(prices, weights=qty)) if qty.sum() > 0 else float(prices.mean())
        times = ts_ns[members]
        text = (
            f"{len(members)} {side}s, qty {qty.sum():g}, {prices.min():,.10g} to "
            f"{prices.max():,.10g}, {_utc(int(times.min()))} to {_utc(int(times.max()))}"
        )
        y = float(frame.y(np.asarray([price]))[0])
        markers.append(_marker(side, float(xs[members[0]]), y, text, len(members)))
    note = (
        f"{len(trades):,} trades drawn as {len(markers):,} markers (one per side every {_SLOT} px)"
    )
    return markers, [note]


def _trade_text(trade: Trade) -> str:
    by = f" ({trade.strategy})" if trade.strategy else ""
    return f"{_utc(trade.ts_ns)} {trade.side} {trade.qty:g} @ {trade.price:,.10g}{by}"


def _marker(side: str, x: float, y: float, text: str, count: int) -> str:
    tip = "l5,9h-10z" if side == "buy" else "l5,-9h-10z"
    return (
        f'<path class="trade {side}" data-count="{count}" fill="{_SIDE_COLOURS[side]}" '
        f'd="M{x:.1f},{y:.1f}{tip}"><title>{escape(text)}</title></path>'
    )


def _value_range(values: Floats) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = (hi - lo) * 0.05 or abs(lo) * 0.01 or 1.0
    return lo - pad, hi + pad


def _value_ticks(lo: float, hi: float, target: int = 5) -> list[tuple[float, str]]:
    """Round values (1, 2 or 5 times a power of ten apart) with as many decimals as the step."""
    step = _nice_step((hi - lo) / target)
    decimals = max(0, -math.floor(math.log10(step)))
    ticks = (k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1))
    return [(tick, f"{tick + 0.0:,.{decimals}f}") for tick in ticks]  # + 0.0: never "-0"


def _nice_step(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _time_ticks(t0: int, t1: int, target: int = 8) -> list[tuple[int, str]]:
    step = next((s for s in _TIME_STEPS if s * target >= t1 - t0), _TIME_STEPS[-1])
    if step >= _DAY:
        pattern = "%Y-%m-%d"
    else:
        pattern = "%H:%M" if step >= 60 * _SECOND else "%H:%M:%S"
        if _utc(t0)[:10] != _utc(t1)[:10]:
            pattern = "%m-%d " + pattern
    digits = 0 if step >= _SECOND else 3 if step >= 1_000_000 else 6 if step >= 1000 else 9
    ticks = range(-(-t0 // step) * step, t1 + 1, step)
    return [(t, _utc(t, pattern, digits)) for t in ticks]


def _utc(ts_ns: int, pattern: str = "%Y-%m-%d %H:%M:%S", digits: int | None = None) -> str:
    """A time in UTC; the fraction shows as many digits as it needs (or exactly ``digits``)."""
    seconds, nanos = divmod(ts_ns, _SECOND)
    text = datetime.fromtimestamp(seconds, UTC).strftime(pattern)
    if digits is None:
        digits = 0 if nanos == 0 else 3 if nanos % 1_000_000 == 0 else 6 if nanos % 1000 == 0 else 9
    return text + (f".{nanos:09d}"[: digits + 1] if digits else "")
