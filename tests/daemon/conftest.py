"""The daemon's bank, compiled once per test run outside coverage's tracer (see
tests/strategies/conftest.py for why): tests that build an App ask for ``compiled_bank``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WARM_UP = (
    "from tickd.daemon.app import DEFAULT_INDICATORS\n"
    "from tickd.strategies.indicators import Bank\n"
    "Bank(DEFAULT_INDICATORS, 1)\n"
)


@pytest.fixture(scope="session")
def compiled_bank() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    subprocess.run([sys.executable, "-c", WARM_UP], env=env, check=True)
