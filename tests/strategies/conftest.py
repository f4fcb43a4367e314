"""Compile the kernels once per test run, outside coverage's tracer.

numba's compiler is Python: under coverage's line tracer (Python 3.11 has no cheap monitoring
API) compiling the catalog takes several times as long. A subprocess without coverage fills
numba's on-disk cache first (the same sources, so the same cache folder); the tests then load the
very same machine code from it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session", autouse=True)
def _kernels_compiled() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    subprocess.run(
        [sys.executable, "-m", "tickd.strategies.indicators.warmup", "--streams"],
        env=env,
        check=True,
    )
