"""The tape: every feed's raw frames as received, appended to a file that replays them exactly.

A recorder calls :meth:`TapeWriter.write` per frame (cheap: it only encodes into memory) and
:meth:`TapeWriter.flush` on a short interval (the disk write, from a worker thread if it likes:
``write`` and ``flush`` may run on different threads; one thread flushes and closes). A tape cut
short by ``kill -9`` or a full disk reads up to its last whole record, and the reader says how many
bytes it ignored (:attr:`TapeReader.ignored_bytes`) and why (:attr:`TapeReader.tail_error`).

Format, version 1 (integers little-endian; CRC-32 is ``zlib.crc32``):

* Header, at byte 0:

  ===== ====== ==========================================================================
  bytes field  meaning
  ===== ====== ==========================================================================
  0-7   magic  ``b"TICKTAPE"``
  8-9   u16    format version (1); a reader refuses versions it does not know
  10-13 u32    N, the length of the header JSON (at most 1 MiB)
  14-17 u32    CRC-32 of the header JSON
  18..  N      :class:`TapeHeader` as msgspec JSON (UTF-8): version, created_ns, compression,
               meta; unknown keys are ignored, so version 1 can grow optional keys
  ===== ====== ==========================================================================

* Record (``data`` is the raw frame; the source name travels in every record, so any whole
  record reads on its own):

  ====== ===================================================================================
  u32    CRC-32 of everything after this field (length through data)
  u32    length: the bytes after this field, ``9 + len(source) + len(data)`` (in bytes)
  i64    ts_ns, the receive time (ns since the Unix epoch, UTC)
  u8     len(source), 1-255
  ...    source, UTF-8 (``alpaca.stocks``, ``finnhub.trades``, ...)
  ...    data, at most 1 GiB
  ====== ===================================================================================

* Body, ``compression == "none"``: records back to back, up to the end of the file.
* Body, ``compression == "zstd"``: blocks back to back; each flush writes one or more blocks
  (a new block starts after a record once a block holds 1 MiB), each an independent zstd frame:

  ====== ===================================================================================
  u32    CRC-32 of the two lengths and the frame
  u32    the zstd frame's length
  u32    the length of the records it holds (whole records, nothing else)
  ...    zstd frame (with its content size)
  ====== ===================================================================================

  A block whose checksum matches is trusted whole: its records' own checksums are not
  recomputed (they are, for records salvaged from a torn block).

Reading stops at the first thing that is not a whole, valid record (or block): a torn tail, a
checksum mismatch, garbage. Everything from there to the end of the file is ``ignored_bytes``;
nothing after a bad spot is read, since a length in garbage cannot be trusted to resynchronise.
From a torn final zstd block the reader still yields the whole records in the part of its
frame that decodes (zstd decodes in pieces of up to 128 KiB), counted in
:attr:`TapeReader.salvaged`; the torn block's bytes are all counted as ignored.

A failed flush (``ENOSPC``, ``EFBIG``, ``EIO``) cuts the file back to where that flush started
(``ftruncate``) and re-raises the ``OSError``: the file stays readable up to its last whole
record and the writer keeps every unwritten record, so the next flush writes them again, in
order, in front of the newer ones. :attr:`TapeWriter.buffered_bytes` shows the backlog for the
caller to bound. ``close`` always releases the file; if its last flush fails, the error says
how many records were not written.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import struct
import threading
import time
import zlib
from collections.abc import Generator, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal, NamedTuple, TypeAlias, cast

import msgspec
import zstandard

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_DATA_BYTES",
    "MAX_SOURCE_BYTES",
    "NS_PER_DAY",
    "TAPE_SUFFIX",
    "Compression",
    "RotatingTapeWriter",
    "TapeFormatError",
    "TapeHeader",
    "TapeReader",
    "TapeRecord",
    "TapeWriter",
    "open_tapes",
    "read_tape",
    "tape_paths",
]

TAPE_SUFFIX: Final = ".tape"
MAGIC: Final = b"TICKTAPE"
FORMAT_VERSION: Final = 1
MAX_SOURCE_BYTES: Final = 255
MAX_DATA_BYTES: Final = 1 << 30
NS_PER_DAY: Final = 86_400 * 1_000_000_000

Compression: TypeAlias = Literal["none", "zstd"]
PathArg: TypeAlias = str | os.PathLike[str]
Data: TypeAlias = bytes | bytearray | memoryview | str

_PREAMBLE: Final = struct.Struct("<8sHII")  # magic, version, header length, header CRC
_RECORD: Final = struct.Struct("<IIqB")  # CRC, length, ts_ns, source length
_RECORD_HEAD: Final = struct.Struct("<IqB")  # what the record CRC starts with
_CRC: Final = struct.Struct("<I")
_BLOCK: Final = struct.Struct("<III")  # CRC, frame length, records length
_BLOCK_LENGTHS: Final = struct.Struct("<II")
_MIN_LENGTH: Final = _RECORD.size - 8  # ts_ns + source length
_MAX_LENGTH: Final = _MIN_LENGTH + MAX_SOURCE_BYTES + MAX_DATA_BYTES
_MAX_HEADER: Final = 1 << 20
_BLOCK_TARGET: Final = 1 << 20
_MAX_BLOCK_RAW: Final = _BLOCK_TARGET + 8 + _MAX_LENGTH
_READ_CHUNK: Final = 4 << 20


class TapeFormatError(ValueError):
    """The file is not a tape this reader can read: not a tape, unknown version, bad header."""

    def __init__(self, path: PathArg, reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


class TapeHeader(msgspec.Struct, frozen=True, kw_only=True):
    """What a tape says about itself; ``created_ns`` comes from the caller (codecs has no clock)."""

    version: int
    created_ns: int
    compression: Compression
    meta: dict[str, str] = {}


class TapeRecord(NamedTuple):
    """One frame: receive time (ns, UTC), the feed's name, the bytes exactly as received."""

    ts_ns: int
    source: str
    data: bytes


