"""The fuzz run: 100,000 seeded damaged inputs across every decoder, the tape reader and config
parsing give 0 crashes and 0 errors without their context (``bench/reliability/fuzz.py``)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

from bench.harness import Row
from bench.reliability import fuzz
from bench.reliability.fuzz import QUICK_CORPUS, QUICK_INPUTS, SEED
from tickd.codecs.errors import Decoded
from tickd.codecs.schema import BookLevel, CryptoTrade, OrderbookUpdate


def test_every_target_answers_damaged_input_with_its_typed_error(
    figures: Callable[[Iterable[Row]], None],
) -> None:
    run = fuzz.fuzz(QUICK_INPUTS, corpus_size=QUICK_CORPUS)
    reproducers = [f"{name}: {line}" for name, t in run.targets.items() for line in t.reproducers]
    assert run.crashes == 0 and run.contextless == 0, "\n".join(reproducers)
    figures(fuzz.rows(run))
    assert run.inputs == QUICK_INPUTS >= 100_000 and run.seed == SEED
    assert len(run.targets) >= 20  # every source, REST pages, client messages, tapes, config
    for name, tally in run.targets.items():
        assert tally.inputs >= QUICK_INPUTS // len(run.targets), name
        # Not vacuous: each target saw input it accepted and damage it refused.
        assert tally.accepted > 0 and tally.rejected > 0, (name, tally)
        assert tally.accepted + tally.rejected == tally.inputs, (name, tally)


def test_the_same_seed_gives_the_same_run() -> None:
    first, second = (fuzz.fuzz(3_000, seed=7, corpus_size=4) for _ in range(2))
    assert {n: (t.accepted, t.rejected) for n, t in first.targets.items()} == {
        n: (t.accepted, t.rejected) for n, t in second.targets.items()
    }


def test_an_exception_the_api_does_not_promise_is_a_crash_with_its_reproducer() -> None:
    def check(data: bytes) -> fuzz.Verdict:
        if b"\xff" in data:
            raise KeyError("boom")
        return "contextless" if not data else "rejected"

    target = fuzz._Target("demo", [b"", b"ab\xff", b"abc"], check)
    tally = fuzz._run(target, 300, random.Random(1))
    assert tally.crashes > 0 and tally.contextless > 0 and tally.rejected > 0
    assert tally.crashes + tally.contextless + tally.rejected == tally.inputs == 300
    assert any(r.startswith("KeyError: 'boom' <- ") for r in tally.reproducers)


def test_a_decoder_that_accepts_a_nan_or_infinity_anywhere_is_judged_contextless() -> None:
    # Built without validation (msgspec checks bounds only when decoding): a decoder that let
    # these through would poison every sum downstream.
    nan_size = CryptoTrade(symbol="X", ts_event=1, price=1.0, size=math.nan)
    inf_level = OrderbookUpdate(symbol="X", ts_event=1, bids=(BookLevel(1.0, math.inf),))
    fine = CryptoTrade(symbol="X", ts_event=1, price=1.0, size=0.5)
    assert fuzz._judge(Decoded(messages=[fine])) == "accepted"
    assert fuzz._judge(Decoded(messages=[fine, nan_size])) == "contextless"
    assert fuzz._judge(Decoded(messages=[inf_level])) == "contextless"
