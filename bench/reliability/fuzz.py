"""The fuzz run: seeded damaged input for every decoder in ``codecs/``, the tape reader and the
daemon's config parsing, counted against the promise each API makes.

The promises: a decoder answers any bytes with a :class:`~tickd.codecs.errors.Decoded` whose
errors are :class:`~tickd.codecs.errors.DecodeError` with a source and a reason, counted in its
``stats`` where it keeps them, and (Alpaca market data) every message of a frame comes back as a
message, an error or an unknown, none silently dropped; a client-message decoder returns a
``DecodeError``; a timestamp parser raises ``TimestampError``; the tape reader refuses a bad
header with ``TapeFormatError`` naming the file and reads a damaged body up to the damage, saying
why it stopped; ``config.load`` raises ``ConfigError`` naming the key at fault. Anything else
raised is a *crash*; a typed error without its context (no source, reason or key) is
*contextless*. Both must stay at 0.

Hypothesis supplies the structure (valid frames of every source, and the same frames damaged
the ways real input goes wrong: wrong types, huge numbers, deep nesting, unknown tags, invalid
UTF-8), seeded so a run repeats; cheap byte mutations of those (flips, cuts, splices, inserted
tokens such as ``NaN``, ``1e400`` or ``\\xff``) supply the bulk. ``tests/codecs/test_fuzz.py``
checks each decoder on its own; this is the reliability figure across all of them at once.
"""

from __future__ import annotations

import math
import os
import random
import struct
import tempfile
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import zstandard
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from bench.harness import Row
from bench.reliability.figures import figure
from tickd.codecs import alpaca, alpaca_rest, alpaca_trading, finnhub, timestamps
from tickd.codecs.errors import Decoded, DecodeError, UnknownMessage
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket, alpaca_frames
from tickd.codecs.synthetic import strategies as s
from tickd.codecs.tape import TapeFormatError, TapeReader, TapeWriter
from tickd.daemon.config import ConfigError, load

# Hypothesis mixes constants from the loaded modules into what it draws, and config.load
# imports the strategies on first use: loaded now, the same seed draws the same corpus.
from tickd.strategies import catalog  # noqa: F401

__all__ = ["FULL_INPUTS", "QUICK_INPUTS", "SEED", "FuzzRun", "Tally", "figures", "fuzz", "rows"]

SEED: Final = 20_240_909
FULL_INPUTS: Final = 500_000
QUICK_INPUTS: Final = 100_000  # about 25 s here: cheap enough to keep the 100,000 in CI
FULL_CORPUS: Final = 100  # Hypothesis examples per source, valid and mangled each
QUICK_CORPUS: Final = 20
REPRODUCERS: Final = 5  # inputs kept per target, for the regression test a finding needs

Verdict = Literal["accepted", "rejected", "contextless"]


@dataclass
class Tally:
    """What one target did with its inputs."""

    inputs: int = 0
    accepted: int = 0  # decoded cleanly, or loaded
    rejected: int = 0  # answered with the promised typed error, context and counter included
    # A typed error without its context (source, reason, key) or not counted, a message
    # silently dropped, or a bad value accepted.
    contextless: int = 0
    crashes: int = 0  # anything raised that the API does not promise
    seconds: float = 0.0
    reproducers: list[str] = field(default_factory=list)  # the first crashing or contextless


@dataclass
class FuzzRun:
    seed: int
    seconds: float
    targets: dict[str, Tally]

    @property
    def inputs(self) -> int:
        return sum(t.inputs for t in self.targets.values())

    @property
    def crashes(self) -> int:
        return sum(t.crashes for t in self.targets.values())

    @property
    def contextless(self) -> int:
        return sum(t.contextless for t in self.targets.values())


class _Target:
    """A named API under fuzz: its seed corpus and a check that judges one input."""

    def __init__(
        self,
        name: str,
        corpus: list[Any],
        check: Callable[[Any], Verdict],
        mutate: Callable[[Any, random.Random, list[Any]], Any] | None = None,
    ) -> None:
        self.name = name
        self.corpus = corpus
        self.check = check
        self.mutate = mutate or _mutate

    def mutants(self, rnd: random.Random) -> Iterator[Any]:
        """Inputs without end: a corpus entry as it is (one in ten), else mutated."""
        corpus, mutate = self.corpus, self.mutate
        while True:
            data = rnd.choice(corpus)
            yield data if rnd.random() < 0.1 else mutate(data, rnd, corpus)