_HEADER_DECODER: Final = msgspec.json.Decoder(TapeHeader)


def _header(created_ns: int, compression: str, meta: Mapping[str, str] | None) -> TapeHeader:
    fields = {
        "version": FORMAT_VERSION,
        "created_ns": created_ns,
        "compression": compression,
        "meta": dict(meta or {}),
    }
    try:
        return msgspec.convert(fields, TapeHeader)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad tape header: {exc}") from None


def _encode_header(header: TapeHeader) -> bytes:
    text = msgspec.json.encode(header)
    return _PREAMBLE.pack(MAGIC, header.version, len(text), zlib.crc32(text)) + text


def _read_header(file: IO[bytes], path: Path) -> tuple[TapeHeader, int]:
    """The header and the offset where the body starts; TapeFormatError says what is wrong."""
    preamble = file.read(_PREAMBLE.size)
    if not preamble.startswith(MAGIC):
        if MAGIC.startswith(preamble):
            raise TapeFormatError(path, f"truncated header: the file holds {len(preamble)} bytes")
        raise TapeFormatError(path, f"not a tape: starts with {preamble[:8]!r}, not {MAGIC!r}")
    if len(preamble) < _PREAMBLE.size:
        raise TapeFormatError(path, f"truncated header: the file holds {len(preamble)} bytes")
    _, version, length, crc = _PREAMBLE.unpack(preamble)
    if version != FORMAT_VERSION:
        raise TapeFormatError(
            path, f"unsupported tape version {version} (this reader knows {FORMAT_VERSION})"
        )
    if length > _MAX_HEADER:
        raise TapeFormatError(path, f"corrupt header: length {length} exceeds {_MAX_HEADER}")
    text = file.read(length)
    if len(text) < length:
        raise TapeFormatError(path, f"truncated header: {len(text)} of {length} JSON bytes")
    if zlib.crc32(text) != crc:
        raise TapeFormatError(path, "corrupt header: checksum mismatch")
    try:
        header = _HEADER_DECODER.decode(text)
    except msgspec.DecodeError as exc:
        raise TapeFormatError(path, f"corrupt header: {exc}") from None
    if header.version != version:
        raise TapeFormatError(path, f"corrupt header: says version {header.version}")
    return header, _PREAMBLE.size + length


def _source_bytes(source: str) -> bytes:
    encoded = source.encode()
    if not 0 < len(encoded) <= MAX_SOURCE_BYTES:
        raise ValueError(f"source must be 1-{MAX_SOURCE_BYTES} UTF-8 bytes, got {source[:64]!r}")
    return encoded


