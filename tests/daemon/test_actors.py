"""Mailboxes, actors and the supervisor, on real anyio tasks (time driven by a ManualClock)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from tickd.codecs.schema import Quote
from tickd.daemon.actors import (
    Actor,
    Mailbox,
    RestartBudgetError,
    RestartPolicy,
    Supervisor,
)
from tickd.daemon.clock import ManualClock

pytestmark = pytest.mark.anyio


def quote(symbol: str, bid: float) -> Quote:
    return Quote(symbol=symbol, ts_event=1, bid_price=bid, bid_size=1, ask_price=bid, ask_size=1)


def by_symbol(q: Quote) -> str:
    return q.symbol


# --- mailboxes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((0, "block", None), "capacity"),
        ((4, "drop", None), "policy"),
        ((4, "conflate", None), "key"),
        ((4, "block", by_symbol), "key"),
    ],
)
def test_a_mailbox_says_what_is_wrong_with_its_settings(args: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Mailbox("m", *args)


async def test_a_blocking_mailbox_makes_the_sender_wait_and_loses_nothing() -> None:
    box: Mailbox[int] = Mailbox("orders", 2)
    box.send_nowait(1)
    await box.send(2)
    with pytest.raises(anyio.WouldBlock):
        box.send_nowait(3)
    done = anyio.Event()

    async def sender() -> None:
        await box.send(3)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()  # full: the sender waits
        assert await box.receive_batch(10) == [1, 2]
        await done.wait()
    assert await box.receive_batch(10) == [3]
    assert (box.stats.sent, box.stats.received, box.stats.high_water) == (3, 3, 2)
    assert box.stats.dropped == box.stats.conflated == 0


async def test_a_batch_larger_than_the_room_left_waits_and_arrives_whole_and_in_order() -> None:
    box: Mailbox[int] = Mailbox("trades", 4)
    received: list[list[int]] = []

    async def receiver() -> None:
        while True:
            try:
                batch = await box.receive_batch(2)  # smaller than the capacity, never pausing
            except anyio.EndOfStream:
                return
            received.append(list(batch))  # as handed over (a later change would be a loss)

    async with anyio.create_task_group() as tg:
        await box.send_many([0, 1, 2, 3])  # full
        tg.start_soon(receiver)
        await box.send_many(list(range(4, 12)))  # waits for room, part by part
        await anyio.wait_all_tasks_blocked()
        box.close()
    assert [x for batch in received for x in batch] == list(range(12))
    assert (box.stats.sent, box.stats.received) == (12, 12)
    assert box.stats.high_water <= 4


async def test_a_conflating_mailbox_keeps_the_latest_per_key_in_arrival_order() -> None:
    box: Mailbox[Quote] = Mailbox("quotes", 2, "conflate", key=by_symbol)
    box.send_nowait(quote("AAPL", 1.0))
    box.send_nowait(quote("MSFT", 2.0))
    box.send_nowait(quote("AAPL", 1.5))  # replaces AAPL's, in the newer one's place
    assert [(q.symbol, q.bid_price) for q in await box.receive_batch(10)] == [
        ("MSFT", 2.0),
        ("AAPL", 1.5),
    ]
    assert box.stats.conflated == 1 and box.stats.dropped == 0
    box.send_nowait(quote("NVDA", 3.0))
    box.send_nowait(quote("AMD", 4.0))
    assert [q.symbol for q in await box.receive_batch(1)] == ["NVDA"]  # up to the limit
    assert [q.symbol for q in await box.receive_batch(1)] == ["AMD"]


async def test_a_new_key_in_a_full_conflating_mailbox_pushes_out_the_oldest_and_says_so() -> None:
    box: Mailbox[Quote] = Mailbox("quotes", 2, "conflate", key=by_symbol)
    with capture_logs() as logs:
        for symbol in ("AAPL", "MSFT", "NVDA"):
            await box.send(quote(symbol, 1.0))  # never waits
    assert [q.symbol for q in await box.receive_batch(10)] == ["MSFT", "NVDA"]
    assert box.stats.dropped == 1
    assert logs == [
        {
            "event": "mailbox_full_dropped",
            "mailbox": "quotes",
            "key": "AAPL",
            "log_level": "warning",
        }
    ]


def quotes_only(message: Any) -> str | None:
    return message.symbol if isinstance(message, Quote) else None


async def test_a_message_with_no_key_is_kept_in_order_and_waits_for_room() -> None:
    """Quotes conflate; the trades and order updates in the same mailbox (key None) are never
    conflated nor pushed out: a full mailbox makes their sender wait (regression: the strategy
    host's mailbox blocked on every quote, and a burst of them reached the feed's raw queue)."""
    box: Mailbox[Any] = Mailbox("strategies", 2, "conflate", key=quotes_only)
    box.send_nowait("trade 1")
    box.send_nowait(quote("AAPL", 1.0))
    box.send_nowait("trade 2")
    for bid in (1.5, 2.0):
        box.send_nowait(quote("AAPL", bid))  # conflated in its place, never refused
    for symbol in ("MSFT", "NVDA", "AMD"):  # new keys past capacity push out keyed ones only
        box.send_nowait(quote(symbol, 3.0))
    with pytest.raises(anyio.WouldBlock):
        box.send_nowait("trade 3")
    assert box.stats.conflated == 2 and box.stats.dropped == 2
    sent = anyio.Event()

    async def sender() -> None:
        await box.send_many(["trade 3", "trade 4"])
        sent.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert not sent.is_set()  # waits for room
        first = await box.receive_batch(3)
        await sent.wait()
    assert [m if isinstance(m, str) else m.symbol for m in first] == ["trade 1", "trade 2", "NVDA"]
    rest = await box.receive_batch(10)
    assert [m if isinstance(m, str) else m.symbol for m in rest] == ["AMD", "trade 3", "trade 4"]
    assert box.stats.sent == box.stats.received + box.stats.conflated + box.stats.dropped


async def test_batches_take_what_is_waiting_up_to_the_limit() -> None:
    box: Mailbox[int] = Mailbox("m", 10)
    for i in range(7):
        box.send_nowait(i)
    assert await box.receive_batch(3) == [0, 1, 2]
    assert await box.receive_batch(100) == [3, 4, 5, 6]
    assert len(box) == 0


async def test_a_closed_mailbox_refuses_senders_and_drains_before_ending() -> None:
    box: Mailbox[int] = Mailbox("m", 4)
    box.send_nowait(1)
    assert not box.closed
    box.close()
    assert box.closed
    with pytest.raises(anyio.ClosedResourceError):
        await box.send(2)
    assert await box.receive_batch(10) == [1]
    with pytest.raises(anyio.EndOfStream):
        await box.receive_batch(10)


async def test_closing_wakes_a_waiting_receiver_and_a_waiting_sender() -> None:
    inbox: Mailbox[int] = Mailbox("in", 1)
    full: Mailbox[int] = Mailbox("full", 1)
    full.send_nowait(0)
    outcomes: list[str] = []

    async def receiver() -> None:
        try:
            await inbox.receive_batch(1)
        except anyio.EndOfStream:
            outcomes.append("end")

    async def sender() -> None:
        try:
            await full.send(1)
        except anyio.ClosedResourceError:
            outcomes.append("closed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
        full.close()
    assert sorted(outcomes) == ["closed", "end"]


# --- actors ---------------------------------------------------------------------------------------


class Recorder(Actor[Any]):
    """Records its batches; crashes on the message "boom"; can fail to start."""

    def __init__(self, mailbox: Mailbox[Any], fail_start: bool = False) -> None:
        super().__init__("recorder", mailbox)
        self.batches: list[list[Any]] = []
        self.events: list[str] = []
        self.fail_start = fail_start
        self.gate: anyio.Event | None = None

    async def on_start(self) -> None:
        self.events.append("start")
        if self.fail_start:
            raise RuntimeError("cannot connect")

    async def handle(self, batch: list[Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if "boom" in batch:
            raise ValueError("bad message")
        self.batches.append(batch)

    async def on_stop(self) -> None:
        self.events.append("stop")


async def test_an_actor_handles_what_piled_up_while_it_was_busy_as_one_batch() -> None:
    actor = Recorder(Mailbox("m", 100))
    actor.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        actor.mailbox.send_nowait(0)
        await anyio.wait_all_tasks_blocked()  # the actor holds [0] and waits at the gate
        for i in range(1, 6):
            actor.mailbox.send_nowait(i)
        actor.gate.set()
        actor.mailbox.close()
    assert actor.batches == [[0], [1, 2, 3, 4, 5]]
    assert actor.events == ["start", "stop"]


async def test_the_base_actor_has_no_handler() -> None:
    actor: Actor[int] = Actor("bare", Mailbox("m", 1))
    actor.mailbox.send_nowait(1)
    with pytest.raises(NotImplementedError):
        await actor.run()


# --- supervision ----------------------------------------------------------------------------------


async def test_a_crashed_actor_is_restarted_after_a_doubling_backoff_and_keeps_its_mail() -> None:
    clock = ManualClock()
    supervisor = Supervisor(RestartPolicy(backoff=1.0, backoff_max=3.0, budget=5), clock)
    actor = Recorder(Mailbox("m", 100))
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.supervise, actor)
            actor.mailbox.send_nowait("boom")
            await anyio.wait_all_tasks_blocked()
            assert clock.next_deadline_ns == 1_000_000_000  # first backoff: 1 s
            actor.mailbox.send_nowait("kept")  # waits in the mailbox while the actor is down
            clock.advance(1.0)
            await anyio.wait_all_tasks_blocked()
            actor.mailbox.send_nowait("boom")
            await anyio.wait_all_tasks_blocked()
            assert clock.next_deadline_ns == clock.now_ns() + 2_000_000_000  # doubled
            clock.advance(2.0)
            await anyio.wait_all_tasks_blocked()
            actor.mailbox.close()
    assert actor.batches == [["kept"]]
    assert actor.events == ["start", "stop"] * 3
    assert supervisor.restarts["recorder"] == 2
    assert actor.lost_in_crashes == 2  # the two one-message batches that crashed it
    crashes = [entry for entry in logs if entry["event"] == "actor_crashed"]
    assert [c["batch"] for c in crashes] == ["['boom']", "['boom']"]
    assert [c["crashes_in_window"] for c in crashes] == [1, 2]
    assert all(isinstance(c["exc_info"], ValueError) for c in crashes)


async def test_an_actor_that_keeps_crashing_stops_the_daemon() -> None:
    clock = ManualClock()
    supervisor = Supervisor(RestartPolicy(backoff=0.5, budget=2, window=60.0), clock)
    actor = Recorder(Mailbox("m", 100))
    with pytest.raises(ExceptionGroup) as raised:
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.supervise, actor)
            for _ in range(3):
                actor.mailbox.send_nowait("boom")
                await anyio.wait_all_tasks_blocked()
                clock.advance(10.0)
                await anyio.wait_all_tasks_blocked()
    (error,) = raised.value.exceptions
    assert isinstance(error, RestartBudgetError)
    assert (error.actor, error.crashes) == ("recorder", 3)
    assert isinstance(error.__cause__, ValueError)


async def test_crashes_older_than_the_window_do_not_count() -> None:
    clock = ManualClock()
    supervisor = Supervisor(RestartPolicy(backoff=0.5, budget=1, window=5.0), clock)
    actor = Recorder(Mailbox("m", 100))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.supervise, actor)
        for _ in range(3):  # one crash every 10 s against a budget of 1 in 5 s: never escalates
            actor.mailbox.send_nowait("boom")
            await anyio.wait_all_tasks_blocked()
            clock.advance(10.0)
            await anyio.wait_all_tasks_blocked()
        actor.mailbox.close()
    assert supervisor.restarts["recorder"] == 3


async def test_a_failure_before_the_first_start_is_raised_not_retried() -> None:
    supervisor = Supervisor(clock=ManualClock())
    actor = Recorder(Mailbox("m", 1), fail_start=True)
    with pytest.raises(ExceptionGroup) as raised:
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.supervise, actor)
    assert [str(e) for e in raised.value.exceptions] == ["cannot connect"]
    assert actor.events == ["start"]  # on_stop pairs with an on_start that succeeded
    assert supervisor.restarts["recorder"] == 0


async def test_cancelling_a_supervised_actor_stops_it_without_a_restart() -> None:
    supervisor = Supervisor(clock=ManualClock())
    actor = Recorder(Mailbox("m", 1))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.supervise, actor)
        tg.cancel_scope.cancel()
    assert actor.events == ["start", "stop"]
    assert supervisor.restarts["recorder"] == 0


async def test_a_conflated_message_never_overtakes_what_was_queued_before_it() -> None:
    """A quote from after a fill must not be seen before the fill: the newer quote takes the
    back of the line, not the older one's place in front of the fill."""
    box: Mailbox[Any] = Mailbox(
        "host", 10, "conflate", key=lambda m: m.symbol if type(m) is Quote else None
    )
    fill = "fill"  # an unkeyed message (an order update, a bank batch)
    box.send_nowait(quote("AAPL", 1.0))
    box.send_nowait(fill)
    box.send_nowait(quote("AAPL", 1.5))
    received = await box.receive_batch(10)
    assert received[0] == fill and received[1].bid_price == 1.5 and len(received) == 2