# --- mutation -----------------------------------------------------------------------------------

_TOKENS: Final = (
    b"NaN", b"-Infinity", b"1e400", b"-1", b"0", b"18446744073709551616", b"1" + b"0" * 40,
    b"null", b"true", b'"', b"\\", b"\\u", b"\\ud800", b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
    b"\x00", b"[", b"]", b"{", b"}", b",", b":", b"=", b"[[", b"]]", b'"""', b"'''", b"\n",
    b"inf", b"nan", b"1979-05-27T07:32:00Z", b"\xc1", b"\xd4\xff", b"\xdc\xff\xff",
    b"\xdf\xff\xff\xff\xff", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xc7\xff\xff",
    b"[" * 2000, b"{" * 2000, b"\x91" * 2000,
)  # fmt: skip


def _mutate(data: Any, rnd: random.Random, corpus: list[Any]) -> Any:
    """One to four byte-level edits: cut, flip, insert random bytes or a token, delete,
    duplicate, swap, or splice in a piece of another corpus entry (text stays text)."""
    text = isinstance(data, str)
    buf = bytearray(data.encode("utf-8", "surrogateescape") if text else data)
    for _ in range(rnd.randint(1, 4)):
        n = len(buf)
        at = rnd.randint(0, n)
        kind = rnd.randrange(8)
        if kind == 0:
            del buf[rnd.randint(0, n) :]
        elif kind == 1 and n:
            buf[min(at, n - 1)] ^= 1 << rnd.randrange(8)
        elif kind == 2:
            buf[at:at] = rnd.randbytes(rnd.randint(1, 8))
        elif kind == 3:
            buf[at:at] = rnd.choice(_TOKENS)
        elif kind == 4:
            del buf[at : at + rnd.randint(1, 16)]
        elif kind == 5:
            buf[at:at] = buf[at : at + rnd.randint(1, 64)]
        elif kind == 6 and n > 1:
            i, j = rnd.randrange(n), rnd.randrange(n)
            buf[i], buf[j] = buf[j], buf[i]
        else:
            other = rnd.choice(corpus)
            other = other.encode("utf-8", "surrogateescape") if isinstance(other, str) else other
            cut = rnd.randint(0, len(other))
            buf[at:] = other[cut : cut + rnd.randint(1, 256)] + buf[at:]
    return buf.decode("utf-8", "surrogateescape") if text else bytes(buf)


def _draw(strategy: st.SearchStrategy[Any], n: int, seed: int) -> list[Any]:
    """``n`` examples of ``strategy``, the same ones for the same seed (and the same modules
    loaded: Hypothesis draws constants from them)."""
    out: list[Any] = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


# --- codecs -------------------------------------------------------------------------------------


def _judge(result: Any, stats: Any = None, before: int = 0) -> Verdict:
    if not isinstance(result, Decoded):
        raise TypeError(f"returned {type(result).__name__}, not Decoded")
    for error in result.errors:
        if not (isinstance(error, DecodeError) and error.source and error.reason):
            return "contextless"
    if not all(isinstance(u, UnknownMessage) and u.type is not None for u in result.unknown):
        return "contextless"
    if stats is not None and stats.errors - before != len(result.errors):
        return "contextless"  # an error the daemon's counters do not see
    if any(_non_finite(message) for message in result.messages):
        return "contextless"  # a NaN or infinity accepted: it would poison every sum downstream
    return "rejected" if result.errors else "accepted"


