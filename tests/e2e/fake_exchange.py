"""``tickd fake-exchange`` as a subprocess for the end-to-end tests, with the keys it accepts."""

from __future__ import annotations

import json
import select
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def fake_exchange(
    tickd: str, env: Mapping[str, str], symbols: str, key: str, secret: str
) -> Iterator[dict[str, str]]:
    """The exchange's URLs (its JSON line) while it runs; SIGTERM afterwards."""
    process = subprocess.Popen(
        [tickd, "fake-exchange", "--port", "0", "--speed", "600", "--symbols", symbols,
         "--key", key, "--secret", secret],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(env),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the fake exchange printed no JSON line"
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
