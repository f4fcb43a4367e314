"""A websocket feed: one socket at a time, around a sans-I/O session (``tickd.codecs.session``).

The protocol (handshake, subscriptions, error codes) is the session's; this module connects,
reads, decodes and carries out the session's actions, whatever the endpoint (Alpaca market data,
Alpaca ``trade_updates``, Finnhub). Per connection:

* reading never blocks: the connection hands each frame, as the protocol parses it, to a bounded
  queue with its receive time (blocking the socket is what makes Alpaca drop a "slow client");
  a full queue (frames or bytes) drops the frame, counts it and logs it, or, for a feed that may
  lose nothing, ends the connection once what is queued is handled;
* the processor task decodes frames in batches, feeds the session, and carries out its actions:
  send, publish data (a pass's data frames together), report readiness, reconnect, stop;
* the deadline watch gives up on a handshake step the server does not answer;

and, when ``silence_limit`` is set, a data watchdog: a feed that has sent no data message for
that long while its market is open is treated as dead, even if it still answers pings.

Between connections the feed waits a backoff (``backoff.py``): a short fast phase after a stream
that carried data drops, then exponential, jittered and capped, reset only once data flows again.
A server that refuses us (an HTTP status on the upgrade, a 406) ends the fast phase; a 406 waits
at least the ~90 s reap window, and so does an HTTP 429 unless its ``Retry-After`` says how long
(a stale session holds the one slot until the server reaps it). A connection lost after data
flowed is reported as a :class:`FeedGap` (from the loss to the first new message) before that
message is published; a ``fill_gap`` callback (the REST history) is awaited at that point, so
what it fetches is published in order, before the live messages that follow the gap. Fatal errors
(bad keys, no entitlement, a configuration error) raise :class:`FeedFatalError`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from time import time_ns
from typing import Any, Literal

import anyio
import structlog
from anyio.abc import TaskStatus
from msgspec import Struct
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    PayloadTooBig,
    ProtocolError,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from tickd.codecs.errors import DecodeError
from tickd.codecs.session import (
    Action,
    Deliver,
    Fatal,
    Mismatch,
    Ready,
    Reconnect,
    Rejected,
    Send,
    Session,
    StreamDecoder,
)

from ..actors import Mailbox, first_error
from ..clock import Clock, LiveClock
from ..market_hours import Market, is_open
from ..tracing import Tracing
from .backoff import Backoff
from .base import FeedFatalError, FeedGap, FeedStats

__all__ = ["Publish", "WebsocketFeed", "WebsocketSettings"]

_log = structlog.get_logger("tickd.feeds")

# HTTP statuses on the upgrade that no retry can fix (a wrong path, refused credentials).
_FATAL_HTTP = frozenset({400, 401, 403, 404})
_MAX_RETRY_AFTER = 3600.0  # a 429's Retry-After is obeyed up to this many seconds

Publish = Callable[[list[Any]], Awaitable[None]]


class WebsocketSettings(Struct, frozen=True, kw_only=True):
    url: str
    step_timeout: float = 5.0  # per handshake step; auth goes out well inside Alpaca's 10 s
    # Keepalive: a half-open connection (the peer gone without a FIN) is found within
    # ping_interval + ping_timeout, 8 s here (the library's 20 + 20 would take up to 40 s).
    ping_interval: float = 3.0
    ping_timeout: float = 5.0
    max_size: int = 16 * 2**20  # news frames and subscription acks can be large
    queue: int = 4096  # raw frames between the reader and the decoder (see tickd.daemon.eventloop)
    queue_bytes: int = 64 * 2**20  # and their bytes at most (a few huge news frames)
    batch: int = 64  # frames decoded per pass
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    # After a stream that carried data drops: this many retries 0.05-0.1 s apart (about 2 s)
    # before the exponential backoff (a restarted server is back within a second or two).
    backoff_fast: float = 0.1
    backoff_fast_attempts: int = 25
    # After an HTTP 429 on the upgrade without a Retry-After: the reap window of the stale
    # session that holds the endpoint's one slot (protocols.md 8.2; retrying sooner is the 429
    # storm of alpaca-py #740).
    rate_limited_wait: float = 90.0
    # Data watchdog: no data message for this many seconds while the market is open means the
    # connection is dead even if it answers pings (0 turns it off).
    silence_limit: float = 0.0
    market: Market = "us_equity"
    # A frame lost (the raw queue full, or a frame that does not decode): count and log it and go
    # on (market data: the reader must never block, and a missing tick is survivable), or drop
    # the connection (order updates: the gap report after the reconnect makes the broker
    # reconcile, where a silently missing fill would not).
    on_loss: Literal["count", "reconnect"] = "count"


class _QueueingConnection(ClientConnection):
    """Hands each data frame to the feed as the protocol parses it (``data_received``), with
    no message assembler and no reader task in between: one task switch less per frame, and
    nothing that could ever block the socket. Fragmented messages are put together here."""

    queue_frame: Callable[[Frame], None]
    end: Callable[[ConnectionClosed], None]
    _fragments: list[Frame] | None = None

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame):
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self.queue_frame(event)
                else:
                    self._fragments = [event]
                return
            if opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(event)
                if event.fin:
                    first, data = self._fragments[0], b"".join(f.data for f in self._fragments)
                    self._fragments = None
                    self.queue_frame(Frame(first.opcode, data))
                return
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.end(self.protocol.close_exc)  # the processor handles what is queued, then the end


def _queueing(
    queue_frame: Callable[[Frame], None], end: Callable[[ConnectionClosed], None]
) -> type[ClientConnection]:
    """A connection class bound to one connection attempt's queue."""
    return type(
        "QueueingConnection",
        (_QueueingConnection,),
        {"queue_frame": staticmethod(queue_frame), "end": staticmethod(end)},
    )


