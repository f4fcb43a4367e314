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