class _Records:
    """Records encoded in memory until a flush takes them; the owner holds the lock."""

    __slots__ = ("block", "buffer", "count", "cuts", "mark", "sources", "total")

    def __init__(self, block: int, sources: dict[str, bytes]) -> None:
        self.block = block  # zstd: the next record starts a new block once one holds this much
        self.sources = sources
        self.buffer = bytearray()
        self.cuts: list[int] = []
        self.mark = 0
        self.count = 0
        self.total = 0

    def add(self, ts_ns: int, source: str, data: Data) -> None:
        src = self.sources.get(source)
        if src is None:
            src = self.sources[source] = _source_bytes(source)
        if isinstance(data, str):
            data = data.encode()
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > MAX_DATA_BYTES:
            raise ValueError(f"a {size}-byte frame from {source} exceeds {MAX_DATA_BYTES} bytes")
        try:
            head = _RECORD_HEAD.pack(_MIN_LENGTH + len(src) + size, ts_ns, len(src))
        except struct.error:
            raise ValueError(f"ts_ns must be an int64 nanosecond count, got {ts_ns!r}") from None
        buffer = self.buffer
        if self.block and len(buffer) - self.mark >= self.block:  # this record starts a block
            self.mark = len(buffer)
            self.cuts.append(self.mark)
        buffer += _CRC.pack(zlib.crc32(data, zlib.crc32(src, zlib.crc32(head))))
        buffer += head
        buffer += src
        buffer += data
        self.count += 1
        self.total += 1

    def take(self) -> tuple[bytearray, list[int], int]:
        taken = self.buffer, self.cuts, self.count
        self.buffer, self.cuts, self.mark, self.count = bytearray(), [], 0, 0
        return taken


class TapeWriter:
    """Appends records to one tape file; see the module docstring for the format and failures.

    The file is created (truncated, or with ``exclusive=True`` refused if it exists) and its
    header written at once. ``records`` counts the records accepted by :meth:`write`,
    ``bytes_written`` the bytes on disk (compressed, header included).
    """

    def __init__(
        self,
        path: PathArg,
        *,
        created_ns: int,
        compression: Compression = "none",
        meta: Mapping[str, str] | None = None,
        level: int = 3,
        exclusive: bool = False,
    ) -> None:
        self.path = Path(path)
        self.header = _header(created_ns, compression, meta)
        self._zstd = zstandard.ZstdCompressor(level=level) if compression == "zstd" else None
        self._lock = threading.Lock()
        self._records = _Records(_BLOCK_TARGET if self._zstd else 0, {})
        self._unwritten: bytes | bytearray = b""
        self._unwritten_records = 0
        self.bytes_written = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
        self._fd = os.open(self.path, flags, 0o644)
        try:
            self._append(_encode_header(self.header))
        except OSError:
            os.close(self._fd)
            self._fd = -1
            self.path.unlink(missing_ok=True)
            raise

    @property
    def records(self) -> int:
        return self._records.total

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for a flush, or for a retry after a failed one."""
        return len(self._records.buffer) + len(self._unwritten)

    def write(self, ts_ns: int, source: str, data: Data) -> None:
        """Encode one frame into memory (text as UTF-8); ValueError if the format cannot hold it."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path}: write to a closed tape")
            self._records.add(ts_ns, source, data)

    def flush(self, fsync: bool = False) -> None:
        """Put every buffered record on disk as whole records (``os.write``; ``fsync`` on request).

        On an ``OSError`` the file is cut back to its size before this call and every record
        stays buffered for the next flush.
        """
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path}: flush of a closed tape")
            buffer, cuts, count = self._records.take()
        if count:
            encoded = buffer if self._zstd is None else self._compress(self._zstd, buffer, cuts)
            # a new object, never a resize: a failed write's traceback may still hold a view
            self._unwritten = self._unwritten + encoded if self._unwritten else encoded
            self._unwritten_records += count
        if self._unwritten:
            self._append(self._unwritten)
            self._unwritten = b""
            self._unwritten_records = 0
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush and close; idempotent. The file is closed even if the flush fails."""
        if self._fd < 0:
            return
        try:
            self.flush()
        except OSError as exc:
            exc.add_note(f"{self.path}: closed with {self._unsaved} records not written")
            raise
        finally:
            self._release()

    def __enter__(self) -> TapeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _unsaved(self) -> int:
        return self._unwritten_records + self._records.count

    def _release(self) -> None:
        """Close the file without a flush."""
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    def _adopt(self, records: _Records, lock: threading.Lock) -> None:
        """Take over a rotating writer's buffer and lock (its writes land here directly)."""
        self._records, self._lock = records, lock

    @staticmethod
    def _compress(zstd: zstandard.ZstdCompressor, buffer: bytearray, cuts: list[int]) -> bytes:
        blocks: list[bytes] = []
        start = 0
        view = memoryview(buffer)
        for end in (*cuts, len(buffer)):
            frame = zstd.compress(view[start:end])
            lengths = _BLOCK_LENGTHS.pack(len(frame), end - start)
            blocks += (_CRC.pack(zlib.crc32(frame, zlib.crc32(lengths))), lengths, frame)
            start = end
        return b"".join(blocks)

    def _append(self, data: bytes | bytearray) -> None:
        done = 0
        with memoryview(data) as view:
            try:
                while done < len(view):
                    done += os.write(self._fd, view[done:])
            except OSError:
                if done:  # a torn tail: cut it off; if that fails, the retry overwrites it
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, self.bytes_written)
                    os.lseek(self._fd, self.bytes_written, os.SEEK_SET)
                raise
        self.bytes_written += done