def _non_finite(value: Any) -> bool:
    """Whether a decoded message holds a NaN or an infinity anywhere: its struct's fields, and
    the tuples, lists, dicts and structs inside them (order book levels, metric series)."""
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, msgspec.Struct):
        return any(_non_finite(getattr(value, name)) for name in value.__struct_fields__)
    if isinstance(value, tuple | list):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def _stream_target(source: str, corpus: list[bytes]) -> _Target:
    decode = s.decoder_for(source)
    stats = getattr(decode, "__self__", None)
    stats = getattr(stats, "stats", None)
    raws: Any = None
    if source.startswith("alpaca.") and source != "alpaca.trading.json":
        module = msgspec.msgpack if source.endswith("msgpack") else msgspec.json
        raws = module.Decoder(list[msgspec.Raw])

    def check(data: bytes) -> Verdict:
        before = stats.errors if stats is not None else 0
        result = decode(data)
        verdict = _judge(result, stats, before)
        if raws is not None and verdict != "contextless":
            try:
                sent = len(raws.decode(data))
            except (msgspec.DecodeError, RecursionError):
                return verdict
            if result.errors and result.errors[0].index == -1:
                return verdict
            if len(result.messages) + len(result.errors) + len(result.unknown) != sent:
                return "contextless"  # a message silently dropped
        return verdict

    return _Target(source, corpus, check)


def _rest_target(asset: alpaca_rest.AssetClass, seed: int, n: int) -> _Target:
    bars = s.bars() if asset == "stocks" else s.crypto_bars()
    pages = st.builds(
        alpaca_rest.encode_bars_page, st.lists(bars, max_size=6), st.none() | s.texts()
    )
    corpus = _draw(pages, n, seed)

    def check(data: bytes) -> Verdict:
        return _judge(alpaca_rest.decode_bars_page(data, asset))

    return _Target(f"alpaca.rest.bars.{asset}", corpus, check)


def _client_target(seed: int, n: int) -> _Target:
    """The fake exchange's side: what the feeds send, decoded by the server's decoders."""
    auth = st.builds(alpaca.AuthRequest, s.texts(), s.texts())
    subscribe = st.builds(
        alpaca.SubscribeRequest, trades=st.tuples(s.equity_symbols()), bars=st.just(("*",))
    )
    market = st.one_of(auth, subscribe)
    trading = st.one_of(
        st.builds(alpaca_trading.TradingAuthRequest, s.texts(), s.texts()),
        st.builds(alpaca_trading.ListenRequest, st.tuples(st.just("trade_updates"))),
    )
    requests = st.builds(
        finnhub.FinnhubRequest, st.sampled_from(("subscribe", "unsubscribe-news")), s.texts()
    )
    decoders: dict[bytes, Callable[[bytes], Any]] = {
        b"J": alpaca.decode_client_message,
        b"M": lambda d: alpaca.decode_client_message(d, "msgpack"),
        b"T": alpaca_trading.decode_client_message,
        b"F": finnhub.decode_client_message,
    }
    corpus = [
        *(b"J" + alpaca.encode_client_message(m) for m in _draw(market, n, seed)),
        *(b"M" + alpaca.encode_client_message(m, "msgpack") for m in _draw(market, n, seed + 1)),
        *(b"T" + alpaca_trading.encode_client_message(m) for m in _draw(trading, n, seed)),
        *(b"F" + finnhub.encode_client_message(m) for m in _draw(requests, n, seed)),
    ]

    def check(data: bytes) -> Verdict:
        decode = decoders.get(data[:1])
        if decode is None:  # the mutation hit the selector: route by a stable choice instead
            decode = decoders[b"JMTF"[len(data) % 4 : len(data) % 4 + 1]]
        result = decode(data[1:])
        if isinstance(result, DecodeError):
            return "rejected" if result.source and result.reason else "contextless"
        if isinstance(result, msgspec.Struct):
            return "accepted"
        raise TypeError(f"returned {type(result).__name__}")

    return _Target("client messages (fake exchange side)", corpus, check)


