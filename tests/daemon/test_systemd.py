"""The notification protocol against a real unix datagram socket that the test owns."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from tickd.daemon.systemd import Notifier, watchdog_interval


@contextmanager
def listening(address: str) -> Iterator[list[tuple[float, str]]]:
    """A manager's end: every datagram with its monotonic arrival time."""
    received: list[tuple[float, str]] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.05)
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            received.append((time.monotonic(), data.decode()))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        done.set()
        thread.join()
        sock.close()


def test_the_watchdog_interval_is_half_the_managers_and_only_for_this_process() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": mine}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None


def test_without_a_manager_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.send("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled  # not a unix socket


def test_messages_reach_a_path_and_an_abstract_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with listening(path) as received:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        notifier.ready("ready · 0 msg/s")
        notifier.stopping()
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    ready, stopping = (text for _, text in received)
    assert ready.split("\n")[:2] == ["READY=1", "STATUS=ready · 0 msg/s"]
    assert stopping == "STOPPING=1\nSTATUS=stopping"
    name = f"tickd-test-{os.getpid()}"
    with listening("\0" + name) as received:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("STATUS=abstract")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [text for _, text in received] == ["STATUS=abstract"]


def test_a_manager_that_went_away_is_counted_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.send("WATCHDOG=1")
    assert notifier.failures == 1


@pytest.mark.anyio
async def test_pings_come_from_the_loop_and_stop_while_it_is_blocked(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # a ping every 0.1 s
    statuses = iter(range(1000))
    with listening(path) as received:
        notifier = Notifier(environ)
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run, lambda: f"n={next(statuses)}", 0.3)
            await anyio.sleep(0.6)
            blocked = time.monotonic()
            time.sleep(1.0)  # the event loop is wedged: no task runs
            unblocked = time.monotonic()
            await anyio.sleep(0.6)
            tg.cancel_scope.cancel()
    pings = [at for at, text in received if "WATCHDOG=1" in text.split("\n")]
    assert len(pings) >= 8
    assert not [at for at in pings if blocked + 0.05 < at < unblocked]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    before = [g for a, g in zip(pings, gaps, strict=False) if a < blocked - 0.15]
    assert before and max(before) < 0.3  # at the rate asked (0.1 s; a loaded machine lags)
    assert max(gaps) >= 0.9  # the block shows as one long silence
    statuses_sent = [text for _, text in received if "STATUS=" in text]
    assert 2 <= len(statuses_sent) <= len(pings)  # STATUS= every 0.3 s, with a ping


def test_a_manager_that_does_not_read_never_blocks_the_sender(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as deaf:  # bound, never read
        deaf.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        started = time.monotonic()
        sent = [notifier.send("WATCHDOG=1", "STATUS=" + "x" * 1000) for _ in range(500)]
        assert time.monotonic() - started < 5  # a blocking send would wait here for ever
    assert any(sent) and not all(sent)  # the queue filled: the rest were dropped...
    assert notifier.failures == sent.count(False)  # ...and counted


def _wait_for(received: list[tuple[float, str]], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_no_ready_after_stopping(tmp_path: Path) -> None:
    """A SIGTERM between the handshake and READY: the manager must not hear READY after
    STOPPING (it would take a stopping daemon for a started one)."""
    path = str(tmp_path / "notify")
    with listening(path) as received:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        notifier.stopping()
        notifier.ready("ready · 0 msg/s")
        notifier.send("STATUS=marker")  # ordered after whatever ready() sent
        _wait_for(received, 2)
    texts = [text for _, text in received]
    assert texts[-1] == "STATUS=marker"
    assert not [t for t in texts if "READY=1" in t.split("\n")], texts


@pytest.mark.anyio
async def test_the_stop_status_is_not_overwritten_while_stopping(tmp_path: Path) -> None:
    """After STOPPING=1 the pings go on, but the periodic STATUS= no longer says ``ready``."""
    path = str(tmp_path / "notify")
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}  # a ping every 0.05 s
    with listening(path) as received:
        notifier = Notifier(environ)
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run, lambda: "ready · 5 msg/s", 0.1)
            await anyio.sleep(0.3)
            notifier.stopping()
            stopped = time.monotonic()
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
        time.sleep(0.2)
    after = [text.split("\n") for at, text in received if at > stopped + 0.02]
    assert [f for f in after if "WATCHDOG=1" in f], "the pings stopped with the stop"
    assert not [f for f in after if "STATUS=ready · 5 msg/s" in f], after


@pytest.mark.anyio
async def test_a_status_that_fails_neither_stops_the_pings_nor_the_daemon(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}

    def broken() -> str:
        raise ZeroDivisionError("a metrics bug")

    with listening(path) as received:
        notifier = Notifier(environ)
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run, broken, 0.1)
            await anyio.sleep(0.4)
            tg.cancel_scope.cancel()
        time.sleep(0.1)
    assert len([t for _, t in received if "WATCHDOG=1" in t.split("\n")]) >= 3


def test_a_status_is_one_field_whatever_it_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with listening(path) as received:
        Notifier({"NOTIFY_SOCKET": path}).ready("feed alpaca\nREADY=0 gap")
        _wait_for(received, 1)
    [(_, text)] = received
    fields = text.split("\n")
    assert fields[0] == "READY=1" and fields[1] == "STATUS=feed alpaca READY=0 gap"
    assert len(fields) == 3 and fields[2].startswith("MAINPID=")
