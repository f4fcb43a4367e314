"""The portfolio: positions and average prices, fills applied once, working orders, exposure,
PnL against marks, and reconciliation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tickd.codecs.schema import Order, OrderUpdate
from tickd.daemon.portfolio import Portfolio, Position, execution_key
from tickd.strategies.base import OrderIntent

D = Decimal


def position(*fills: tuple[str, str]) -> Position:
    held = Position()
    for qty, price in fills:
        held.fill(D(qty), D(price))
    return held


def update(
    event: str,
    side: str = "buy",
    qty: str | None = "10",
    price: str | None = "100",
    *,
    symbol: str = "AAPL",
    coid: str = "c1",
    execution_id: str | None = "x1",
    filled_qty: str | None = None,
) -> OrderUpdate:
    order = Order(
        id=f"id-{coid}",
        client_order_id=coid,
        symbol=symbol,
        side=side,
        filled_qty=D(filled_qty) if filled_qty is not None else None,
    )
    return OrderUpdate(
        event=event,
        order=order,
        execution_id=execution_id,
        qty=D(qty) if qty is not None else None,
        price=D(price) if price is not None else None,
    )


def intent(
    symbol: str = "AAPL", side: str = "buy", qty: str = "10", name: str = "s"
) -> OrderIntent:
    return OrderIntent(
        strategy=name,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=D(qty),
        event_id=f"Bar:{symbol}:1",
        ts_event=1,
    )


# --- Position.fill ----------------------------------------------------------------------------


def test_growing_a_long_moves_the_average_price() -> None:
    held = position(("10", "100"))
    assert (held.qty, held.avg_price, held.realized) == (D(10), D(100), D(0))
    held.fill(D(10), D(110))
    assert (held.qty, held.avg_price) == (D(20), D(105))
    held.fill(D(5), D(120))
    assert (held.qty, held.avg_price) == (D(25), D(108))  # (2100 + 600) / 25
    assert held.realized == 0


def test_growing_a_short_moves_the_average_price() -> None:
    held = position(("-10", "50"), ("-30", "60"))
    assert (held.qty, held.avg_price, held.realized) == (D(-40), D("57.5"), D(0))


def test_an_average_that_does_not_terminate_is_the_exact_quotient() -> None:
    held = position(("1", "100"), ("2", "101"))
    assert held.avg_price == D(302) / D(3)


def test_reducing_a_long_realises_against_the_average_and_keeps_it() -> None:
    held = position(("10", "100"), ("10", "110"))  # avg 105
    held.fill(D(-4), D(112))
    assert (held.qty, held.avg_price, held.realized) == (D(16), D(105), D(28))
    held.fill(D(-6), D(100))
    assert (held.qty, held.avg_price, held.realized) == (D(10), D(105), D(-2))


def test_reducing_a_short_realises_against_the_average_and_keeps_it() -> None:
    held = position(("-10", "50"))
    held.fill(D(4), D(45))
    assert (held.qty, held.avg_price, held.realized) == (D(-6), D(50), D(20))
    held.fill(D(2), D(55))
    assert (held.qty, held.avg_price, held.realized) == (D(-4), D(50), D(10))


@pytest.mark.parametrize(
    ("opening", "closing", "realized"),
    [(("10", "100"), ("-10", "103"), D(30)), (("-10", "100"), ("10", "103"), D(-30))],
)
def test_closing_to_zero_realises_everything_and_resets_the_average(
    opening: tuple[str, str], closing: tuple[str, str], realized: Decimal
) -> None:
    held = position(opening, closing)
    assert (held.qty, held.avg_price, held.realized) == (D(0), D(0), realized)
    held.fill(D(5), D(90))  # a new position starts from its own price, not the old average
    assert (held.qty, held.avg_price, held.realized) == (D(5), D(90), realized)


def test_crossing_zero_from_long_realises_the_closed_part_and_opens_the_rest() -> None:
    held = position(("10", "100"))
    held.fill(D(-15), D(90))
    assert (held.qty, held.avg_price, held.realized) == (D(-5), D(90), D(-100))


def test_crossing_zero_from_short_realises_the_closed_part_and_opens_the_rest() -> None:
    held = position(("-10", "50"))
    held.fill(D(12), D(40))
    assert (held.qty, held.avg_price, held.realized) == (D(2), D(40), D(100))


# --- Portfolio.apply ----------------------------------------------------------------------------


def test_a_fill_changes_the_position_once_per_execution_id() -> None:
    book = Portfolio()
    assert book.apply(update("fill", "buy", "10", "100", execution_id="x1")) is True
    assert book.position("AAPL") == D(10)
    assert book.positions["AAPL"].avg_price == D(100)
    repeat = update("fill", "buy", "10", "100", execution_id="x1")
    assert book.apply(repeat) is False
    assert book.position("AAPL") == D(10)
    assert (book.fills, book.duplicate_fills) == (1, 1)
    # the same execution id repeated under another event name is still the same execution
    assert book.apply(update("partial_fill", "buy", "10", "100", execution_id="x1")) is False
    assert (book.fills, book.duplicate_fills) == (1, 2)
    assert book.position("AAPL") == D(10)


def test_a_sell_fill_is_negative_and_fills_of_other_symbols_are_separate() -> None:
    book = Portfolio()
    book.apply(update("fill", "sell", "3", "400", symbol="MSFT", coid="c1", execution_id="x1"))
    book.apply(update("fill", "buy", "7", "100", symbol="AAPL", coid="c2", execution_id="x2"))
    assert (book.position("MSFT"), book.position("AAPL"), book.position("TSLA")) == (
        D(-3),
        D(7),
        D(0),
    )


def test_partial_fills_reduce_the_working_quantity_and_the_final_fill_removes_it() -> None:
    book = Portfolio()
    book.add_working("c1", intent(qty="10"))
    assert book.working("AAPL") == D(10)
    assert book.apply(update("partial_fill", qty="4", price="100", execution_id="x1"))
    assert book.working("AAPL") == D(6)
    assert book.orders["c1"].signed_qty == D(6)
    assert book.apply(update("partial_fill", qty="4", price="100", execution_id="x1")) is False
    assert book.working("AAPL") == D(6)  # a repeated execution does not reduce it again
    assert book.apply(update("fill", qty="6", price="102", execution_id="x2"))
    assert "c1" not in book.orders
    assert book.working("AAPL") == D(0)
    held = book.positions["AAPL"]
    assert (held.qty, held.avg_price) == (D(10), D("101.2"))  # (400 + 612) / 10


def test_a_partial_fill_of_a_sell_reduces_its_negative_working_quantity() -> None:
    book = Portfolio()
    book.add_working("c1", intent(side="sell", qty="10"))
    book.apply(update("partial_fill", "sell", qty="3", price="100", execution_id="x1"))
    assert book.working("AAPL") == D(-7)
    assert book.exposure("AAPL") == D(-10)  # held -3, working -7


def test_fills_without_execution_ids_are_told_apart_by_the_filled_quantity() -> None:
    book = Portfolio()
    first = update("partial_fill", qty="4", price="100", execution_id=None, filled_qty="4")
    assert book.apply(first) is True
    assert book.apply(first) is False  # the stream repeated itself
    assert book.duplicate_fills == 1
    last = update("fill", qty="6", price="100", execution_id=None, filled_qty="10")
    assert book.apply(last) is True
    assert book.position("AAPL") == D(10)
    assert book.fills == 2


@pytest.mark.parametrize(
    "event", ["fill", "canceled", "expired", "rejected", "done_for_day", "replaced"]
)
def test_a_terminal_event_removes_the_working_order(event: str) -> None:
    book = Portfolio()
    book.add_working("c1", intent())
    book.add_working("c2", intent(qty="3"))
    book.apply(update(event, qty=None, price=None, coid="c1", execution_id=None))
    assert set(book.orders) == {"c2"}
    assert book.working("AAPL") == D(3)
    assert book.position("AAPL") == D(0)  # no execution came with it


@pytest.mark.parametrize(
    "event", ["new", "accepted", "pending_new", "pending_cancel", "pending_replace", "calculated"]
)
def test_a_non_terminal_event_leaves_the_working_order(event: str) -> None:
    book = Portfolio()
    book.add_working("c1", intent())
    assert book.apply(update(event, qty=None, price=None, execution_id=None)) is False
    assert book.working("AAPL") == D(10)
    assert book.position("AAPL") == D(0)


def test_a_fill_of_an_order_not_known_locally_still_counts() -> None:
    book = Portfolio()
    book.add_working("mine", intent())
    assert book.apply(update("fill", qty="2", price="50", coid="someone-else"))
    assert book.position("AAPL") == D(2)
    assert book.working("AAPL") == D(10)


# --- working, exposure, gross exposure -----------------------------------------------------------


def exposed() -> Portfolio:
    book = Portfolio()
    book.apply(update("fill", "buy", "5", "90", execution_id="x1", coid="old"))
    book.add_working("a1", intent(qty="10"))
    book.add_working("a2", intent(side="sell", qty="3"))
    book.add_working("m1", intent(symbol="MSFT", side="sell", qty="5"))
    book.mark("AAPL", 100.0)
    book.mark("MSFT", 400.0)
    return book


def test_working_sums_the_signed_orders_of_a_symbol() -> None:
    book = exposed()
    assert book.working("AAPL") == D(7)
    assert book.working("MSFT") == D(-5)
    assert book.working("TSLA") == D(0)


def test_exposure_is_held_plus_working() -> None:
    book = exposed()
    assert book.exposure("AAPL") == D(12)
    assert book.exposure("MSFT") == D(-5)


def test_gross_exposure_sums_absolute_exposure_at_the_marks() -> None:
    book = exposed()
    assert book.gross_exposure() == D(12 * 100 + 5 * 400)


def test_gross_exposure_with_an_extra_order_on_a_marked_symbol_uses_the_mark() -> None:
    book = exposed()
    assert book.gross_exposure(("AAPL", D(-20), D(999))) == D(8 * 100 + 5 * 400)
    assert book.gross_exposure(("MSFT", D(-5), D(1))) == D(12 * 100 + 10 * 400)


def test_gross_exposure_with_an_extra_order_on_an_unmarked_symbol_uses_its_price() -> None:
    book = exposed()
    assert book.gross_exposure(("TSLA", D(-2), D(250))) == D(3200 + 500)


def test_the_mark_is_taken_exactly_from_the_float() -> None:
    book = Portfolio()
    book.mark("AAPL", 0.1)
    assert book.marks["AAPL"] == D("0.1")


# --- PnL ----------------------------------------------------------------------------------------


def test_unrealized_and_pnl_against_the_marks() -> None:
    book = Portfolio()
    book.apply(update("fill", "buy", "10", "100", symbol="AAPL", execution_id="x1"))
    book.apply(update("fill", "sell", "4", "106", symbol="AAPL", execution_id="x2"))  # +24
    book.apply(update("fill", "sell", "5", "400", symbol="MSFT", execution_id="x3"))
    book.apply(update("fill", "buy", "3", "10", symbol="TSLA", execution_id="x4"))  # no mark
    assert book.unrealized() == 0
    book.mark("AAPL", 103.5)
    book.mark("MSFT", 390.0)
    assert book.realized() == D(24)
    assert book.unrealized() == D(6) * D("3.5") + D(-5) * D(-10)  # 21 + 50
    assert book.pnl() == D(24) + D(71)
    book.mark("MSFT", 410.25)
    assert book.unrealized() == D(21) + D("-51.25")


def test_a_closed_position_has_no_unrealized_pnl() -> None:
    book = Portfolio()
    book.apply(update("fill", "buy", "10", "100", execution_id="x1"))
    book.apply(update("fill", "sell", "10", "101", execution_id="x2"))
    book.mark("AAPL", 150.0)
    assert (book.realized(), book.unrealized(), book.pnl()) == (D(10), D(0), D(10))


# --- reconciliation -------------------------------------------------------------------------------


def test_replace_takes_the_venue_positions_and_keeps_unchanged_averages() -> None:
    book = Portfolio()
    book.apply(update("fill", "buy", "10", "100", symbol="AAPL", execution_id="x1"))
    book.apply(update("fill", "sell", "5", "400", symbol="MSFT", execution_id="x2"))
    book.apply(update("fill", "buy", "2", "20", symbol="GONE", execution_id="x3"))
    book.apply(update("fill", "sell", "1", "25", symbol="GONE", execution_id="x4"))  # +5
    book.mark("AAPL", 105.0)
    book.mark("MSFT", 390.0)
    book.replace({"AAPL": D(10), "MSFT": D(-8)}, [])
    assert (book.positions["AAPL"].qty, book.positions["AAPL"].avg_price) == (D(10), D(100))
    assert (book.positions["MSFT"].qty, book.positions["MSFT"].avg_price) == (D(-8), D(390))
    assert (book.positions["GONE"].qty, book.positions["GONE"].avg_price) == (D(0), D(0))
    assert book.position("GONE") == D(0)
    assert book.realized() == D(5)  # what was realised stays realised
    assert book.unrealized() == D(50)  # AAPL 10 x 5; MSFT restarts at its mark


def test_a_position_reconciled_before_any_mark_restarts_at_the_first_mark() -> None:
    book = Portfolio()  # a restart: the venue's positions arrive before any market data
    book.replace({"AAPL": D(-10), "MSFT": D(4)}, [])
    assert book.pnl() == 0
    book.mark("AAPL", 100.0)
    book.mark("MSFT", 400.0)
    assert book.positions["AAPL"].avg_price == D(100)
    assert book.pnl() == 0  # not -10 x 100 of phantom loss
    book.mark("AAPL", 101.0)
    book.mark("MSFT", 399.5)
    assert book.positions["AAPL"].avg_price == D(100)  # only the first mark sets it
    assert book.unrealized() == D(-10) + D(-2)


def test_replace_makes_the_venue_open_orders_the_working_orders() -> None:
    book = Portfolio()
    book.add_working("c1", intent(qty="10", name="ema"))
    book.add_working("stale", intent(qty="99"))
    venue = [
        Order(id="1", client_order_id="c1", symbol="AAPL", side="buy", qty=D(10), filled_qty=D(4)),
        Order(id="2", client_order_id="c9", symbol="MSFT", side="sell", qty=D(5), filled_qty=D(0)),
        Order(id="3", client_order_id="c8", symbol="TSLA", side="sell", qty=D(2)),
    ]
    book.replace({}, venue)
    assert set(book.orders) == {"c1", "c9", "c8"}
    assert book.orders["c1"].strategy == "ema"  # known locally: keeps its strategy
    assert book.orders["c9"].strategy == ""
    assert (book.working("AAPL"), book.working("MSFT"), book.working("TSLA")) == (
        D(6),
        D(-5),
        D(-2),
    )


# --- the execution memory ---------------------------------------------------------------------


def test_seen_and_remember_execution() -> None:
    book = Portfolio()
    assert not book.seen("x1")
    book.apply(update("fill", execution_id="x1"))
    assert book.seen("x1")
    book.remember_execution("x2")  # reconciliation took the venue's positions, which include it
    assert book.seen("x2")
    assert book.apply(update("fill", execution_id="x2")) is False
    assert book.position("AAPL") == D(10)
    assert book.duplicate_fills == 1


def test_the_execution_memory_is_bounded_and_forgets_the_oldest() -> None:
    book = Portfolio(seen_executions=2)
    for n in (1, 2, 3):
        book.apply(update("fill", qty="1", execution_id=f"x{n}"))
    assert [book.seen(f"x{n}") for n in (1, 2, 3)] == [False, True, True]
    book.remember_execution("x4")
    assert [book.seen(f"x{n}") for n in (2, 3, 4)] == [False, True, True]
    assert book.position("AAPL") == D(3)


# --- reconciliation support --------------------------------------------------------------------


def test_an_execution_is_one_whichever_way_it_is_reported() -> None:
    """The stream names it by execution id, the account activity by its own id: both name the
    order and its filled quantity after it."""
    book = Portfolio()
    book.remember_execution(execution_key("id-c1", D("10.0"), "20240305::activity"))
    stream = update("fill", "buy", "10", "100", execution_id="uuid-1", filled_qty="10")
    assert book.apply(stream) is False and book.duplicate_fills == 1
    assert execution_key("", None, "x9") == "x9"


def test_a_fill_of_nothing_changes_nothing() -> None:
    book = Portfolio()
    assert book.apply(update("fill", "buy", "0", "100")) is False
    assert book.positions == {} and book.fills == 0


def test_events_wait_while_frozen_and_apply_once_after() -> None:
    book = Portfolio()
    book.freeze()
    first = update("fill", "buy", "10", "100", execution_id="x1")
    assert book.apply(first) is False and book.apply(first) is False
    assert book.position("AAPL") == 0  # held back
    book.replace({"AAPL": D(0)}, [])
    assert book.thaw() == (2, True)
    assert book.position("AAPL") == 10 and book.duplicate_fills == 1 and not book.frozen


def test_a_pending_order_survives_a_replace_until_acknowledged() -> None:
    book = Portfolio()
    book.add_working("c1", intent(), pending_since=0)
    book.add_working("c2", intent())
    book.replace({}, [])
    assert set(book.orders) == {"c1"}  # c2 was answered for and the venue lacks it: gone
    book.acknowledge("c1")
    book.replace({}, [])
    assert book.orders == {} and book.pending == {}
