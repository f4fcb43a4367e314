"""The built-in strategies' banks and signal functions, compiled once per test run outside
coverage's tracer (see tests/strategies/conftest.py for why)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WARM_UP = """
from tickd.daemon.app import DEFAULT_INDICATORS
from tickd.strategies.catalog import STRATEGIES, build
from tickd.strategies.indicators import Bank
for kind in STRATEGIES:
    strategy = build(kind, name=kind, symbols=["AAPL"], params={})
    Bank(strategy.indicators or DEFAULT_INDICATORS, 2)
"""


@pytest.fixture(scope="session")
def compiled_banks() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    subprocess.run([sys.executable, "-c", WARM_UP], env=env, check=True)


@pytest.fixture(autouse=True)
def _state_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon built without ``state_dir`` keeps its state (the order-id salt, the trace file)
    in ``$STATE_DIRECTORY``, else ``./state``: never the checkout's."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
