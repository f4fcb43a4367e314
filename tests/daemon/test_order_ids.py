"""Deterministic client order ids and the state directory's salt."""

from __future__ import annotations

import os
import stat
import string
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickd.daemon.broker.ids import PREFIX, client_order_id, load_salt

ARGS = ("0123456789abcdef0123456789abcdef", "ema_cross", "Bar:AAPL:1709650800000000000", "AAPL")


def test_the_same_decision_always_gets_the_same_id() -> None:
    assert client_order_id(*ARGS) == client_order_id(*ARGS)
    assert client_order_id(*ARGS) == client_order_id(*[str(a) for a in ARGS])


@pytest.mark.parametrize("which", range(4))
def test_the_id_changes_when_any_part_changes(which: int) -> None:
    changed = list(ARGS)
    changed[which] += "x"
    assert client_order_id(*changed) != client_order_id(*ARGS)


def test_moving_text_from_one_part_to_the_next_changes_the_id() -> None:
    salt = ARGS[0]
    assert client_order_id(salt, "ab", "c", "AAPL") != client_order_id(salt, "a", "bc", "AAPL")
    assert client_order_id(salt, "s", "e", "BTC/USD") != client_order_id(salt, "s", "eB", "TC/USD")


def test_the_id_fits_alpaca_and_names_tickd() -> None:
    coid = client_order_id(*ARGS)
    assert coid.startswith(PREFIX)
    assert len(coid) <= 128
    long = client_order_id("s" * 64, "a" * 200, "e" * 500, "BTC/USD")
    assert long.startswith(PREFIX) and len(long) == len(coid) <= 128
    assert set(coid[len(PREFIX) :]) <= set(string.hexdigits.lower())


@pytest.fixture
def open_umask() -> Iterator[None]:
    """No umask, so the file's mode is the one the code asked for."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_the_salt_is_created_once_readable_by_the_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state" / "dir"  # created on first use
    salt = load_salt(state)
    path = state / "order-salt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(salt) >= 16
    assert path.read_text(encoding="ascii").strip() == salt
    written = path.stat().st_mtime_ns, path.stat().st_ino
    assert load_salt(state) == salt
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    assert os.listdir(state) == ["order-salt"]  # no temporary file left behind


def test_each_state_directory_has_its_own_salt(tmp_path: Path) -> None:
    assert load_salt(tmp_path / "paper") != load_salt(tmp_path / "replay")


def test_a_salt_written_by_hand_is_used_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "order-salt").write_text("  my-own-salt-of-enough-length\n", encoding="ascii")
    assert load_salt(tmp_path) == "my-own-salt-of-enough-length"


@pytest.mark.parametrize("content", ["", "\n", "abc\n", "0123456789abcde"])
def test_a_damaged_salt_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "order-salt").write_text(content, encoding="ascii")
    with pytest.raises(ValueError, match="damaged"):
        load_salt(tmp_path)
    assert (tmp_path / "order-salt").read_text(encoding="ascii") == content  # left for a human


def test_concurrent_first_calls_agree_on_one_salt(tmp_path: Path) -> None:
    state = tmp_path / "state"
    threads = 8
    barrier = threading.Barrier(threads)
    salts: list[str] = []
    errors: list[BaseException] = []

    def first_call() -> None:
        barrier.wait()
        try:
            salts.append(load_salt(state))
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    workers = [threading.Thread(target=first_call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(salts) == threads and len(set(salts)) == 1
    assert os.listdir(state) == ["order-salt"]
    assert load_salt(state) == salts[0]
