"""How the tapes here were made, and how to make them again: ``python tests/data/tapes/record.py``.

Each tape is the daemon's own recording of the fake exchange (in this process, on loopback):
the strategies in ``NAME.toml`` trade through alpaca-py against it for a few seconds of wall
time at a high market speed, warming up from its bar history. Then each tape is replayed with
the simulated broker and its summary (digest, events, intents) goes to ``golden.json``, which
tests/e2e/test_golden_tapes.py holds every later replay to. Re-recording makes new tapes (the
fake exchange's timestamps follow the wall clock), so commit tapes and goldens together, and
only when a change of behaviour is meant.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import msgspec

from tickd.daemon.app import App
from tickd.daemon.config import Config, load
from tickd.daemon.fake_exchange.server import FakeExchange, FakeExchangeSettings
from tickd.daemon.replay import Replayer

HERE = Path(__file__).resolve().parent

# name -> (exchange symbols, market speed, wall seconds, the daemon's channels)
TAPES: dict[str, tuple[tuple[str, ...], float, float, dict[str, Any]]] = {
    "ema_cross": (
        ("AAPL", "MSFT", "NVDA"),
        300.0,
        8.0,
        {"stock_channels": ["trades", "bars"]},
    ),
    "mixed": (
        ("AAPL", "MSFT", "BTC/USD", "ETH/USD"),
        600.0,
        8.0,
        {"stock_channels": ["bars"], "crypto_channels": ["trades", "bars"], "news": True},
    ),
}


def recording_config(name: str, urls: dict[str, str], work: Path) -> Config:
    trading = tomllib.loads((HERE / f"{name}.toml").read_text())
    channels = TAPES[name][3]
    return msgspec.convert(
        {
            **trading,
            "state_dir": str(work / "state"),
            "alpaca": {
                "key_id": urls["key"],
                "secret_key": urls["secret"],
                "stream_url": urls["market_data_url"],
                "data_url": urls["data_url"],
                "trading_stream_url": urls["trading_stream_url"],
                "encoding": "json",
                "warmup_bars": 30,
                "silence_limit": 0,
                **channels,
            },
            "broker": {"kind": "alpaca", "trading_url": urls["trading_url"], "timeout": 5.0},
            "record": {"enabled": True, "directory": str(HERE / f"{name}.tape")},
        },
        Config,
    )


async def record(name: str, work: Path) -> None:
    symbols, speed, seconds, _ = TAPES[name]
    exchange = FakeExchange(FakeExchangeSettings(symbols=symbols, seed=7, speed=speed))
    async with anyio.create_task_group() as tasks:
        urls = await tasks.start(exchange.run)
        app = App(recording_config(name, urls, work))
        async with anyio.create_task_group() as daemon:
            await daemon.start(app.run)
            await anyio.sleep(seconds)
            app.stop()
        exchange.stop()


def golden(name: str) -> dict[str, Any]:
    summary = anyio.run(Replayer([HERE / f"{name}.tape"], load(HERE / f"{name}.toml")).run)
    return {
        "digest": summary.digest,
        "events": summary.events,
        "history": summary.history,
        "intents": summary.intents,
        "fills": summary.fills,
        "positions": summary.positions,
    }


def main(args: list[str]) -> None:
    """``record.py [--golden-only] [NAME...]``: record (or only replay) the named tapes."""
    import tempfile

    only_golden = "--golden-only" in args
    names = [a for a in args if not a.startswith("--")] or list(TAPES)
    goldens_path = HERE / "golden.json"
    goldens = json.loads(goldens_path.read_text()) if goldens_path.exists() else {}
    for name in names:
        if not only_golden:
            (HERE / f"{name}.tape").unlink(missing_ok=True)
            with tempfile.TemporaryDirectory() as work:
                anyio.run(record, name, Path(work))
        goldens[name] = golden(name)
        print(name, goldens[name])
    goldens_path.write_text(json.dumps(goldens, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
