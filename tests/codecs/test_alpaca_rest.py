"""Alpaca historical bars pages (REST): decode, encode, and bad input."""

from __future__ import annotations

import msgspec
import pytest

from tickd.codecs.alpaca_rest import BarsPage, decode_bars_page, encode_bars_page
from tickd.codecs.schema import Bar, CryptoBar
from tickd.codecs.timestamps import parse_rfc3339_ns

T0 = parse_rfc3339_ns("2024-01-03T14:30:00Z")
MINUTE = 60_000_000_000

# The shape of Alpaca's documented multi-symbol example (values shortened).
STOCKS_PAGE = b"""{"bars":{"AAPL":[
 {"c":184.25,"h":184.5,"l":184.1,"n":1223,"o":184.2,"t":"2024-01-03T14:30:00Z","v":80500,
  "vw":184.31},
 {"c":184.3,"h":184.4,"l":184.0,"n":900,"o":184.25,"t":"2024-01-03T14:31:00Z","v":51000,
  "vw":184.2}],
 "MSFT":[{"c":370.1,"h":370.9,"l":369.8,"o":370.0,"t":"2024-01-03T14:30:00Z","v":20000}]},
 "next_page_token":"QUFQTHxNfDIwMjQtMDEtMDNUMTQ6MzE6MDBa"}"""


def test_a_stocks_page_decodes_to_bars_and_the_next_token() -> None:
    page = decode_bars_page(STOCKS_PAGE, "stocks", ts_recv=7)
    assert isinstance(page, BarsPage) and not page.errors
    assert page.next_page_token == "QUFQTHxNfDIwMjQtMDEtMDNUMTQ6MzE6MDBa"
    assert page.messages == [
        Bar(symbol="AAPL", ts_event=T0, ts_recv=7, open=184.2, high=184.5, low=184.1,
            close=184.25, volume=80500, trade_count=1223, vwap=184.31),
        Bar(symbol="AAPL", ts_event=T0 + MINUTE, ts_recv=7, open=184.25, high=184.4, low=184.0,
            close=184.3, volume=51000, trade_count=900, vwap=184.2),
        Bar(symbol="MSFT", ts_event=T0, ts_recv=7, open=370.0, high=370.9, low=369.8,
            close=370.1, volume=20000),
    ]  # fmt: skip
    assert all(type(bar) is Bar for bar in page.messages)


def test_a_crypto_page_keeps_fractional_volume_and_nanoseconds() -> None:
    body = (
        b'{"bars":{"BTC/USD":[{"t":"2024-01-03T14:30:00.123456789Z","o":1,"h":2,"l":0.5,"c":1.5,'
        b'"v":0.0123,"n":0,"vw":1.2}]},"next_page_token":null}'
    )
    page = decode_bars_page(body, "crypto")
    (bar,) = page.messages
    assert type(bar) is CryptoBar
    assert (bar.symbol, bar.ts_event, bar.volume) == ("BTC/USD", T0 + 123_456_789, 0.0123)
    assert page.next_page_token is None


@pytest.mark.parametrize("asset", ["stocks", "crypto"])
def test_encode_then_decode_is_the_identity(asset: str) -> None:
    cls = Bar if asset == "stocks" else CryptoBar
    volume = 100 if asset == "stocks" else 0.25
    bars = [
        cls(symbol=s, ts_event=T0 + i * MINUTE + i, open=1.0, high=2.0, low=0.5, close=1.5,
            volume=volume, trade_count=i or None, vwap=1.25 if i else None)
        for i in range(3) for s in ("AAA", "BBB")
    ]  # fmt: skip
    page = decode_bars_page(encode_bars_page(bars, "tok"), asset)  # type: ignore[arg-type]
    assert not page.errors and page.next_page_token == "tok"
    assert sorted(page.messages, key=lambda b: (b.ts_event, b.symbol)) == bars


def test_the_encoder_groups_by_symbol_and_leaves_unknown_fields_out() -> None:
    bars = [
        Bar(symbol="B", ts_event=T0, open=1, high=1, low=1, close=1, volume=1),
        Bar(symbol="A", ts_event=T0, open=1, high=1, low=1, close=1, volume=1, trade_count=3),
        Bar(symbol="B", ts_event=T0 + MINUTE, open=1, high=1, low=1, close=1, volume=2),
    ]
    wire = msgspec.json.decode(encode_bars_page(bars))
    assert list(wire["bars"]) == ["B", "A"]
    assert wire["bars"]["B"][0] == {
        "t": "2024-01-03T14:30:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1
    }  # fmt: skip
    assert wire["bars"]["A"][0]["n"] == 3 and "vw" not in wire["bars"]["A"][0]
    assert wire["next_page_token"] is None


def test_a_bad_item_costs_only_itself() -> None:
    body = (
        b'{"bars":{"AAPL":[{"t":"2024-01-03T14:30:00Z","o":1,"h":1,"l":1,"c":1,"v":1},'
        b'{"t":"yesterday","o":1,"h":1,"l":1,"c":1,"v":1},'
        b'{"t":"2024-01-03T14:31:00Z","o":1,"h":1,"l":1,"c":1,"v":1.5}],'
        b'"MSFT":[{"t":"2024-01-03T14:30:00Z","o":1,"h":1,"l":1,"v":1},'
        b'{"t":"2024-01-03T14:31:00Z","o":1,"h":1,"l":1,"c":1,"v":7}]},"next_page_token":"n"}'
    )
    page = decode_bars_page(body, "stocks")
    assert [(b.symbol, b.volume) for b in page.messages] == [("AAPL", 1), ("MSFT", 7)]
    assert [e.index for e in page.errors] == [1, 2, 3]
    assert "AAPL" in page.errors[0].reason and "timestamp" in page.errors[0].reason
    assert "MSFT" in page.errors[2].reason and b'"o":1' in page.errors[2].excerpt
    assert page.next_page_token == "n"


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"bars": []}', b'{"code":40010001,"message":"x"}x']
)
def test_a_body_that_is_not_a_page_is_one_error(body: bytes) -> None:
    page = decode_bars_page(body, "stocks")
    assert page.messages == [] and page.next_page_token is None
    (error,) = page.errors
    assert error.index == -1 and "not a bars page" in error.reason


@pytest.mark.parametrize("body", [b'{"bars": null, "next_page_token": null}', b"{}"])
def test_an_empty_page_has_no_bars(body: bytes) -> None:
    page = decode_bars_page(body, "crypto")
    assert page == BarsPage()
