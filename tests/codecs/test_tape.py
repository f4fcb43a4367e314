"""The tape keeps raw frames exactly, reads a torn or full-disk tape up to its last whole record
and says how many bytes it ignored, and rotates by size and by UTC day."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tickd.codecs.tape import (
    FORMAT_VERSION,
    MAGIC,
    MAX_DATA_BYTES,
    MAX_SOURCE_BYTES,
    NS_PER_DAY,
    Compression,
    RotatingTapeWriter,
    TapeFormatError,
    TapeReader,
    TapeRecord,
    TapeWriter,
    open_tapes,
    read_tape,
    tape_paths,
)

T0 = 1_710_239_930_796_132_210  # 2024-03-12T10:38:50.796132210Z
SOURCES = ("alpaca.stocks", "alpaca.crypto", "alpaca.news", "finnhub.trades", "newsapi")
COMPRESSIONS = pytest.mark.parametrize("compression", ["none", "zstd"])


def sample(count: int, *, seed: int = 0, max_size: int = 120) -> list[TapeRecord]:
    rnd = random.Random(seed)
    return [
        TapeRecord(
            T0 + i * 1_000, SOURCES[i % len(SOURCES)], rnd.randbytes(rnd.randrange(max_size))
        )
        for i in range(count)
    ]


def write_tape(
    path: Path, records: list[TapeRecord], compression: Compression = "none", **meta: str
) -> None:
    with TapeWriter(path, created_ns=T0, compression=compression, meta=meta) as writer:
        for record in records:
            writer.write(*record)


# Round trips -------------------------------------------------------------------------------


@COMPRESSIONS
def test_records_round_trip_exactly(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "feed.tape"
    frame = '[{"T":"t","S":"AAPL","p":187.5,"t":"2024-03-12T10:38:50.79613221Z"}]'
    with TapeWriter(path, created_ns=T0, compression=compression) as writer:
        writer.write(T0, "alpaca.stocks", frame)
        writer.write(T0 + 1, "alpaca.crypto", b"\x91\x82\xa1T\xa1t")
        writer.write(T0 + 2, "alpaca.news", bytearray(b"[]"))
        writer.write(T0 + 3, "finnhub.trades", memoryview(b"xx{}yy")[2:4])
        writer.write(-5, "newsapi", b"")
        assert writer.records == 5
    assert writer.bytes_written == path.stat().st_size
    header, records, ignored = read_tape(path)
    assert records == [
        (T0, "alpaca.stocks", frame.encode()),
        (T0 + 1, "alpaca.crypto", b"\x91\x82\xa1T\xa1t"),
        (T0 + 2, "alpaca.news", b"[]"),
        (T0 + 3, "finnhub.trades", b"{}"),
        (-5, "newsapi", b""),
    ]
    assert all(type(r) is TapeRecord and type(r.data) is bytes for r in records)
    assert ignored == 0
    assert header.compression == compression


@COMPRESSIONS
def test_header_and_meta_round_trip(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "meta.tape"
    write_tape(path, [], compression, tickd="0.1.0", config="feeds: [alpaca] # é")
    reader = TapeReader(path)
    assert reader.header.version == FORMAT_VERSION
    assert reader.header.created_ns == T0
    assert reader.header.compression == compression
    assert reader.header.meta == {"tickd": "0.1.0", "config": "feeds: [alpaca] # é"}
    assert path.read_bytes().startswith(MAGIC)
    assert list(reader) == []
    assert (reader.records, reader.ignored_bytes, reader.tail_error) == (0, 0, None)


@COMPRESSIONS
def test_big_records_and_many_sources(tmp_path: Path, compression: Compression) -> None:
    rnd = random.Random(7)
    sources = [f"feed.{i}" for i in range(300)] + ["é" * (MAX_SOURCE_BYTES // 2)]
    records = [TapeRecord(T0 + i, s, rnd.randbytes(i % 50)) for i, s in enumerate(sources)]
    # bigger than a read chunk (4 MiB) and than a zstd block (1 MiB)
    records.insert(100, TapeRecord(T0, "alpaca.news", rnd.randbytes(5 << 20)))
    records.insert(200, TapeRecord(T0, "alpaca.news", b"z" * (3 << 20)))
    path = tmp_path / "big.tape"
    write_tape(path, records, compression)
    assert read_tape(path)[1:] == (records, 0)


@COMPRESSIONS
def test_frames_are_zero_copy_views_of_the_same_bytes(
    tmp_path: Path, compression: Compression
) -> None:
    records = sample(50)
    path = tmp_path / "frames.tape"
    write_tape(path, records, compression)
    reader = TapeReader(path)
    frames = list(reader.frames())
    assert all(isinstance(data, memoryview) for _, _, data in frames)
    assert [(ts, source, bytes(data)) for ts, source, data in frames] == records
    assert reader.records == 50


record_strategy = st.builds(
    TapeRecord,
    ts_ns=st.integers(-(2**63), 2**63 - 1),
    source=st.text(min_size=1, max_size=60),
    data=st.binary(max_size=300),
)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(record_strategy, max_size=40),
    compression=st.sampled_from(["none", "zstd"]),
    flush_every=st.integers(1, 50),
)
def test_any_records_round_trip(
    records: list[TapeRecord], compression: Compression, flush_every: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "any.tape"
        with TapeWriter(path, created_ns=0, compression=compression) as writer:
            for i, record in enumerate(records, 1):
                writer.write(*record)
                if i % flush_every == 0:
                    writer.flush()
        assert read_tape(path)[1:] == (records, 0)


# What the writer refuses -------------------------------------------------------------------


def test_writer_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression"):
        TapeWriter(tmp_path / "lz4.tape", created_ns=0, compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="meta"):
        TapeWriter(tmp_path / "meta.tape", created_ns=0, meta={"n": 1})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "ok.tape"
    writer = TapeWriter(path, created_ns=0)
    writer.write(1, "alpaca.stocks", b"kept")
    for source in ("", "x" * (MAX_SOURCE_BYTES + 1)):
        with pytest.raises(ValueError, match="source"):
            writer.write(2, source, b"refused")
    for ts_ns in (2**63, 1.5):
        with pytest.raises(ValueError, match="ts_ns"):
            writer.write(ts_ns, "alpaca.stocks", b"refused")  # type: ignore[arg-type]
    huge = np.zeros(MAX_DATA_BYTES + 1, np.uint8).data  # calloc'd: never touched
    with pytest.raises(ValueError, match="exceeds"):
        writer.write(2, "alpaca.stocks", huge)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(3, "alpaca.stocks", b"late")
    with pytest.raises(ValueError, match="closed"):
        writer.flush()
    assert read_tape(path)[1:] == ([(1, "alpaca.stocks", b"kept")], 0)


# Files that are not (readable) tapes -------------------------------------------------------


def _retyped(blob: bytes, **changes: Any) -> bytes:
    """A tape whose header JSON is replaced (with a matching checksum)."""
    length = int.from_bytes(blob[10:14], "little")
    header: dict[str, Any] = json.loads(blob[18 : 18 + length]) | changes
    text = json.dumps(header).encode()
    return MAGIC + struct.pack("<HII", FORMAT_VERSION, len(text), zlib.crc32(text)) + text


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda blob: b'[{"T":"t","S":"AAPL"}]', "not a tape"),
        (lambda blob: b"", "truncated header"),
        (
            lambda blob: blob[:8] + (2).to_bytes(2, "little") + blob[10:],
            "unsupported tape version 2",
        ),
        (
            lambda blob: blob[:8] + (0).to_bytes(2, "little") + blob[10:],
            "unsupported tape version 0",
        ),
        (lambda blob: blob[:10] + (2**30).to_bytes(4, "little") + blob[14:], "length"),
        (lambda blob: blob[:20] + b"#" + blob[21:], "checksum mismatch"),
        (lambda blob: _retyped(blob, compression="lz4"), "corrupt header"),
        (lambda blob: _retyped(blob, version=2), "says version 2"),
    ],
)
def test_not_a_tape_is_a_format_error_naming_the_file(
    tmp_path: Path, mangle: Any, reason: str
) -> None:
    path = tmp_path / "bad.tape"
    write_tape(path, sample(3))
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(TapeFormatError, match=reason) as info:
        TapeReader(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path
    assert isinstance(info.value, ValueError)


# Torn, corrupt and garbage tails -----------------------------------------------------------


def record_bytes(ts_ns: int, source: bytes, data: bytes) -> bytes:
    """A record laid out as the module docstring says, built independently of the writer."""
    head = struct.pack("<IqB", 9 + len(source) + len(data), ts_ns, len(source))
    return struct.pack("<I", zlib.crc32(head + source + data)) + head + source + data


def block_bytes(frame: bytes, raw_length: int) -> bytes:
    lengths = struct.pack("<II", len(frame), raw_length)
    return struct.pack("<I", zlib.crc32(lengths + frame)) + lengths + frame


@COMPRESSIONS
def test_the_layout_is_the_documented_one(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "layout.tape"
    write_tape(
        path, [TapeRecord(T0, "alpaca.stocks", b"[]"), TapeRecord(-1, "é", b"")], compression
    )
    blob = path.read_bytes()
    length = int.from_bytes(blob[10:14], "little")
    text = blob[18 : 18 + length]
    assert blob[:10] == MAGIC + b"\x01\x00"
    assert int.from_bytes(blob[14:18], "little") == zlib.crc32(text)
    assert json.loads(text) == {
        "version": 1,
        "created_ns": T0,
        "compression": compression,
        "meta": {},
    }
    body = record_bytes(T0, b"alpaca.stocks", b"[]") + record_bytes(-1, "é".encode(), b"")
    if compression == "none":
        assert blob[18 + length :] == body
    else:
        frame = blob[18 + length + 12 :]
        assert blob[18 + length :] == block_bytes(frame, len(body))
        assert zstandard.ZstdDecompressor().decompress(frame) == body


GOOD = record_bytes(7, b"alpaca.news", b"[]")


@pytest.mark.parametrize(
    ("compression", "tail", "reason"),
    [
        ("none", record_bytes(8, b"\xff\xfe", b"{}"), "source name not UTF-8"),
        ("none", GOOD[:4] + b"\x00\x00\x00\x00" + GOOD[8:], "impossible record length 0"),
        ("zstd", block_bytes(b"not a zstd frame", 16), "block does not decompress"),
        (
            "zstd",
            block_bytes(zstandard.ZstdCompressor().compress(GOOD[:-1]), len(GOOD) - 1),
            "block does not hold whole records",
        ),
        (
            "zstd",
            block_bytes(zstandard.ZstdCompressor().compress(GOOD), len(GOOD) + 1),
            "block does not hold whole records",
        ),
        ("zstd", struct.pack("<III", 0, 100, 10) + bytes(50), "torn block"),
        ("zstd", struct.pack("<III", 0, 10, 2**32 - 1) + bytes(10), "impossible block length"),
    ],
)
def test_crafted_bad_tails_stop_the_reading(
    tmp_path: Path, compression: Compression, tail: bytes, reason: str
) -> None:
    path = tmp_path / "crafted.tape"
    write_tape(path, [TapeRecord(7, "alpaca.news", b"[]")], compression)
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(tail)
    reader = TapeReader(path)
    assert list(reader) == [(7, "alpaca.news", b"[]")]
    assert reader.ignored_bytes == len(tail)
    assert reader.tail_error is not None
    assert reader.tail_error.startswith(reason)
    assert reader.tail_error.endswith(f" at byte {size}")
    assert reader.salvaged == 0


@COMPRESSIONS
def test_a_tape_cut_at_every_byte_reads_its_whole_records(
    tmp_path: Path, compression: Compression
) -> None:
    records = sample(9, max_size=40)
    full = tmp_path / "full.tape"
    with TapeWriter(full, created_ns=T0, compression=compression) as writer:
        boundaries = [(writer.bytes_written, 0)]  # (file size, records before it)
        for i, record in enumerate(records, 1):
            writer.write(*record)
            if compression == "none" or i % 2 == 0:
                writer.flush()
                boundaries.append((writer.bytes_written, i))
    boundaries.append((writer.bytes_written, len(records)))  # the last one, flushed by close
    blob = full.read_bytes()
    body = boundaries[0][0]
    cut_file = tmp_path / "cut.tape"
    for cut in range(len(blob) + 1):
        cut_file.write_bytes(blob[:cut])
        if cut < body:
            with pytest.raises(TapeFormatError, match="truncated header"):
                TapeReader(cut_file)
            continue
        reader = TapeReader(cut_file)
        got = list(reader)
        end, whole = max(b for b in boundaries if b[0] <= cut)
        assert got[:whole] == records[:whole], cut
        assert got == records[: len(got)], cut
        assert reader.salvaged == len(got) - whole
        assert reader.records == len(got)
        assert reader.ignored_bytes == cut - end, cut
        assert (reader.tail_error is None) == (cut == end), cut


def test_a_torn_zstd_block_yields_the_records_it_can(tmp_path: Path) -> None:
    rnd = random.Random(1)
    records = [TapeRecord(T0 + i, "alpaca.crypto", rnd.randbytes(1000)) for i in range(900)]
    path = tmp_path / "torn.tape"
    write_tape(path, records, "zstd")  # one flush: one block of zstd's 128 KiB blocks
    body = _body_start(path)
    blob = path.read_bytes()
    cut = body + (len(blob) - body) * 2 // 3
    path.write_bytes(blob[:cut])
    reader = TapeReader(path)
    got = list(reader)
    assert 0 < len(got) < len(records)
    assert got == records[: len(got)]
    assert reader.salvaged == len(got)
    assert reader.ignored_bytes == cut - body
    assert reader.tail_error == f"torn block at byte {body}"


def _body_start(path: Path) -> int:
    return 18 + int.from_bytes(path.read_bytes()[10:14], "little")


@COMPRESSIONS
@pytest.mark.parametrize(
    "garbage",
    [random.Random(3).randbytes(500), b"\xff" * 40, b"\x00" * 40, b"\x01"],
    ids=["random", "ones", "zeros", "one-byte"],
)
def test_garbage_after_the_records_is_ignored_and_counted(
    tmp_path: Path, compression: Compression, garbage: bytes
) -> None:
    records = sample(20)
    path = tmp_path / "garbage.tape"
    write_tape(path, records, compression)
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(garbage)
    reader = TapeReader(path)
    assert list(reader) == records
    assert reader.ignored_bytes == len(garbage)
    assert reader.tail_error is not None
    assert reader.tail_error.endswith(f"at byte {size}")


def test_a_corrupt_record_stops_the_reading_there(tmp_path: Path) -> None:
    records = sample(6, max_size=30)
    path = tmp_path / "flip.tape"
    with TapeWriter(path, created_ns=T0) as writer:
        ends = []
        for record in records:
            writer.write(*record)
            writer.flush()
            ends.append(writer.bytes_written)
    blob = bytearray(path.read_bytes())
    blob[ends[2] + 20] ^= 0x40  # inside the fourth record
    path.write_bytes(blob)
    reader = TapeReader(path)
    assert list(reader) == records[:3]
    assert reader.ignored_bytes == len(blob) - ends[2]
    assert reader.tail_error == f"record checksum mismatch at byte {ends[2]}"


WRITER_SCRIPT = """
import sys
from tickd.codecs.tape import TapeWriter
writer = TapeWriter(sys.argv[1], created_ns=0, compression=sys.argv[2])
i = 0
while True:
    writer.write(i, f"feed.{i % 3}", bytes([i % 251]) * (i * 37 % 5000))
    i += 1
    if i % 7 == 0:
        writer.flush()
        if i == 700:
            print("flushed", flush=True)