def _timestamp_target(seed: int, n: int) -> _Target:
    texts = [timestamps.format_rfc3339_ns(ns) for ns in _draw(s.timestamps(), n, seed)]
    exts = [timestamps.ns_to_msgpack_ext(ns) for ns in _draw(s.timestamps(), n, seed + 1)]
    corpus: list[Any] = [*texts, *exts]

    def check(data: str | bytes) -> Verdict:
        try:
            if isinstance(data, str):
                timestamps.parse_rfc3339_ns(data)
            else:
                timestamps.msgpack_ext_to_ns(data)
        except timestamps.TimestampError as exc:
            return "rejected" if str(exc) else "contextless"
        return "accepted"

    return _Target("timestamps (RFC 3339, msgpack ext)", corpus, check)


# --- tapes --------------------------------------------------------------------------------------


def _tape_target(compression: Literal["none", "zstd"], directory: Path, seed: int) -> _Target:
    """Valid tapes of synthetic frames; damage is bytes mutated (mostly caught by the
    checksums) or, one time in three, records or zstd blocks rewritten with their checksums
    fixed up so the damage reaches the parser behind them."""
    market = SyntheticMarket(MarketConfig(seed=seed))
    frames = alpaca_frames(market.events(400), "stocks", "json", batch=8)
    path = directory / f"fuzz-{compression}.tape"
    corpus = []
    for start, count in ((0, 1), (1, 5), (6, 20), (26, 40)):
        with TapeWriter(path, created_ns=1, compression=compression, meta={"seed": str(seed)}) as w:
            for i, frame in enumerate(frames[start : start + count]):
                w.write(1_700_000_000 * 10**9 + i, "alpaca.stocks" if i % 3 else "x" * 255, frame)
                if compression == "zstd" and i % 7 == 6:
                    w.flush()
        corpus.append(path.read_bytes())

    def mutate(data: bytes, rnd: random.Random, corpus: list[Any]) -> bytes:
        if rnd.random() < 1 / 3:
            return _refit(data, rnd, compression)
        return bytes(_mutate(data, rnd, corpus))

    def check(data: bytes) -> Verdict:
        path.write_bytes(data)
        try:
            reader = TapeReader(path)
        except TapeFormatError as exc:
            return "rejected" if str(path) in str(exc) and str(exc) != str(path) else "contextless"
        records = list(reader) if len(data) % 2 else [tuple(r) for r in reader.frames()]
        if not all(type(ts) is int and type(src) is str for ts, src, _ in records):
            raise TypeError("a record that is not (int, str, data)")
        if reader.ignored_bytes and reader.tail_error is None:
            return "contextless"  # bytes skipped without saying why
        return "rejected" if reader.ignored_bytes else "accepted"

    return _Target(f"tape reader ({compression})", corpus, check, mutate)


_HEADER: Final = struct.Struct("<8sHII")
_RECORD: Final = struct.Struct("<IIqB")
_BLOCK: Final = struct.Struct("<III")


def _refit(tape: bytes, rnd: random.Random, compression: str) -> bytes:
    """The tape with one record's fields (or one zstd block's content) damaged and the
    checksum over them recomputed: a length, a source length, a source, the data."""
    body = _HEADER.size + _HEADER.unpack_from(tape)[2]
    if compression == "zstd":
        if len(tape) < body + _BLOCK.size:
            return tape
        _, length, raw_length = _BLOCK.unpack_from(tape, body)
        frame = tape[body + _BLOCK.size : body + _BLOCK.size + length]
        raw = bytearray(zstandard.ZstdDecompressor().decompress(frame))
        raw = bytearray(_damage_record(raw, 0, rnd))
        if rnd.random() < 0.3:
            raw_length = rnd.choice((len(raw) + 1, max(0, len(raw) - 1), 2**32 - 1))
        else:
            raw_length = len(raw)
        packed = zstandard.ZstdCompressor().compress(bytes(raw))
        lengths = struct.pack("<II", len(packed), raw_length)
        crc = zlib.crc32(packed, zlib.crc32(lengths))
        block = struct.pack("<I", crc) + lengths + packed
        return tape[:body] + block + tape[body + _BLOCK.size + length :]
    return _damage_record(tape, body, rnd)