class _LostError(Exception):
    """This connection is done; reconnect after at least ``wait_at_least`` seconds.
    ``refused``: the server answered and refused us (no fast retries)."""

    def __init__(self, reason: str, wait_at_least: float = 0.0, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.wait_at_least = wait_at_least
        self.refused = refused


def _broke_protocol(closed: ConnectionClosed) -> bool:
    """Whether the server's bytes broke the websocket protocol and we closed for it: bad
    framing (1002), a text frame that is not UTF-8 (1007), a frame past ``max_size`` (1009),
    or a frame cut short by the end of the stream. An end of the stream between frames (a
    crash, a reset) is a lost connection, not a protocol error."""
    cause = closed.__cause__
    if isinstance(cause, ProtocolError | PayloadTooBig | UnicodeDecodeError):
        return True
    # The parser's end between frames says "unexpected end of stream"; mid-frame, the reader
    # says how many bytes it got of how many ("stream ends after 10 bytes, expected 200").
    return isinstance(cause, EOFError) and str(cause) != "unexpected end of stream"


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is left to the default wait)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value), _MAX_RETRY_AFTER)


class WebsocketFeed:
    """Publishes the data messages of one websocket endpoint (see the module)."""

    def __init__(
        self,
        source: str,
        settings: WebsocketSettings,
        session: Session,
        decoder: StreamDecoder,
        publish: Publish,
        *,
        headers: Mapping[str, str] | None = None,
        text_frames: bool = False,
        url: str | None = None,
        gap_at_ready: bool = False,
        fill_gap: Callable[[FeedGap], Awaitable[list[Any]]] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``url`` overrides ``settings.url`` (one carrying a token stays out of the settings,
        which get logged); ``gap_at_ready`` reports a gap when the handshake completes again
        rather than at the first data message (a stream that may stay silent for hours)."""
        self.source = source
        self.settings = settings
        self._url = url or settings.url
        self._gap_at_ready = gap_at_ready
        self.session = session
        self.decoder = decoder
        self.backoff = Backoff(
            settings.backoff_initial,
            settings.backoff_cap,
            rng,
            fast=settings.backoff_fast,
            fast_attempts=settings.backoff_fast_attempts,
        )
        self.stats = FeedStats()
        self._publish = publish
        self._headers = dict(headers or {})
        self._text_frames = text_frames  # send the session's bytes as text frames
        self._fill_gap = fill_gap
        self._clock: Clock = clock or LiveClock()
        self._ready = False  # the first handshake completed (start-up is over)
        self._streaming = False  # this connection got through its handshake
        self._lost_at: int | None = None  # when a connection that carried data was lost
        self._websocket: ClientConnection | None = None
        self._last_data_ns = 0  # monotonic time of the last data message (or of the handshake)
        self._last_frame_ns = 0  # receive stamp of the last frame handled
        self._close_reason = ""
        self._queued_bytes = 0  # bytes of the frames in the raw queue
        # The recorder's tap: every frame received, raw, with its receive stamp, before decoding.
        self.tap: Callable[[int, str, bytes | bytearray | memoryview], None] | None = None
        # Tracing's stamps: each pass's frames' receive, decode start and end (None: off).
        self.tracing: Tracing | None = None
        self.last_gap: FeedGap | None = None  # the latest one reported (the status line's)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, stream and reconnect until cancelled or a fatal error.
        ``task_group.start(feed.run)`` returns once the first handshake is complete."""
        while True:
            wait_at_least = 0.0
            try:
                await self._connection(task_status)
            except _LostError as lost:
                wait_at_least = lost.wait_at_least
                if lost.refused:
                    self.backoff.refused()
                _log.warning("feed_reconnecting", source=self.source, reason=str(lost))
            finally:
                self.session.connection_lost()
            delay = self.backoff.next_delay(wait_at_least)
            await self._clock.sleep(delay)

    async def carry_out_now(self, actions: list[Action]) -> None:
        """Send what a runtime change (a new subscription) asks for, if a socket is open;
        otherwise the next handshake sends the session's whole wanted state."""
        if actions and self._websocket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._carry_out(actions, self._websocket)

    async def _connection(self, task_status: TaskStatus[None]) -> None:
        settings = self.settings
        queue: Mailbox[tuple[int, Frame]] = Mailbox(f"{self.source}.raw", settings.queue)
        self._queued_bytes = 0
        self._close_reason = "connection closed by the server"
        try:
            websocket = await connect(
                self._url,
                additional_headers=self._headers,
                max_size=settings.max_size,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
                open_timeout=settings.step_timeout,
                close_timeout=0.25,  # a peer that ignores our close frame: stop anyway
                # The library logs to "websockets.client" (at DEBUG the request line, a token in
                # its query): tickd.daemon.logs masks secrets in the libraries' records too.
                create_connection=_queueing(
                    partial(self._queue_frame, queue), partial(self._ended, queue)
                ),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _FATAL_HTTP:
                raise FeedFatalError(self.source, f"HTTP {status} on connect", status) from exc
            wait = 0.0
            if status == 429:
                retry_after = _retry_after(exc.response.headers.get("Retry-After"))
                wait = settings.rate_limited_wait if retry_after is None else retry_after
            raise _LostError(f"HTTP {status} on connect", wait, refused=True) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _LostError(f"cannot connect: {exc!r}") from exc
        self.stats.connects += 1
        self._streaming = False
        try:
            self._websocket = websocket
            first = self.session.connection_made(self._clock.monotonic_ns())
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch_deadline, websocket)
                if settings.silence_limit > 0:
                    tasks.start_soon(self._watch_silence)
                await self._carry_out(first, websocket, task_status)
                await self._process(websocket, queue, task_status)
        except BaseExceptionGroup as group:
            # A fatal error wins; a lost connection (however it showed) means reconnect;
            # anything else (a bug, a cancellation) goes on up as it is.
            fatal, _ = group.split(FeedFatalError)
            if fatal is not None:
                raise first_error(fatal) from None
            lost, rest = group.split((_LostError, ConnectionClosed))
            if rest is not None or lost is None:
                raise
            error = first_error(lost)
            if isinstance(error, _LostError):
                raise error from None
            raise _LostError(f"connection closed: {error}") from None
        finally:
            self._websocket = None
            if self._streaming and self._lost_at is None:
                # The gap starts after the last frame that was handled.
                self._lost_at = self._last_frame_ns or self._clock.now_ns()
            with anyio.CancelScope(shield=True):
                await websocket.close()

    def _ended(self, queue: Mailbox[tuple[int, Frame]], closed: ConnectionClosed) -> None:
        if _broke_protocol(closed):
            self.stats.protocol_errors += 1
            _log.error("feed_protocol_error", source=self.source, error=repr(closed.__cause__))
        if not queue.closed:  # (an overflow that ends the connection has said why already)
            self._close_reason = f"connection closed: {closed}"
            queue.close()

    def _queue_frame(self, queue: Mailbox[tuple[int, Frame]], frame: Frame) -> None:
        """Stamp and queue one frame, from inside the protocol's data callback: nothing can
        block here. A full queue (frames or bytes) drops the frame, counted and logged, or, for
        a feed that may lose nothing, closes the queue: what is in it is still handled, then
        the connection is given up (and the gap reported)."""
        if queue.closed:  # given up after an overflow: the rest is the gap's
            self.stats.dropped_frames += 1
            return
        size = len(frame.data)
        if len(queue) < queue.capacity and self._queued_bytes + size <= self.settings.queue_bytes:
            queue.send_nowait((self._clock.now_ns(), frame))
            self._queued_bytes += size
            return
        self.stats.dropped_frames += 1
        _log.error("feed_queue_full_dropped", source=self.source, size=size)
        if self.settings.on_loss == "reconnect":
            self._close_reason = "the raw queue is full: reconnecting"
            queue.close()

    async def _watch_deadline(self, websocket: ClientConnection) -> None:
        clock = self._clock
        while True:
            deadline = self.session.deadline_ns
            now = clock.monotonic_ns()
            if deadline is not None and now >= deadline:
                await self._carry_out(self.session.check_deadline(now), websocket)
            wait = 0.05 if deadline is None else max(0.0, (deadline - now) / 1e9)
            await clock.sleep(min(wait, 0.25))

    async def _watch_silence(self) -> None:
        clock, limit = self._clock, self.settings.silence_limit
        limit_ns = round(limit * 1e9)
        while True:
            await clock.sleep(min(limit / 4, 1.0))
            quiet = clock.monotonic_ns() - self._last_data_ns
            if (
                self._streaming
                and quiet > limit_ns
                and is_open(self.settings.market, clock.now_ns())
            ):
                raise _LostError(f"no data for {quiet / 1e9:.1f} s while the market is open")

    async def _process(
        self,
        websocket: ClientConnection,
        queue: Mailbox[tuple[int, Frame]],
        task_status: TaskStatus[None],
    ) -> None:
        decoder, session, clock, tap = self.decoder, self.session, self._clock, self.tap
        tracing, source = self.tracing, self.source
        while True:
            try:
                batch = await queue.receive_batch(self.settings.batch)
            except anyio.EndOfStream:  # the reader has seen the end, and all of it is handled
                raise _LostError(self._close_reason) from None
            self.stats.frames += len(batch)
            started = time_ns() if tracing is not None else 0
            data: list[Any] = []  # consecutive frames' data, published as one batch
            for ts_recv, frame in batch:
                self._last_frame_ns = ts_recv
                payload = frame.data
                self._queued_bytes -= len(payload)
                if tap is not None:
                    tap(ts_recv, source, payload)
                decoded = decoder.decode(payload, ts_recv)
                if decoded.errors:
                    await self._undecodable(decoded.errors, data)
                actions = session.receive(decoded.messages, clock.monotonic_ns())
                if len(actions) == 1 and type(actions[0]) is Deliver and self._lost_at is None:
                    data += actions[0].messages
                    continue
                if data:
                    await self._deliver(data)
                    data = []
                await self._carry_out(actions, websocket, task_status, ts_recv)
            if tracing is not None:  # before the hand-off: the bank may start on it at once
                tracing.decoded(source, [ts for ts, _ in batch], started, time_ns())
            if data:
                await self._deliver(data)

    async def _undecodable(self, errors: list[DecodeError], data: list[Any]) -> None:
        """Count and log what did not decode; a feed that may lose nothing publishes what came
        before it and reconnects (the gap report then starts a reconciliation)."""
        for error in errors:
            self.stats.decode_errors += 1
            _log.error("feed_decode_error", source=self.source, error=error.reason)
        if self.settings.on_loss == "reconnect":
            if data:
                await self._deliver(data)
            raise _LostError(f"a frame did not decode: {errors[0].reason}")

    async def _deliver(self, messages: list[Any]) -> None:
        self.stats.messages += len(messages)
        self.backoff.reset()
        self._last_data_ns = self._clock.monotonic_ns()
        await self._publish(messages)

    async def _carry_out(
        self,
        actions: list[Action],
        websocket: ClientConnection,
        task_status: TaskStatus[None] | None = None,
        ts_recv: int = 0,
    ) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                if self._lost_at is not None:
                    await self._report_gap(ts_recv)
                await self._deliver(action.messages)
            elif isinstance(action, Send):
                await websocket.send(action.data.decode() if self._text_frames else action.data)
            elif isinstance(action, Ready):
                _log.info("feed_ready", source=self.source)
                self._streaming = True
                self._last_data_ns = self._clock.monotonic_ns()  # silence counts from here
                if not self._ready:
                    self._ready = True
                    if task_status is not None:
                        task_status.started()
                if self._gap_at_ready and self._lost_at is not None:
                    await self._report_gap(ts_recv)
            elif isinstance(action, Reconnect):
                # A reconnect with a wait (a 406: the slot is taken) is the server telling us
                # to wait: no fast retries.
                raise _LostError(
                    action.reason, action.wait_at_least, refused=action.wait_at_least > 0
                )
            elif isinstance(action, Fatal):
                raise FeedFatalError(self.source, action.reason, action.code)
            elif isinstance(action, Rejected):
                self.stats.rejected += 1
                _log.error("feed_request_rejected", source=self.source, reason=action.reason)
            elif isinstance(action, Mismatch):
                self.stats.mismatches += 1
                _log.warning(
                    "feed_subscription_mismatch",
                    source=self.source,
                    missing=action.missing,
                    unexpected=action.unexpected,
                )

    async def _report_gap(self, end_ns: int) -> None:
        """Publish the gap, then what ``fill_gap`` fetched for it, before the first new data."""
        assert self._lost_at is not None
        gap = FeedGap(source=self.source, start_ns=self._lost_at, end_ns=end_ns)
        self.last_gap = gap
        self._lost_at = None
        self.stats.gaps += 1
        _log.warning("feed_gap", source=self.source, seconds=(end_ns - gap.start_ns) / 1e9)
        await self._publish([gap])
        if self._fill_gap is not None:
            try:
                filled = await self._fill_gap(gap)
            except Exception:  # a fill that fails must not take the live feed down with it
                self.stats.backfill_failures += 1
                _log.exception("feed_gap_fill_failed", source=self.source)
                return
            if filled:
                self.stats.backfilled += len(filled)
                await self._publish(filled)
