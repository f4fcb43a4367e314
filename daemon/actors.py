"""Actors, their bounded mailboxes, and the supervisor that restarts them.

An actor is one task that owns one mailbox. It takes what is waiting in a batch (one hop between
tasks costs microseconds, so a frame's worth of events should cost one hop, not one per event) and
hands the batch to :meth:`Actor.handle`.

Every mailbox is bounded and says what happens when it is full:

* ``block``: the sender waits (orders, order updates, trades: nothing may be lost);
* ``conflate``: a newer message replaces the waiting one with the same key (quotes, status: only
  the latest matters), at the back of the line. A new key in a full mailbox pushes out the oldest
  waiting keyed message. Both are counted (``conflated``, ``dropped``) and logged: nothing is
  dropped silently. A message
  whose key is ``None`` (a trade, an order update, in a mailbox that also takes quotes) is never
  conflated nor pushed out: it keeps its place in line and its sender waits for room, as with
  ``block``. So a burst of quotes to a busy actor costs one waiting quote per key, not a queue
  whose back-pressure reaches the feed, while nothing else it receives can be lost.

A :class:`Supervisor` runs an actor and restarts it when it crashes, after an exponential backoff,
until the actor crashes more than ``budget`` times within ``window`` seconds: then it raises
:class:`RestartBudgetError`, which ends the daemon with a non-zero exit so the service manager
restarts the whole process. Each crash is logged with its traceback and the batch that caused it.
That batch is not handed over again: ``handle`` may have acted on part of it already, and doing
that twice (an indicator updated twice, an order sent twice) is worse than losing it loudly; its
size is counted in ``Actor.lost_in_crashes``.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import anyio
import structlog
from anyio.abc import TaskStatus
from msgspec import Struct

from .clock import Clock, LiveClock
from .latency import LatencyHistogram

__all__ = [
    "Actor",
    "Mailbox",
    "MailboxStats",
    "Policy",
    "RestartBudgetError",
    "RestartPolicy",
    "Supervisor",
    "first_error",
]

T = TypeVar("T")
Policy: TypeAlias = Literal["block", "conflate"]

_log = structlog.get_logger("tickd.actors")


class MailboxStats(Struct, kw_only=True):
    """What a mailbox has seen (read these for the daemon's metrics)."""

    sent: int = 0
    received: int = 0
    conflated: int = 0  # replaced by a newer message with the same key
    dropped: int = 0  # pushed out of a full conflating mailbox by a new key
    high_water: int = 0  # the most messages ever waiting at once


class Mailbox(Generic[T]):
    """A bounded queue with a stated policy when full; one receiver, any number of senders.

    ``key`` (conflate only) gives each message's key, e.g. its symbol, or ``None`` for a message
    that must not be conflated (see the module). ``close()`` refuses new messages
    (``anyio.ClosedResourceError``); the receiver still gets what is waiting, then
    ``anyio.EndOfStream``.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: Policy = "block",
        key: Callable[[T], Hashable | None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox {name!r}: capacity must be at least 1, not {capacity}")
        if policy not in ("block", "conflate"):
            raise ValueError(f"mailbox {name!r}: policy must be 'block' or 'conflate'")
        if (policy == "conflate") != (key is not None):
            raise ValueError(f"mailbox {name!r}: a key is needed by 'conflate' and only by it")
        self.name = name
        self.capacity = capacity
        self.policy: Policy = policy
        self.stats = MailboxStats()
        self._key = key
        self._queue: list[T] = []
        self._latest: OrderedDict[Hashable, T] = OrderedDict()
        self._unkeyed = 0  # waiting messages with no key (they wait for room, never conflate)
        self._places = 0  # their places in ``_latest``: (_UNKEYED, n) never equals a real key
        self._closed = False
        # Set only while someone waits: a send to a mailbox whose receiver is busy costs no
        # wake-up call (senders and receivers check again after every wake-up).
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._latest) if self._key is not None else len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, message: T) -> None:
        """Put ``message`` in; with ``block`` (or no key), wait while the mailbox is full."""
        if self._key is None:
            while len(self._queue) >= self.capacity and not self._closed:
                await self._wait_writable()
        elif self._unkeyed >= self.capacity and self._key(message) is None:
            while self._unkeyed >= self.capacity and not self._closed:
                await self._wait_writable()
        self.send_nowait(message)

    async def _wait_writable(self) -> None:
        if self._writable is None:
            self._writable = anyio.Event()
        await self._writable.wait()

    async def send_many(self, messages: list[T]) -> None:
        """Put ``messages`` in, in order: one wake-up for the receiver, not one per message.
        With ``block``, wait for room as often as needed (a part may be received meanwhile)."""
        if self._key is not None or self._closed:
            for message in messages:
                await self.send(message)  # conflating waits only for room for no key
            return
        start, total = 0, len(messages)
        while start < total:
            queue = self._queue  # again each time: a receiver may have taken the whole list
            room = self.capacity - len(queue)
            if room <= 0:
                await self.send(messages[start])  # waits for room (or raises when closed)
                start += 1
                continue
            part = messages[start : start + room] if start or total > room else messages
            queue.extend(part)
            start += len(part)
            stats = self.stats
            stats.sent += len(part)
            if len(queue) > stats.high_water:
                stats.high_water = len(queue)
            if self._readable is not None:
                self._readable.set()
                self._readable = None

    def send_nowait(self, message: T) -> None:
        """Put ``message`` in without waiting: ``anyio.WouldBlock`` if a blocking mailbox is full
        (a conflating one refuses only a message with no key, when full of those)."""
        if self._closed:
            raise anyio.ClosedResourceError(f"mailbox {self.name!r} is closed")
        if self._key is None:
            if len(self._queue) >= self.capacity:
                raise anyio.WouldBlock
            self._queue.append(message)
        else:
            self._conflate(message)
        self.stats.sent += 1
        self.stats.high_water = max(self.stats.high_water, len(self))
        if self._readable is not None:
            self._readable.set()
            self._readable = None

    def _conflate(self, message: T) -> None:
        key = self._key(message)  # type: ignore[misc]
        latest = self._latest
        if key is None:
            if self._unkeyed >= self.capacity:
                raise anyio.WouldBlock
            self._places += 1
            latest[_UNKEYED, self._places] = message
            self._unkeyed += 1
            return
        if key in latest:
            # The newer message goes to the back: kept in the older one's place, it would
            # overtake what was queued in between (a quote from after a fill, before the fill).
            # A key is not starved: what is ahead of it is bounded by the capacity.
            latest[key] = message
            latest.move_to_end(key)
            self.stats.conflated += 1
            return
        if len(latest) - self._unkeyed >= self.capacity:
            old_key = next(k for k in latest if not _unkeyed(k))
            del latest[old_key]
            self.stats.dropped += 1
            _log.warning("mailbox_full_dropped", mailbox=self.name, key=old_key)
        latest[key] = message

    async def receive_batch(self, limit: int) -> list[T]:
        """Wait for at least one message, then take up to ``limit`` of what is waiting, in order."""
        while not len(self):
            if self._closed:
                raise anyio.EndOfStream
            if self._readable is None:
                self._readable = anyio.Event()
            await self._readable.wait()
        batch: list[T]
        if self._key is None:
            queue = self._queue
            if len(queue) <= limit:
                batch, self._queue = queue, []
            else:
                batch = queue[:limit]
                del queue[:limit]
        else:
            latest = self._latest
            if len(latest) <= limit:
                batch = list(latest.values())
                latest.clear()
                self._unkeyed = 0
            else:
                batch = []
                for _ in range(limit):
                    key, message = latest.popitem(last=False)
                    self._unkeyed -= _unkeyed(key)
                    batch.append(message)
        self.stats.received += len(batch)
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return batch

    def close(self) -> None:
        """No more messages in; what is waiting can still be received."""
        self._closed = True
        for event in (self._readable, self._writable):
            if event is not None:
                event.set()
        self._readable = self._writable = None


_UNKEYED = object()  # marks the place of a message with no key in a conflating mailbox


def _unkeyed(key: Hashable) -> bool:
    return type(key) is tuple and len(key) == 2 and key[0] is _UNKEYED


class Actor(Generic[T]):
    """One task, one mailbox. Subclasses implement :meth:`handle`; :meth:`on_start` and
    :meth:`on_stop` run around the message loop (again on each restart)."""

    batch_limit = 1024  # the most messages handed to one handle() call

    def __init__(self, name: str, mailbox: Mailbox[T]) -> None:
        self.name = name
        self.mailbox = mailbox
        self.current: list[T] = []  # the batch being handled: logged if it crashes the actor
        self.lost_in_crashes = 0  # messages of the batches that crashed it (logged, not retried)
        self.handle_time = LatencyHistogram()  # wall time per handle() call, ns

    async def on_start(self) -> None:
        """Before the first message (connect, load state, compile)."""

    async def handle(self, batch: list[T]) -> None:
        raise NotImplementedError

    async def on_stop(self) -> None:
        """After the last message, a crash or a cancellation: releases what a successful
        :meth:`on_start` took (an ``on_start`` that raises cleans up after itself)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start, report ready, handle batches until the mailbox is closed and empty, stop."""
        await self.on_start()
        try:
            task_status.started()
            while True:
                try:
                    self.current = await self.mailbox.receive_batch(self.batch_limit)
                except anyio.EndOfStream:
                    return
                started = time.perf_counter_ns()
                await self.handle(self.current)
                self.handle_time.record(time.perf_counter_ns() - started)
                self.current = []
        finally:
            with anyio.CancelScope(shield=True):
                await self.on_stop()


class RestartPolicy(Struct, frozen=True, kw_only=True):
    """Backoff between restarts (doubling from ``backoff`` up to ``backoff_max`` seconds) and the
    budget: more than ``budget`` crashes within ``window`` seconds stops the daemon."""

    backoff: float = 0.1
    backoff_max: float = 10.0
    budget: int = 5
    window: float = 60.0


class RestartBudgetError(Exception):
    """An actor kept crashing: the daemon must stop with a non-zero exit."""

    def __init__(self, actor: str, crashes: int, window: float) -> None:
        super().__init__(f"actor {actor!r} crashed {crashes} times within {window:g} s")
        self.actor = actor
        self.crashes = crashes


class Supervisor:
    """Runs actors and restarts the ones that crash (see the module). ``restarts`` counts the
    restarts per actor name."""

    def __init__(self, policy: RestartPolicy | None = None, clock: Clock | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.clock: Clock = clock or LiveClock()
        self.restarts: Counter[str] = Counter()

    async def supervise(
        self, actor: Actor[Any], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``actor`` until its mailbox is closed and drained, restarting it after crashes.

        ``await task_group.start(supervisor.supervise, actor)`` returns once the actor's first
        ``on_start`` has succeeded. A failure before that is raised, not retried: at start-up it
        is a configuration error, and retrying would only hide it.
        """
        policy = self.policy
        window_ns = round(policy.window * 1e9)
        crashes: deque[int] = deque()  # monotonic times of the crashes within the window
        ready = False

        def started(value: None = None) -> None:
            nonlocal ready
            ready = True
            task_status.started(value)

        while True:
            try:
                await actor.run(task_status=_Ready(started) if not ready else _IGNORED)
                return
            except Exception as exc:  # cancellation is a BaseException: it passes through
                if not ready:
                    raise
                now = self.clock.monotonic_ns()
                crashes.append(now)
                while crashes and crashes[0] <= now - window_ns:
                    crashes.popleft()
                self.restarts[actor.name] += 1
                actor.lost_in_crashes += len(actor.current)
                _log.error(
                    "actor_crashed",
                    actor=actor.name,
                    batch=_excerpt(actor.current),
                    crashes_in_window=len(crashes),
                    exc_info=exc,
                )
                if len(crashes) > policy.budget:
                    raise RestartBudgetError(actor.name, len(crashes), policy.window) from exc
                backoff = min(policy.backoff * 2 ** (len(crashes) - 1), policy.backoff_max)
                await self.clock.sleep(backoff)
                actor.current = []


class _Ready(TaskStatus[None]):
    """A task status that tells the supervisor when the actor is ready."""

    def __init__(self, started: Callable[[None], None]) -> None:
        self._started = started

    def started(self, value: None = None) -> None:
        self._started(value)


_IGNORED: Any = anyio.TASK_STATUS_IGNORED


def _excerpt(batch: list[Any], limit: int = 2000) -> str:
    text = repr(batch)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(batch)} messages)"


def first_error(error: BaseException) -> BaseException:
    """The first exception inside nested exception groups (a task group adds one level each)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