def _damage_record(buf: bytes | bytearray, pos: int, rnd: random.Random) -> bytes:
    if len(buf) < pos + _RECORD.size:
        return bytes(buf)
    _, length, ts_ns, size = _RECORD.unpack_from(buf, pos)
    stop = pos + 8 + length
    source = buf[pos + _RECORD.size : pos + _RECORD.size + size]
    data = buf[pos + _RECORD.size + size : stop]
    kind = rnd.randrange(4)
    if kind == 0:
        length = rnd.choice((0, 8, length - 1, length + 1, 2**31, 2**32 - 1))
    elif kind == 1:
        size = rnd.choice((0, 255, min(255, size + 1)))
    elif kind == 2:
        source = rnd.choice((b"\xff\xfe", b"\xed\xa0\x80", b"", b"\x00"))
        size = len(source)
    else:
        data = _mutate(bytes(data), rnd, [bytes(data)])
    if kind != 0:
        length = 9 + len(source) + len(data)
    rest = struct.pack("<Iq", length, ts_ns) + bytes([size]) + source + data
    return bytes(buf[:pos]) + struct.pack("<I", zlib.crc32(rest)) + rest + bytes(buf[stop:])


# --- config -------------------------------------------------------------------------------------

_CONFIGS: Final = (
    "",
    '[symbols]\nstocks = ["AAPL"]\ncrypto = ["BTC/USD"]\n[[strategies]]\nkind = "ema_cross"\n'
    'symbols = ["AAPL"]\nparams = {fast = 3, slow = 8, qty = 2}\n[[strategies]]\n'
    'kind = "rsi_reversion"\nname = "mr"\nsymbols = ["BTC/USD"]\n[broker]\nkind = "sim"\n'
    'fee_rate = 0.001\n[risk]\nstate = "reducing"\nmax_position = 5.0\n',
    '[finnhub]\nenabled = true\nsymbols = ["AAPL", "BINANCE:BTCUSDT"]\npoll_interval = 60.0\n'
    '[newsapi]\nenabled = true\nterms = ["apple"]\n[runtime]\nrestart_budget = 3\n'
    'reconnect_initial = 0.2\nreconnect_cap = 5.0\nbank_input = "trades"\n'
    '[record]\nenabled = true\ncompression = "none"\n[tracing]\nexporter = "none"\n',
)


class _Literal(str):
    """Written into the TOML as it is: a value too deep for a tree (the writer recurses)."""


_MAX_MESSAGE: Final = 1000
_WRONG: Final[tuple[Any, ...]] = (
    _Literal("[" * 3000 + "]" * 3000), _Literal("{a = " * 3000 + "1" + "}" * 3000),
    "text", "", "x" * 20_000, 0, -1, 2**63, 10**30, 1.5, -0.0, math.inf, -math.inf, math.nan,
    1e308, True, False, [], [1, "a"], ["AAPL"] * 1_000, {}, {"x": 1}, {"fast": [[[]]]},
)  # fmt: skip


def _config_texts() -> list[str]:
    example = Path(__file__).resolve().parents[2] / "systemd" / "tickd.toml"
    return [*_CONFIGS, example.read_text(encoding="utf-8")] if example.exists() else [*_CONFIGS]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _Literal):
        return value
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    return value.isoformat()  # type: ignore[no-any-return]  # dates and times


def _toml(document: Mapping[str, Any]) -> str:
    """A document as TOML: plain keys first, then tables, then arrays of tables."""
    lines = [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in document.items()
             if not _is_table(v) and not _is_tables(v)]  # fmt: skip
    for key, value in document.items():
        if _is_table(value):
            lines.append(f"[{_toml_value(key)}]")
            lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()]
    for key, value in document.items():
        if _is_tables(value):
            for table in value:
                lines.append(f"[[{_toml_value(key)}]]")
                lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) and not any(
        _is_table(v) or _is_tables(v) for v in value.values()
    )


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


_SECTIONS: Final = (
    *("alpaca", "symbols", "finnhub", "newsapi", "runtime", "risk", "broker", "record", "log"),
    *("tracing", "metrics", "state_dir", "strategies", "bogus"),
)
_ENV_VALUES: Final = (
    *("sip", '["A"', "1e400", "-1", "nan", "true", "{a=1}", "[[1]]", "'\\x00'", '"\\ud800"'),
    *("[" * 3000, "9" * 50, "", " "),
)


