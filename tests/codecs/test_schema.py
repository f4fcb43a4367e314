"""The schema's own rules: receive stamps, bar kinds, int64 bounds, tags."""

import threading

import msgspec
import pytest

from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoDailyBar,
    CryptoUpdatedBar,
    DailyBar,
    Trade,
    UpdatedBar,
    receiving,
)


def trade() -> Trade:
    return Trade(symbol="AAPL", ts_event=1, price=1.0, size=1)


def test_receive_stamp_applies_inside_the_block_only() -> None:
    assert trade().ts_recv == 0
    with receiving(42):
        assert trade().ts_recv == 42
        with receiving(7):
            assert trade().ts_recv == 7
        assert trade().ts_recv == 42
        assert Trade(symbol="A", ts_event=1, price=1.0, size=1, ts_recv=3).ts_recv == 3
    assert trade().ts_recv == 0


def test_receive_stamp_does_not_leak_into_other_threads() -> None:
    seen: list[int] = []
    with receiving(42):
        worker = threading.Thread(target=lambda: seen.append(trade().ts_recv))
        worker.start()
        worker.join()
    assert seen == [0]


def test_bar_kinds_are_subclasses_with_their_own_tag() -> None:
    for minute, updated, daily in (
        (Bar, UpdatedBar, DailyBar),
        (CryptoBar, CryptoUpdatedBar, CryptoDailyBar),
    ):
        assert issubclass(updated, minute) and issubclass(daily, minute)
        assert (minute.kind, updated.kind, daily.kind) == ("minute", "updated", "daily")
        tags = [cls.__struct_config__.tag for cls in (minute, updated, daily)]
        assert tags == ["b", "u", "d"]


def test_sizes_beyond_int64_are_refused_on_decode() -> None:
    body = b'{"T":"t","S":"A","t":1,"p":1.0,"s":9223372036854775808}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=Trade)
    assert msgspec.json.decode(body.replace(b"808", b"807"), type=Trade).size == 2**63 - 1
