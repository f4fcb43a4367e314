"""``tickd demo`` as a user runs it: the installed console script, in a real subprocess."""

import shutil
import subprocess
import sys
from pathlib import Path


def _tickd() -> str:
    script = Path(sys.executable).with_name("tickd")
    return str(script) if script.exists() else shutil.which("tickd") or "tickd"


def test_the_console_script_runs_the_demo() -> None:
    result = subprocess.run(
        [_tickd(), "demo", "--events", "2000", "--show", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("demo: ok")
    assert result.stdout.count("round trip exact") == 4
    assert "books agree" in result.stdout and " fills," in result.stdout