def _damage(document: dict[str, Any], rnd: random.Random) -> str | None:
    """One structural fault in a parsed config (wrong type, out of range, bad enum, unknown
    key, missing section or key, huge value); returns the key damaged (None: one removed)."""
    slots: list[tuple[Any, Any]] = [(document, k) for k in document]
    for value in document.values():
        if isinstance(value, dict):
            slots += [(value, k) for k in value]
        elif _is_tables(value):
            slots += [(table, k) for table in value for k in table]
    kind = rnd.randrange(5)
    if kind == 0 or not slots:  # an unknown key, somewhere
        tables = [document, *(v for v in document.values() if isinstance(v, dict))]
        name = rnd.choice(("bogus", "Feed", "stocks ", "alpaca", "x" * 300))
        rnd.choice(tables)[name] = _copy(rnd.choice(_WRONG))
        return name.strip() or name
    container, key = rnd.choice(slots)
    if kind == 1:  # a missing key or section
        del container[key]
        return None
    elif kind == 2:  # a string where an enum is (or a bad enum)
        container[key] = rnd.choice(("paper", "SIP", "halted ", "\u00e9", "zstd\x00", "bars"))
    else:  # wrong type, out of range, huge
        container[key] = _copy(rnd.choice(_WRONG))
    return str(key)


def _config_targets(directory: Path, seed: int) -> list[_Target]:
    path = directory / "fuzz.toml"
    texts = _config_texts()
    documents = [tomllib.loads(t) for t in texts]
    for text in texts:  # the corpus must be valid (this also imports the strategies once)
        path.write_text(text, encoding="utf-8")
        load(path, environ={})

    def judge(environ: Mapping[str, str], named: list[str | None] | None = None) -> Verdict:
        """``named``: the keys damaged, one of which the error must name (in its path, or in
        its message for a rule across keys, such as ``reconnect_initial <= reconnect_cap``)."""
        try:
            config = load(path, environ=environ)
        except ConfigError as exc:
            message = str(exc).removeprefix(f"{exc.path}: ")
            if not exc.path or not message or len(message) > _MAX_MESSAGE:
                return "contextless"  # no key named, nothing said, or a megabyte said
            # Excused: a file that is not TOML at all (too deep) has no key to name, and a
            # strategy checks its own params (its error names the strategy and the parameter).
            whole_file = exc.path == str(path)
            params = exc.path.startswith("$.strategies[") and "params" in (named or ())
            named_one = any(str(key)[:200] in str(exc) for key in named or ())
            if named and not (whole_file or params or named_one):
                return "contextless"  # names another key than the one at fault
            return "rejected"
        if not all(math.isfinite(x) for x in _floats(msgspec.to_builtins(config))):
            return "contextless"  # accepted a value meaning "never" (inf) or nothing (nan)
        return "accepted"

    def from_text(text: str) -> Verdict:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        return judge({})

    def from_structure(case: bytes) -> Verdict:
        rnd = random.Random(seed ^ zlib.crc32(case))
        document = _copy(rnd.choice(documents))
        damaged = [_damage(document, rnd) for _ in range(rnd.randint(1, 2))]
        path.write_text(_toml(document), encoding="utf-8")
        return judge({}, named=None if None in damaged else damaged)

    def from_environment(case: bytes) -> Verdict:
        rnd = random.Random(seed ^ zlib.crc32(case))
        path.write_text(rnd.choice(texts), encoding="utf-8")
        environ: dict[str, str] = {"UNRELATED": "x"}
        for _ in range(rnd.randint(1, 3)):
            section = rnd.choice(_SECTIONS)
            key = rnd.choice(("feed", "stocks", "enabled", "restart_budget", "kind", "x", ""))
            environ[f"TICKD_{section.upper()}__{key.upper()}"] = rnd.choice(_ENV_VALUES)
        if rnd.random() < 0.2:
            environ["CREDENTIALS_DIRECTORY"] = str(directory / rnd.choice(("none", "fuzz.toml")))
        return judge(environ)

    # Structure and environment cases are seeds for the damage they draw; mutating one gives
    # another seed (the bytes' checksum), so the runner treats all three targets alike.
    seeds = [i.to_bytes(8, "little") for i in range(64)]
    return [
        _Target("config: TOML text mutated", texts, from_text),
        _Target("config: structure damaged", seeds, from_structure),
        _Target("config: environment overrides", seeds, from_environment),
    ]


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _floats(item)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- the run ------------------------------------------------------------------------------------