"""


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}


@COMPRESSIONS
def test_kill_9_while_writing_leaves_every_flushed_record_intact(
    tmp_path: Path, compression: Compression
) -> None:
    path = tmp_path / "killed.tape"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path), compression],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.kill()
    _, stderr = child.communicate()
    assert line == "flushed\n", stderr
    assert child.returncode == -signal.SIGKILL
    reader = TapeReader(path)
    got = list(reader)
    assert len(got) >= 700
    assert got == [
        (i, f"feed.{i % 3}", bytes([i % 251]) * (i * 37 % 5000)) for i in range(len(got))
    ]
    size = path.stat().st_size
    assert (reader.ignored_bytes == 0) == (reader.tail_error is None)
    if compression == "none":
        body = _body_start(path) + sum(17 + len(r.source) + len(r.data) for r in got)
        assert reader.ignored_bytes == size - body
    else:
        assert reader.ignored_bytes < size - _body_start(path)


# A full disk -------------------------------------------------------------------------------


@COMPRESSIONS
def test_a_full_disk_keeps_the_tape_readable_and_the_retry_writes_the_rest(
    tmp_path: Path, compression: Compression, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample(40, max_size=400)
    path = tmp_path / "full.tape"
    writer = TapeWriter(path, created_ns=T0, compression=compression)
    for record in records[:20]:
        writer.write(*record)
    writer.flush()
    size = path.stat().st_size
    for record in records[20:30]:
        writer.write(*record)
    real_write = os.write
    calls: list[int] = []

    def full_disk(fd: int, data: Any) -> int:  # the disk takes half the flush, then is full
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError) as info:
        writer.flush()
    assert info.value.errno == errno.ENOSPC
    assert path.stat().st_size == size == writer.bytes_written
    assert read_tape(path)[1:] == (records[:20], 0)
    assert writer.buffered_bytes > 0
    for record in records[30:]:
        writer.write(*record)
    writer.flush()
    assert writer.buffered_bytes == 0
    writer.close()
    assert read_tape(path)[1:] == (records, 0)


def test_close_on_a_full_disk_closes_and_says_what_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lost.tape"
    writer = TapeWriter(path, created_ns=T0)
    for record in sample(3):
        writer.write(*record)

    def full_disk(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space") as info:
        writer.close()
    assert info.value.__notes__ == [f"{path}: closed with 3 records not written"]
    writer.close()  # closed: nothing more to do
    monkeypatch.undo()
    assert read_tape(path)[1:] == ([], 0)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, where the kernel itself says ENOSPC (needs the right to mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


@COMPRESSIONS
def test_a_really_full_disk(tiny_disk: Path, compression: Compression) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(bytes(128 << 10))
    rnd = random.Random(5)
    path = tiny_disk / "full.tape"
    writer = TapeWriter(path, created_ns=T0, compression=compression)
    records: list[TapeRecord] = []
    flushed = 0
    with pytest.raises(OSError) as info:  # flush until the disk is full
        while True:
            for _ in range(10):
                records.append(TapeRecord(T0 + len(records), "alpaca.stocks", rnd.randbytes(1000)))
                writer.write(*records[-1])
            writer.flush()
            flushed = len(records)
    assert info.value.errno == errno.ENOSPC
    assert read_tape(path)[1:] == (records[:flushed], 0)
    filler.unlink()
    writer.close()
    assert read_tape(path)[1:] == (records, 0)


@COMPRESSIONS
def test_write_and_flush_on_two_threads(tmp_path: Path, compression: Compression) -> None:
    records = sample(20_000, max_size=60)
    path = tmp_path / "threads.tape"
    writer = TapeWriter(path, created_ns=T0, compression=compression)
    _write_while_flushing(writer, records)
    assert read_tape(path)[1:] == (records, 0)


def _write_while_flushing(writer: TapeWriter | RotatingTapeWriter, records: list[Any]) -> None:
    """Write on a thread while this one flushes, as the recorder does; then close."""

    def produce() -> None:
        for record in records:
            writer.write(*record)

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive():
        writer.flush()
    producer.join()
    writer.close()


def test_rotating_write_and_flush_on_two_threads(tmp_path: Path) -> None:
    rnd = random.Random(4)
    hour = 3_600 * 10**9
    records = [
        TapeRecord(T0 + i * hour // 400, SOURCES[i % 5], rnd.randbytes(rnd.randrange(300)))
        for i in range(20_000)  # 50 hours: three UTC days
    ]
    writer = RotatingTapeWriter(tmp_path, created_ns=T0, max_bytes=100_000)
    flushed = threading.Event()

    def produce() -> None:
        for i, record in enumerate(records, 1):
            writer.write(*record)
            if i % 1_000 == 0:  # ~150 kB: wait for a flush, which rotates by size
                flushed.clear()
                flushed.wait()

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive():  # a producer faster than the flushes rotated only by day
        writer.flush()
        flushed.set()
    producer.join()
    writer.close()
    assert len(writer.paths) > 3
    assert [r for p in writer.paths for r in read_tape(p)[1]] == records
    assert list(open_tapes([tmp_path])) == records


# Rotation ----------------------------------------------------------------------------------


@COMPRESSIONS
def test_rotation_by_size(tmp_path: Path, compression: Compression) -> None:
    rnd = random.Random(2)
    records = [TapeRecord(T0 + i, SOURCES[i % 5], rnd.randbytes(200)) for i in range(100)]
    with RotatingTapeWriter(
        tmp_path, created_ns=T0 - 5, compression=compression, max_bytes=2000
    ) as writer:
        for i, record in enumerate(records, 1):
            writer.write(*record)
            if i % 5 == 0:
                writer.flush()
    assert writer.records == 100
    paths = writer.paths
    assert len(paths) >= 5
    assert paths == tape_paths(tmp_path)
    assert [p.name for p in paths] == [
        f"tickd-20240312T103850-{i:04d}.tape" for i in range(len(paths))
    ]
    assert all(p.stat().st_size >= 2000 for p in paths[:-1])
    files = [read_tape(p) for p in paths]
    assert [r for _, rs, _ in files for r in rs] == records
    assert [h.created_ns for h, _, _ in files] == [T0 - 5] + [rs[0].ts_ns for _, rs, _ in files[1:]]
    assert all(h.compression == compression for h, _, _ in files)
    assert list(open_tapes(paths)) == records
    assert list(open_tapes([tmp_path])) == records


def test_rotation_by_utc_day(tmp_path: Path) -> None:
    evening = 1_710_287_999_000_000_000  # 2024-03-12T23:59:59Z
    midnight = evening + 10**9
    stamps = [evening, midnight - 1, midnight, evening + 5, midnight + NS_PER_DAY]
    records = [TapeRecord(ts, "alpaca.crypto", b"%d" % i) for i, ts in enumerate(stamps)]
    with RotatingTapeWriter(tmp_path, prefix="night", created_ns=evening) as writer:
        for record in records:
            writer.write(*record)
        writer.flush()  # three files at once
        writer.write(midnight + NS_PER_DAY - 1, "alpaca.crypto", b"5")
    assert [p.name for p in writer.paths] == [
        "night-20240312T235959-0000.tape",
        "night-20240313T000000-0001.tape",
        "night-20240314T000000-0002.tape",
    ]
    # a record stamped earlier than its file's first one (a clock step) stays in order
    assert [[r.data for r in read_tape(p)[1]] for p in writer.paths] == [
        [b"0", b"1"],
        [b"2", b"3"],
        [b"4", b"5"],
    ]


def test_one_file_without_daily_rotation(tmp_path: Path) -> None:
    with RotatingTapeWriter(tmp_path, created_ns=T0, daily=False) as writer:
        for day in range(3):
            writer.write(T0 + day * NS_PER_DAY, "newsapi", b"{}")
    assert len(writer.paths) == 1
    assert len(read_tape(writer.paths[0])[1]) == 3


def test_rotation_never_overwrites_and_no_records_means_no_file(tmp_path: Path) -> None:
    for run in range(3):
        with RotatingTapeWriter(tmp_path, created_ns=T0) as writer:
            writer.write(T0, "alpaca.stocks", b"run %d" % run)
    with RotatingTapeWriter(tmp_path, created_ns=T0) as idle:
        pass
    assert idle.paths == []
    paths = tape_paths(tmp_path)
    assert [p.name for p in paths] == [f"tickd-20240312T103850-{i:04d}.tape" for i in range(3)]
    assert [r.data for r in open_tapes(paths)] == [b"run 0", b"run 1", b"run 2"]
    with pytest.raises(ValueError, match="closed"):
        idle.write(T0, "alpaca.stocks", b"late")


def test_a_rotating_writer_on_a_full_disk_retries_and_says_what_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        RotatingTapeWriter(tmp_path, created_ns=T0, max_bytes=0)
    records = sample(5)
    writer = RotatingTapeWriter(tmp_path, created_ns=T0)
    for record in records[:3]:
        writer.write(*record)
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        writer.flush()  # the header cannot be written: no half-made file stays
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "write", real_write)
    writer.flush(fsync=True)
    assert [p.name for p in writer.paths] == ["tickd-20240312T103850-0001.tape"]
    assert read_tape(writer.paths[0])[1:] == (records[:3], 0)
    writer.write(*records[3])
    writer.write(T0 + NS_PER_DAY, "newsapi", b"a new day, no file yet")
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space") as info:
        writer.close()
    assert info.value.__notes__ == [f"{tmp_path}: closed with 2 records not written"]
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.flush()
    monkeypatch.undo()
    assert read_tape(writer.paths[0])[1:] == (records[:3], 0)


def test_open_tapes_merges_by_time_and_keeps_file_order_on_ties(tmp_path: Path) -> None:
    a = [TapeRecord(ts, "a", b"%d" % ts) for ts in (1, 3, 3, 5)]
    b = [TapeRecord(ts, "b", b"%d" % ts) for ts in (2, 3, 4)]
    write_tape(tmp_path / "a.tape", a)
    write_tape(tmp_path / "b.tape", b, "zstd")
    (tmp_path / "notes.txt").write_text("not a tape")
    merged = [(r.ts_ns, r.source) for r in open_tapes([tmp_path / "a.tape", tmp_path / "b.tape"])]
    assert merged == [(1, "a"), (2, "b"), (3, "a"), (3, "a"), (3, "b"), (4, "b"), (5, "a")]
    assert tape_paths(tmp_path) == [tmp_path / "a.tape", tmp_path / "b.tape"]
    assert tape_paths(tmp_path / "b.tape") == [tmp_path / "b.tape"]
    with pytest.raises(FileNotFoundError):
        tape_paths(tmp_path / "missing")
