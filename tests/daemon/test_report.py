"""The replay report: a JSON file that round-trips, and one offline HTML page whose inline SVG
shows a panel per symbol (close, indicators, trades) and the equity curve. The page is read back
with the standard library's parsers, as a browser would see its structure."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from tickd.daemon.report import (
    COLUMNS,
    MAX_MARKERS,
    ReportData,
    ReportError,
    SymbolSeries,
    Trade,
    _time_ticks,
    downsample,
    write_report,
)

T0 = 1_709_560_800_000_000_000  # 2024-03-04 14:00:00 UTC
MINUTE = 60_000_000_000
NAN = math.nan


# --- reading the page back ------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self) -> list[Node]:
        return [self, *(n for child in self.children for n in child.walk())]

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [
            n
            for n in self.walk()
            if n.tag == tag and (cls is None or cls in n.attrs.get("class", "").split())
        ]

    def content(self) -> str:
        return "".join(self.text) + "".join(child.content() for child in self.children)


class TreeBuilder(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


@dataclass
class Page:
    text: str
    tree: Node
    svgs: list[ET.Element]  # each <svg> fragment, parsed as XML

    def panels(self) -> list[Node]:
        return self.tree.all("section", "panel")

    def panel(self, symbol: str) -> Node:
        (found,) = [p for p in self.panels() if p.attrs.get("data-symbol") == symbol]
        return found

    def svg(self, section: Node) -> ET.Element:
        return self.svgs[self.panels().index(section)]


def read_page(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    assert builder.stack == [builder.root], "every element is closed"
    svgs = [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", text, flags=re.S)]
    return Page(text, builder.root, svgs)


def series_paths(svg: ET.Element) -> dict[str, ET.Element]:
    return {p.get("data-series", ""): p for p in svg.iter("path") if p.get("class") == "series"}


def subpaths(d: str) -> list[list[tuple[float, float]]]:
    """The runs of a path's ``d``: each ``M`` starts one; ``h0`` (a dot) adds no point."""
    return [
        [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", run)]
        for run in d.split("M")[1:]
    ]


def markers(svg: ET.Element) -> list[ET.Element]:
    return [p for p in svg.iter("path") if "trade" in (p.get("class") or "").split()]


def view_box(svg: ET.Element) -> tuple[float, float]:
    _, _, width, height = (float(v) for v in (svg.get("viewBox") or "").split())
    return width, height


# --- data -----------------------------------------------------------------------------------


def minutes(n: int, start: int = 0) -> list[int]:
    return [T0 + (start + i) * MINUTE for i in range(n)]


def sample(**changes: Any) -> ReportData:
    closes = [190.0 + math.sin(i / 5) for i in range(60)]
    fields: dict[str, Any] = {
        "title": "replay of tests/data/day.tape",
        "summary": {
            "events": 1_234_567,
            "decisions": 42,
            "orders": 7,
            "fills": 6,
            "pnl": -12.5,
            "digest": "9f2c1ab0",
            "latency_us": {"decode": {"p50": 3.25, "p99": 17.5}, "bank": {"p50": 8.5, "p99": 41.0}},
        },
        "symbols": {
            "AAPL": SymbolSeries(
                ts_ns=minutes(60),
                close=closes,
                indicators={
                    "ema(timeperiod=5)": [NAN] * 4 + closes[4:],
                    "ema(timeperiod=20)": [NAN] * 19 + [c - 0.5 for c in closes[19:]],
                },
            ),
            "BTC/USD": SymbolSeries(
                ts_ns=minutes(30, 10), close=[64_000.0 + 10 * i for i in range(30)], indicators={}
            ),
        },
        "trades": [
            Trade(ts_ns=T0 + 10 * MINUTE, symbol="AAPL", side="buy", qty=10, price=190.5),
            Trade(ts_ns=T0 + 30 * MINUTE, symbol="AAPL", side="sell", qty=10, price=189.5),
            Trade(ts_ns=T0 + 20 * MINUTE, symbol="BTC/USD", side="buy", qty=0.25, price=64_100.0),
        ],
        "equity": [(T0 + i * MINUTE, 0.5 * i - 10) for i in range(60)],
    }
    fields.update(changes)
    return ReportData(**fields)


@pytest.fixture
def page(tmp_path: Path) -> Page:
    _, html_path = write_report(sample(), tmp_path)
    return read_page(html_path)


# --- the files ------------------------------------------------------------------------------


def test_writes_the_json_and_the_html_into_a_new_directory(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "day1"
    json_path, html_path = write_report(sample(), folder, stem="replay")
    assert (json_path, html_path) == (folder / "replay.json", folder / "replay.html")
    assert sorted(p.name for p in folder.iterdir()) == ["replay.html", "replay.json"]


def test_the_page_needs_no_network_and_no_script(page: Page) -> None:
    assert "://" not in page.text
    assert not page.tree.all("script") and not page.tree.all("link")
    (policy,) = [m for m in page.tree.all("meta") if m.attrs.get("http-equiv")]
    assert "default-src 'none'" in policy.attrs["content"]


# --- panels, lines, legend ------------------------------------------------------------------


def test_one_panel_per_symbol_then_the_equity_panel(page: Page) -> None:
    panels = page.panels()
    assert [p.attrs.get("data-symbol") for p in panels] == ["AAPL", "BTC/USD", None]
    assert "equity" in panels[-1].attrs["class"].split()
    assert len(page.svgs) == len(panels)
    assert [h.content() for h in page.tree.all("h2")] == ["AAPL", "BTC/USD", "Equity"]


def test_each_line_is_a_path_inside_the_viewbox_coloured_as_its_legend(page: Page) -> None:
    panel = page.panel("AAPL")
    svg = page.svg(panel)
    width, height = view_box(svg)
    paths = series_paths(svg)
    assert list(paths) == ["close", "ema(timeperiod=5)", "ema(timeperiod=20)"]
    legend = {
        li.attrs["data-series"]: li.attrs["data-colour"] for li in panel.all("li") if li.attrs
    }
    assert legend == {name: path.get("stroke") for name, path in paths.items()}
    assert len(set(legend.values())) == 3
    for path in paths.values():
        points = [pt for run in subpaths(path.get("d", "")) for pt in run]
        assert points
        assert all(0 <= x <= width and 0 <= y <= height for x, y in points)
    assert len(subpaths(paths["close"].get("d", ""))[0]) == 60  # short series: every point


def test_nan_warm_up_breaks_the_line_instead_of_drawing_to_zero(tmp_path: Path) -> None:
    closes = [100.0 + i for i in range(40)]
    warm = [NAN] * 5 + closes[5:20] + [NAN] * 3 + closes[23:]
    data = sample(
        symbols={"X": SymbolSeries(ts_ns=minutes(40), close=closes, indicators={"w": warm})},
        trades=[],
    )
    page = read_page(write_report(data, tmp_path)[1])
    paths = series_paths(page.svgs[0])
    close = subpaths(paths["close"].get("d", ""))
    runs = subpaths(paths["w"].get("d", ""))
    assert len(close) == 1
    assert [len(run) for run in runs] == [15, 17]
    # The runs start and end on the close's own points: nothing is drawn for the NaNs.
    assert runs[0][0] == close[0][5] and runs[0][-1] == close[0][19]
    assert runs[1][0] == close[0][23] and runs[1][-1] == close[0][39]


def test_an_indicator_still_warming_up_has_an_empty_path_and_a_legend(tmp_path: Path) -> None:
    data = sample(
        symbols={
            "X": SymbolSeries(ts_ns=minutes(3), close=[1.0, 2, 3], indicators={"slow": [NAN] * 3})
        }
    )
    page = read_page(write_report(data, tmp_path)[1])
    assert series_paths(page.svgs[0])["slow"].get("d") == ""
    assert "slow" in [li.content() for li in page.panel("X").all("li")]


# --- trades ---------------------------------------------------------------------------------


def test_one_marker_per_trade_pointing_its_side_with_a_tooltip(page: Page) -> None:
    aapl = markers(page.svg(page.panel("AAPL")))
    btc = markers(page.svg(page.panel("BTC/USD")))
    assert [m.get("class") for m in aapl] == ["trade buy", "trade sell"]
    assert [m.get("class") for m in btc] == ["trade buy"]
    buy, sell = aapl
    assert re.search(r"l5,9h-10z$", buy.get("d", ""))  # base below the tip: points up
    assert re.search(r"l5,-9h-10z$", sell.get("d", ""))  # base above: points down
    assert buy.findtext("title") == "2024-03-04 14:10:00 buy 10 @ 190.5"
    assert btc[0].findtext("title") == "2024-03-04 14:20:00 buy 0.25 @ 64,100"
    assert [m.get("fill") for m in aapl] == ["#1a9850", "#d73027"]


def test_a_marker_sits_on_the_close_line_at_its_time_and_price(tmp_path: Path) -> None:
    closes = [100.0, 102.0, 101.0, 104.0]
    trade = Trade(ts_ns=T0 + 2 * MINUTE, symbol="X", side="sell", qty=1, price=101.0)
    data = sample(
        symbols={"X": SymbolSeries(ts_ns=minutes(4), close=closes, indicators={})},
        trades=[trade],
        equity=[],
    )
    svg = read_page(write_report(data, tmp_path)[1]).svgs[0]
    (line,) = subpaths(series_paths(svg)["close"].get("d", ""))
    (marker,) = markers(svg)
    tip = re.match(r"M(-?[\d.]+),(-?[\d.]+)", marker.get("d", ""))
    assert tip is not None
    assert (float(tip[1]), float(tip[2])) == line[2]


def test_trades_of_a_symbol_without_series_get_their_own_panel(tmp_path: Path) -> None:
    lone = Trade(ts_ns=T0, symbol="MSFT", side="sell", qty=3, price=410.0, strategy="s1")
    page = read_page(write_report(sample(trades=[lone]), tmp_path)[1])
    panel = page.panel("MSFT")
    (marker,) = markers(page.svg(panel))
    assert marker.findtext("title") == "2024-03-04 14:00:00 sell 3 @ 410 (s1)"
    assert "0 events" in panel.all("p", "caption")[0].content()


def test_a_trade_that_cannot_be_drawn_is_counted_on_the_page(tmp_path: Path) -> None:
    broken = Trade(ts_ns=T0, symbol="AAPL", side="buy", qty=1, price=NAN)
    page = read_page(write_report(sample(trades=[broken]), tmp_path)[1])
    panel = page.panel("AAPL")
    assert not markers(page.svg(panel))
    assert "1 trades not drawn (price not finite)" in panel.all("p", "caption")[0].content()


def test_many_trades_share_markers_per_pixel_column_and_side(tmp_path: Path) -> None:
    n = 5000
    trades = [
        Trade(
            ts_ns=T0 + i * MINUTE // 100,
            symbol="AAPL",
            side=("buy", "sell")[i % 2],
            qty=1,
            price=190,
        )
        for i in range(n)
    ]
    page = read_page(write_report(sample(trades=trades), tmp_path)[1])
    panel = page.panel("AAPL")
    drawn = markers(page.svg(panel))
    assert len(drawn) <= min(MAX_MARKERS, 2 * COLUMNS)
    assert sum(int(m.get("data-count", "0")) for m in drawn) == n
    assert {m.get("class") for m in drawn} == {"trade buy", "trade sell"}
    assert f"{n:,} trades drawn as {len(drawn)} markers" in panel.all("p", "caption")[0].content()


# --- axes -----------------------------------------------------------------------------------


def test_axes_read_as_round_prices_and_utc_times(page: Page) -> None:
    svg = page.svg(page.panel("BTC/USD"))
    prices = [t.text for t in svg.iter("text") if t.get("class") == "ytick"]
    times = [t.text for t in svg.iter("text") if t.get("class") == "xtick"]
    assert prices == ["64,000", "64,100", "64,200", "64,300"]
    assert times == ["14:00", "14:10", "14:20", "14:30", "14:40", "14:50"]
    assert "times UTC, 2024-03-04 14:00:00 to 2024-03-04 14:59:00" in page.text


def test_time_labels_follow_the_span() -> None:
    assert _time_ticks(T0, T0 + 5_000_000)[:2] == [
        (T0, "14:00:00.000"),
        (T0 + 1_000_000, "14:00:00.001"),
    ]
    week = _time_ticks(T0, T0 + 7 * 24 * 60 * MINUTE)
    assert week[0][1] == "2024-03-05" and len(week) == 7
    overnight = _time_ticks(T0 + 8 * 60 * MINUTE, T0 + 14 * 60 * MINUTE)
    assert overnight[0][1] == "03-04 22:00"


# --- the summary and escaping ---------------------------------------------------------------


def test_the_summary_numbers_appear_with_latency_per_stage(page: Page) -> None:
    (table,) = page.tree.all("table", "summary")
    rows = {tr.all("th")[0].content(): tr.all("td")[0].content() for tr in table.all("tr")}
    assert rows == {
        "events": "1,234,567",
        "decisions": "42",
        "orders": "7",
        "fills": "6",
        "pnl": "-12.50",
        "digest": "9f2c1ab0",
    }
    (grid,) = page.tree.all("table", "grid")
    cells = [[c.content() for c in tr.children] for tr in grid.all("tr")]
    assert cells == [["", "p50", "p99"], ["decode", "3.25", "17.50"], ["bank", "8.50", "41.00"]]


def test_text_with_markup_characters_is_escaped(tmp_path: Path) -> None:
    odd = "<b>A&B</b> 'q' \"dq\""
    data = ReportData(
        title=f"<script>alert(1)</script> {odd}",
        summary={odd: odd, "nested": {"k<": ["a&b", None, True]}},
        symbols={odd: SymbolSeries(ts_ns=[T0], close=[1.0], indicators={odd: [1.0]})},
        trades=[Trade(ts_ns=T0, symbol=odd, side="buy", qty=1, price=1, strategy=odd)],
        equity=[(T0, 0.0)],
    )
    page = read_page(write_report(data, tmp_path)[1])
    assert "<script" not in page.text and "<b>" not in page.text
    assert page.tree.all("title")[0].content() == data.title
    panel = page.panel(odd)
    assert panel.all("h2")[0].content() == odd
    svg = page.svg(panel)
    assert odd in series_paths(svg)
    assert markers(svg)[0].findtext("title", "").endswith(f"({odd})")
    rows = {tr.all("th")[0].content(): tr.all("td")[0].content() for tr in page.tree.all("tr")}
    assert rows[odd] == odd and rows["nested"] == "k<: a&b, –, True"


# --- the JSON -------------------------------------------------------------------------------


class ReportJson(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    summary: dict[str, Any]
    trades: list[Trade]
    equity: list[tuple[int, float | None]]


def test_the_json_round_trips_with_nan_as_null(tmp_path: Path) -> None:
    data = sample(
        summary={"pnl": NAN, "events": np.int64(3), "p99": np.float64(1.5), "tape": tmp_path},
        equity=[(T0, 0.0), (T0 + 1, NAN), (T0 + 2, -1.25)],
    )
    json_path, _ = write_report(data, tmp_path)
    raw = json_path.read_bytes()
    back = msgspec.json.decode(raw, type=ReportJson)
    assert back.title == data.title
    assert back.trades == data.trades
    assert back.equity == [(T0, 0.0), (T0 + 1, None), (T0 + 2, -1.25)]
    assert back.summary == {"pnl": None, "events": 3, "p99": 1.5, "tape": str(tmp_path)}
    assert b"NaN" not in raw
    # One line per trade and per equity point, so two runs diff line by line.
    lines = raw.decode().splitlines()
    assert lines.count('  "trades": [') == 1
    assert sum(line.startswith('    {"ts_ns":') for line in lines) == len(data.trades)
    assert sum(line.startswith("    [") for line in lines) == 3


def test_empty_lists_are_empty_json_arrays(tmp_path: Path) -> None:
    data = ReportData(title="t", summary={}, symbols={}, trades=[], equity=[])
    back = msgspec.json.decode((write_report(data, tmp_path)[0]).read_bytes(), type=ReportJson)
    assert back == ReportJson(title="t", summary={}, trades=[], equity=[])


# --- long series ----------------------------------------------------------------------------


def test_downsampling_a_million_points_keeps_the_extremes_and_bounds_the_points() -> None:
    n = 1_000_000
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    values = 100 + np.cumsum(rng.normal(0, 0.01, n))
    values[:19] = NAN
    low, high = 123_457, 876_543
    values[low], values[high] = 50.0, 150.0
    runs = downsample(ts, values, int(ts[0]), int(ts[-1]), COLUMNS)
    kept = np.concatenate(runs)
    assert len(runs) == 1  # the warm-up is narrower than a pixel
    assert len(kept) <= 2 * COLUMNS
    assert low in kept and high in kept
    assert np.all(np.diff(kept) > 0)  # in time order
    assert np.all(np.isfinite(values[kept]))
    # Every column's own extremes are kept, not just the global ones.
    column = ((ts - ts[0]) * (COLUMNS / (ts[-1] - ts[0]))).astype(np.int64).clip(0, COLUMNS - 1)
    for c in (0, 100, COLUMNS - 1):
        inside = np.flatnonzero(column == c)
        finite = inside[np.isfinite(values[inside])]
        assert values[finite].min() in values[kept] and values[finite].max() in values[kept]


def test_downsampling_breaks_runs_at_columns_of_nan_only() -> None:
    ts = T0 + np.arange(10, dtype=np.int64)
    values = np.array([1, 2, NAN, NAN, 5, 6, NAN, 8, NAN, NAN], dtype=np.float64)
    runs = downsample(ts, values, int(ts[0]), int(ts[-1]), 100)
    assert [r.tolist() for r in runs] == [[0, 1], [4, 5], [7]]
    # Two samples a column: NaN at a column's end or start breaks the run there.
    values = np.array([1, 2, 3, NAN, NAN, NAN, NAN, 8, 9, 10], dtype=np.float64)
    runs = downsample(ts, values, int(ts[0]), int(ts[-1]), 5)
    assert [r.tolist() for r in runs] == [[0, 1, 2], [7, 8, 9]]
    assert downsample(ts[:0], values[:0], 0, 1, 100) == []
    assert downsample(ts, np.full(10, NAN), int(ts[0]), int(ts[-1]), 100) == []


def test_a_million_event_page_stays_small(tmp_path: Path) -> None:
    n = 1_000_000
    rng = np.random.default_rng(3)
    ts = (T0 + np.arange(n, dtype=np.int64) * 14_400_000).tolist()  # four hours
    close = 190 + np.cumsum(rng.normal(0, 0.01, n))
    data = sample(
        symbols={
            "AAPL": SymbolSeries(
                ts_ns=ts,
                close=close.tolist(),
                indicators={
                    "a": (close - 1).tolist(),
                    "b": np.r_[[NAN] * 99, close[99:] + 1].tolist(),
                },
            )
        },
        trades=[],
        equity=list(zip(ts, np.cumsum(rng.normal(0, 1, n)).tolist(), strict=True)),
    )
    _, html_path = write_report(data, tmp_path)
    assert html_path.stat().st_size < 2_000_000
    page = read_page(html_path)
    for svg in page.svgs:
        width, height = view_box(svg)
        for path in series_paths(svg).values():
            points = [pt for run in subpaths(path.get("d", "")) for pt in run]
            assert 0 < len(points) <= 2 * COLUMNS
            assert all(0 <= x <= width and 0 <= y <= height for x, y in points)
    # The extremes survive: the close reaches as high and as low as the data does.
    svg = page.svgs[0]
    ys = [y for run in subpaths(series_paths(svg)["close"].get("d", "")) for _, y in run]
    ticks = [
        (float(t.get("y", "")), float((t.text or "").replace(",", "")))
        for t in svg.iter("text")
        if t.get("class") == "ytick"
    ]
    (y1, v1), (y2, v2) = ticks[0], ticks[-1]
    pixels_per_unit = (y1 - y2) / (v2 - v1)
    span = float(close.max() - close.min())
    assert max(ys) - min(ys) == pytest.approx(span * pixels_per_unit, abs=0.2)


# --- empty and bad input --------------------------------------------------------------------


def test_empty_inputs_still_give_a_valid_page(tmp_path: Path) -> None:
    data = ReportData(
        title="nothing happened",
        summary={},
        symbols={"IDLE": SymbolSeries(ts_ns=[], close=[], indicators={"ema": []})},
        trades=[],
        equity=[],
    )
    page = read_page(write_report(data, tmp_path)[1])
    assert [p.attrs.get("data-symbol") for p in page.panels()] == ["IDLE", None]
    for svg in page.svgs:
        assert not markers(svg)
        assert all(p.get("d") == "" for p in series_paths(svg).values())
    assert [t.text for s in page.svgs for t in s.iter("text") if t.get("class") == "empty"] == [
        "no events",
        "no equity points",
    ]
    assert not [t for s in page.svgs for t in s.iter("text") if t.get("class") == "ytick"]


def test_nothing_at_all_still_gives_a_page(tmp_path: Path) -> None:
    data = ReportData(title="", summary={}, symbols={}, trades=[], equity=[])
    page = read_page(write_report(data, tmp_path)[1])
    assert len(page.panels()) == 1 and len(page.svgs) == 1


@pytest.mark.parametrize(
    ("changes", "where", "message"),
    [
        (
            {"symbols": {"X": SymbolSeries(ts_ns=[T0, T0 + 1], close=[1.0], indicators={})}},
            "symbols['X'].close",
            "1 values for 2 times",
        ),
        (
            {"symbols": {"X": SymbolSeries(ts_ns=[T0], close=[1.0], indicators={"e": []})}},
            "symbols['X'].e",
            "0 values for 1 times",
        ),
        (
            {"symbols": {"X": SymbolSeries(ts_ns=[T0, T0 - 1], close=[1.0, 2.0], indicators={})}},
            "symbols['X'].ts_ns",
            "times go back at index 1",
        ),
        (
            {"equity": [(T0, 0.0), (T0 + 2, 1.0), (T0 + 1, 2.0)]},
            "equity",
            "times go back at index 2",
        ),
        ({"summary": {"when": object()}}, "summary", "not JSON-able"),
    ],
)
def test_bad_input_is_a_typed_error_and_writes_nothing(
    tmp_path: Path, changes: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(ReportError, match=re.escape(message)) as caught:
        write_report(sample(**changes), tmp_path / "out")
    assert caught.value.where == where
    assert not (tmp_path / "out").exists()


def test_an_indicator_on_another_scale_gets_its_own_panel_below_the_price(tmp_path: Path) -> None:
    closes = [190.0 + math.sin(i / 5) for i in range(60)]
    series = SymbolSeries(
        ts_ns=minutes(60),
        close=closes,
        indicators={
            "ema(timeperiod=5)": [NAN] * 4 + closes[4:],
            "rsi(timeperiod=14)": [NAN] * 14 + [50 + 20 * math.sin(i / 3) for i in range(46)],
        },
    )
    _, html_path = write_report(sample(symbols={"AAPL": series}), tmp_path)
    page = read_page(html_path)
    symbols = [p.attrs.get("data-symbol") for p in page.panels()]
    assert symbols == ["AAPL", "AAPL · indicators on their own scale", "BTC/USD", None]
    price, own = page.panels()[:2]
    assert set(series_paths(page.svg(price))) == {"close", "ema(timeperiod=5)"}
    assert set(series_paths(page.svg(own))) == {"rsi(timeperiod=14)"}
