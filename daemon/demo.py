"""``tickd demo``: what exists today, end to end, with no account and no network.

A seeded synthetic market is encoded as the frames Alpaca's stock and crypto streams send (JSON and
msgpack), decoded back through the real codecs and checked message for message; then a few broken
frames show the typed errors and counters. Later issues turn this into daemon + fake exchange +
strategy.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from tickd.codecs.alpaca import AlpacaDecoder, Encoding, Stream
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket, alpaca_frames, alpaca_view

_BROKEN_FRAMES: tuple[tuple[str, bytes], ...] = (
    ("truncated", b'[{"T":"t","S":"AAPL","p":1'),
    ("unknown type", b'[{"T":"zz","S":"AAPL"},{"T":"success","msg":"authenticated"}]'),
    (
        "bad timestamp",
        b'[{"T":"t","S":"AAPL","p":190.1,"s":5,"t":"2024-02-30T14:00:00Z"},'
        b'{"T":"t","S":"AAPL","p":190.2,"s":7,"t":"2024-03-04T14:00:00.000000001Z"}]',
    ),
    ("not json", b"\x00\xffgarbage"),
)


def run_demo(events: int, seed: int, show: int, out: Callable[[str], None] = print) -> int:
    """Run the demo; returns the process exit status (0 when every frame round-tripped)."""
    market = SyntheticMarket(MarketConfig(seed=seed))
    started = time.perf_counter()
    generated = market.events(events)
    counts = Counter(type(e).__name__ for e in generated).most_common()
    out(
        f"synthetic market: seed {seed}, {len(generated)} events in "
        f"{time.perf_counter() - started:.2f} s ({', '.join(f'{n} {k}' for k, n in counts)})"
    )
    failures = 0
    for stream in ("stocks", "crypto"):
        for encoding in ("json", "msgpack"):
            failures += _round_trip(generated, stream, encoding, show, out)
            show = 0
    _broken(out)
    out("demo: ok" if failures == 0 else f"demo: {failures} mismatches")
    return 0 if failures == 0 else 1


def _round_trip(
    generated: list[Any], stream: Stream, encoding: Encoding, show: int, out: Callable[[str], None]
) -> int:
    expected = alpaca_view(generated, stream)
    frames = alpaca_frames(generated, stream, encoding, batch=50)
    decoder = AlpacaDecoder(stream, encoding)
    decoded: list[Any] = []
    started = time.perf_counter_ns()
    for frame in frames:
        result = decoder.decode(frame, ts_recv=time.time_ns())
        decoded.extend(result.messages)
    elapsed = time.perf_counter_ns() - started
    stamped = all(m.ts_recv > 0 for m in decoded)
    same = [msgspec.structs.replace(m, ts_recv=0) for m in decoded] == expected
    out(
        f"alpaca {stream:<6} {encoding:<7}: {len(frames):>5} frames, {len(decoded):>6} messages, "
        f"{elapsed / max(len(decoded), 1):,.0f} ns/msg, round trip "
        f"{'exact' if same and stamped else 'MISMATCH'}, counters {decoder.stats.as_dict()}"
    )
    for message in decoded[:show]:
        out(f"    {message!r}")
    return 0 if same and stamped else 1


def _broken(out: Callable[[str], None]) -> None:
    decoder = AlpacaDecoder("stocks", "json")
    for label, frame in _BROKEN_FRAMES:
        result = decoder.decode(frame, ts_recv=time.time_ns())
        out(f"broken frame ({label}): {len(result.messages)} good message(s) kept")
        for error in result.errors:
            out(f"    DecodeError index={error.index} reason={error.reason[:90]!r}")
        for unknown in result.unknown:
            out(f"    UnknownMessage type={unknown.type!r} raw={unknown.raw[:40]!r}")
    out(f"broken frames: counters {decoder.stats.as_dict()}")