def _targets(directory: Path, seed: int, corpus_size: int) -> list[_Target]:
    targets = []
    for i, source in enumerate(s.SOURCES):
        valid = _draw(s.frames(source), corpus_size, seed + i)
        mangled = _draw(s.mangled_frames(source), corpus_size, seed + i)
        targets.append(_stream_target(source, valid + mangled))
    targets += [
        _rest_target("stocks", seed, corpus_size),
        _rest_target("crypto", seed, corpus_size),
    ]
    targets += [_client_target(seed, corpus_size // 4), _timestamp_target(seed, corpus_size)]
    targets += [_tape_target("none", directory, seed), _tape_target("zstd", directory, seed)]
    targets += _config_targets(directory, seed)
    return targets


def fuzz(inputs: int, seed: int = SEED, corpus_size: int = 40) -> FuzzRun:
    """Run ``inputs`` inputs spread evenly over every target; same seed, same inputs."""
    # Tapes and configs go through files: in memory (tmpfs) when the machine has it.
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="tickd-fuzz-", dir=where) as tmp:
        targets = _targets(Path(tmp), seed, corpus_size)
        tallies: dict[str, Tally] = {}
        started = time.perf_counter()
        for i, target in enumerate(targets):
            share = inputs // len(targets) + (i < inputs % len(targets))
            rnd = random.Random(seed ^ zlib.crc32(target.name.encode()))
            tallies[target.name] = _run(target, share, rnd)
        seconds = time.perf_counter() - started
    return FuzzRun(seed, seconds, tallies)


def _run(target: _Target, count: int, rnd: random.Random) -> Tally:
    tally = Tally()
    check = target.check
    started = time.perf_counter()
    for data, _ in zip(target.mutants(rnd), range(count), strict=False):
        tally.inputs += 1
        try:
            verdict = check(data)
        except Exception as exc:  # any exception here is the finding
            tally.crashes += 1
            if len(tally.reproducers) < REPRODUCERS:
                tally.reproducers.append(f"{type(exc).__name__}: {exc!s:.200} <- {data[:300]!r}")
            continue
        if verdict == "accepted":
            tally.accepted += 1
        elif verdict == "rejected":
            tally.rejected += 1
        else:
            tally.contextless += 1
            if len(tally.reproducers) < REPRODUCERS:
                tally.reproducers.append(f"contextless <- {data[:300]!r}")
    tally.seconds = time.perf_counter() - started
    return tally


def figures(quick: bool) -> list[Row]:
    """The fuzz figures: inputs, crashes and contextless errors (targets 0), per-target counts."""
    if quick:
        return rows(fuzz(QUICK_INPUTS, corpus_size=QUICK_CORPUS))
    return rows(fuzz(FULL_INPUTS, corpus_size=FULL_CORPUS))


def rows(run: FuzzRun) -> list[Row]:
    out = [
        figure("fuzz: inputs run", run.inputs, "inputs", ">=", 100_000),
        figure("fuzz: seed", run.seed, "seed"),
        figure("fuzz: crashes (untyped exceptions)", run.crashes, "crashes", "==", 0),
        figure("fuzz: contextless or uncounted errors", run.contextless, "errors", "==", 0),
        figure("fuzz: throughput", round(run.inputs / run.seconds), "inputs/s"),
    ]
    for name, tally in run.targets.items():
        unit = (
            f"inputs ({tally.rejected} refused with a typed error, {tally.crashes} crashes, "
            f"{tally.contextless} contextless)"
        )
        out.append(figure(f"fuzz: {name}", tally.inputs, unit))
    return out