class _Segment:
    """The records bound for one rotated file; the file is opened at the next flush."""

    __slots__ = ("day", "first_ts", "records", "sealed", "writer")

    def __init__(self, first_ts: int, records: _Records) -> None:
        self.first_ts = first_ts
        self.day = first_ts // NS_PER_DAY
        self.records = records
        self.sealed = False
        self.writer: TapeWriter | None = None


class RotatingTapeWriter:
    """Tapes in ``directory``, a new file per UTC day (of ``ts_ns``) and past ``max_bytes``.

    Files are named ``{prefix}-{YYYYMMDD}T{HHMMSS}-{seq:04d}.tape`` after the UTC time of their
    first record, so names sort in time order, and created exclusively (``seq`` steps past an
    existing name: an earlier run's tape is never overwritten). A file starts with its first
    record and is opened at the next flush, so ``write`` never touches the disk and no records
    means no file. A record whose ``ts_ns`` falls on a later UTC day than the current file's
    first record starts a new file; the size is checked at flush, so a file ends at the first
    flush that takes it past ``max_bytes``. The first file's header carries ``created_ns``,
    later ones their first record's ``ts_ns``. ``paths`` lists every file opened, in order.
    """

    def __init__(
        self,
        directory: PathArg,
        *,
        prefix: str = "tickd",
        created_ns: int,
        compression: Compression = "none",
        meta: Mapping[str, str] | None = None,
        level: int = 3,
        max_bytes: int = 256 * 2**20,
        daily: bool = True,
    ) -> None:
        _header(created_ns, compression, meta)  # fail now, not at the first flush
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.created_ns = created_ns
        self.compression: Compression = compression
        self.meta = dict(meta or {})
        self.level = level
        self.max_bytes = max_bytes
        self.daily = daily
        self.paths: list[Path] = []
        self.records = 0
        self._block = _BLOCK_TARGET if compression == "zstd" else 0
        self._sources: dict[str, bytes] = {}
        self._segments: list[_Segment] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for a flush, or for a retry after a failed one, in every file."""
        with self._lock:
            segments = list(self._segments)
        return sum(s.writer.buffered_bytes if s.writer else len(s.records.buffer) for s in segments)

    def write(self, ts_ns: int, source: str, data: Data) -> None:
        """Encode one frame into memory, into the current file's buffer or a new file's."""
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.directory}: write to a closed tape")
            segment = self._segments[-1] if self._segments else None
            if (
                segment is None
                or segment.sealed
                or (self.daily and ts_ns // NS_PER_DAY > segment.day)
            ):
                segment = _Segment(ts_ns, _Records(self._block, self._sources))
                segment.records.add(ts_ns, source, data)
                self._segments.append(segment)
            else:
                segment.records.add(ts_ns, source, data)
            self.records += 1

    def flush(self, fsync: bool = False) -> None:
        """Open, write and close files as the rotation rules say; errors as in TapeWriter.flush."""
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.directory}: flush of a closed tape")
            segments = list(self._segments)
        for segment in segments:
            writer = segment.writer = segment.writer or self._open(segment)
            writer.flush(fsync)
            with self._lock:
                done = segment is not self._segments[-1]
                if not done and writer.bytes_written >= self.max_bytes:
                    segment.sealed = done = True
            if done:
                writer.flush(fsync)  # what came in before the seal or the next file
                writer.close()
                with self._lock:
                    self._segments.remove(segment)

    def close(self) -> None:
        """Flush and close every file; idempotent. Files are closed even if the flush fails."""
        if self._closed:
            return
        try:
            self.flush()
        except OSError as exc:
            unsaved = sum(
                s.writer._unsaved if s.writer else s.records.count for s in self._segments
            )
            exc.add_note(f"{self.directory}: closed with {unsaved} records not written")
            raise
        finally:
            with self._lock:
                self._closed = True
                segments, self._segments = self._segments, []
            for segment in segments:
                if segment.writer is not None:
                    segment.writer._release()

    def __enter__(self) -> RotatingTapeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, segment: _Segment) -> TapeWriter:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(segment.first_ts // 1_000_000_000))
        created_ns = segment.first_ts if self.paths else self.created_ns
        while True:
            path = self.directory / f"{self.prefix}-{stamp}-{self._seq:04d}{TAPE_SUFFIX}"
            self._seq += 1
            try:
                writer = TapeWriter(
                    path,
                    created_ns=created_ns,
                    compression=self.compression,
                    meta=self.meta,
                    level=self.level,
                    exclusive=True,
                )
            except FileExistsError:
                continue
            writer._adopt(segment.records, self._lock)
            self.paths.append(path)
            return writer


Frame: TypeAlias = tuple[int, str, memoryview | bytes]
# A body parser yields frames and returns (the offset after the last good one, why it stopped).
_Body: TypeAlias = Generator[Frame, None, tuple[int, str | None]]


def _parse(
    buf: bytes, pos: int, names: dict[bytes, str], zero_copy: bool, verify: bool = True
) -> tuple[list[Frame], int, str | None]:
    """The whole valid records in ``buf[pos:]``, where they end, and why parsing stopped there.

    The reason is None when the rest is empty or an incomplete record (more bytes may follow).
    ``verify=False`` skips the record checksums, for a zstd block whose own checksum matched.
    """
    out: list[Frame] = []
    append = out.append
    unpack = _RECORD.unpack_from
    crc32 = zlib.crc32
    view = memoryview(buf)
    payload = view if zero_copy else buf
    make = tuple.__new__
    kind = tuple if zero_copy else TapeRecord
    fixed, least, most = _RECORD.size, _MIN_LENGTH, _MAX_LENGTH
    end = len(buf)
    while end - pos >= fixed:
        crc, length, ts_ns, size = unpack(buf, pos)
        if not least + size <= length <= most:
            return out, pos, f"impossible record length {length}"
        stop = pos + 8 + length
        if stop > end:
            break
        if verify and crc32(view[pos + 4 : stop]) != crc:
            return out, pos, "record checksum mismatch"
        start = pos + fixed
        key = buf[start : start + size]
        name = names.get(key)
        if name is None:
            try:
                name = names[key] = key.decode()
            except UnicodeDecodeError:
                return out, pos, "source name not UTF-8"
        append(make(kind, (ts_ns, name, payload[start + size : stop])))
        pos = stop
    return out, pos, None


class TapeReader:
    """Reads a tape's records in file order; the header is read and checked at construction.

    After an iteration, ``records`` counts the records yielded, ``ignored_bytes`` the bytes
    from the first thing that was not a whole, valid record (or zstd block) to the end of the
    file as it stood, ``tail_error`` says what that was (None for a clean end) and
    ``salvaged`` counts the records recovered from a torn zstd block. Iterating again rereads.
    """

    def __init__(self, path: PathArg) -> None:
        self.path = Path(path)
        with self.path.open("rb") as file:
            self.header, self._body = _read_header(file, self.path)
        self.records = 0
        self.ignored_bytes = 0
        self.salvaged = 0
        self.tail_error: str | None = None
        self.position = 0  # bytes of the file read so far (a progress bar's measure)

    def __iter__(self) -> Iterator[TapeRecord]:
        return cast(Iterator[TapeRecord], self._read(zero_copy=False))

    def frames(self) -> Iterator[Frame]:
        """Like iterating, with each frame's data a memoryview into the read buffer (no copy)."""
        return self._read(zero_copy=True)

    def _read(self, zero_copy: bool) -> Iterator[Frame]:
        self.records = self.ignored_bytes = self.salvaged = 0
        self.tail_error = None
        names: dict[bytes, str] = {}
        with self.path.open("rb") as file:
            file.seek(self._body)
            body = self._blocks if self.header.compression == "zstd" else self._plain
            good_end, problem = yield from body(file, names, zero_copy)
            self.ignored_bytes = os.fstat(file.fileno()).st_size - good_end
        if problem is not None:
            self.tail_error = f"{problem} at byte {good_end}"

    def _plain(self, file: IO[bytes], names: dict[bytes, str], zero_copy: bool) -> _Body:
        offset = self._body  # the file offset of buf[0]
        buf, pos = b"", 0
        while True:
            out, pos, problem = _parse(buf, pos, names, zero_copy)
            if out:
                yield from out
                self.records += len(out)
            if problem is not None:
                return offset + pos, problem
            left = len(buf) - pos
            need = 8 + _CRC.unpack_from(buf, pos + 4)[0] - left if left >= 8 else 0
            if need > os.fstat(file.fileno()).st_size - offset - len(buf):
                return offset + pos, "torn record"
            chunk = file.read(max(_READ_CHUNK, need))
            self.position = file.tell()
            if not chunk:
                return offset + pos, ("torn record" if left else None)
            offset += pos
            buf, pos = buf[pos:] + chunk, 0

    def _blocks(self, file: IO[bytes], names: dict[bytes, str], zero_copy: bool) -> _Body:
        offset = self._body
        zstd = zstandard.ZstdDecompressor()
        while True:
            head = file.read(_BLOCK.size)
            if not head:
                return offset, None
            if len(head) < _BLOCK.size:
                return offset, "torn block"
            crc, length, raw_length = _BLOCK.unpack(head)
            if raw_length > _MAX_BLOCK_RAW:
                return offset, f"impossible block length {raw_length}"
            left = os.fstat(file.fileno()).st_size - offset - _BLOCK.size
            frame = file.read(min(length, left))
            self.position = file.tell()
            if len(frame) < length:
                yield from self._salvage(zstd, frame, names, zero_copy)
                return offset, "torn block"
            if zlib.crc32(frame, zlib.crc32(head[4:])) != crc:
                return offset, "block checksum mismatch"
            try:
                raw = zstd.decompress(frame)
            except zstandard.ZstdError as exc:
                return offset, f"block does not decompress: {exc}"
            out, pos, problem = _parse(raw, 0, names, zero_copy, verify=False)
            if problem is None and (pos != raw_length or len(raw) != raw_length):
                problem = "block does not hold whole records"
            if problem is not None:  # a block is read whole or not at all
                return offset, problem
            yield from out
            self.records += len(out)
            offset += _BLOCK.size + length

    def _salvage(
        self,
        zstd: zstandard.ZstdDecompressor,
        frame: bytes,
        names: dict[bytes, str],
        zero_copy: bool,
    ) -> Iterator[Frame]:
        try:
            raw = zstd.decompressobj().decompress(frame)
        except zstandard.ZstdError:
            return
        out = _parse(raw, 0, names, zero_copy)[0]
        yield from out
        self.records += len(out)
        self.salvaged += len(out)


def read_tape(path: PathArg) -> tuple[TapeHeader, list[TapeRecord], int]:
    """A whole tape in memory: its header, its records and the ignored bytes at its end."""
    reader = TapeReader(path)
    records = list(reader)
    return reader.header, records, reader.ignored_bytes


def tape_paths(path: PathArg) -> list[Path]:
    """A file as ``[it]``; a directory as its ``*.tape`` files in name (so time) order."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == TAPE_SUFFIX and p.is_file())
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no tape file or directory", str(path))
    return [path]


def open_tapes(paths: Sequence[PathArg]) -> Iterator[TapeRecord]:
    """The records of several tapes (files or directories) merged by ``ts_ns``.

    Each file is taken in its own order; equal times keep the order of ``paths``. Every header
    is checked before the first record is yielded.
    """
    readers = [TapeReader(p) for path in paths for p in tape_paths(path)]
    return heapq.merge(*readers, key=itemgetter(0))
