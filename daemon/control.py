"""The operator's switch: ``tickd halt``/``reduce``/``resume`` write a command file in the state
directory; the running daemon reads it within a second and switches risk's state.

A file, not a socket: it needs no running daemon to be written (a halt given while the daemon
restarts still holds when it is back: the daemon applies the file it finds at start), it survives
restarts until the operator says otherwise, and systemd's ``StateDirectory=`` already gives the
daemon and its operator one place to share. The daemon reports the state it is in to
``risk.json`` beside it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from .clock import Clock
from .risk import RiskEngine, RiskState

__all__ = ["COMMAND_FILE", "ControlWatcher", "write_command"]

COMMAND_FILE = "control.json"
_log = structlog.get_logger("tickd.control")


def write_command(state_dir: Path, state: RiskState, reason: str) -> Path:
    """Write the operator's command atomically (a reader never sees half a file)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / COMMAND_FILE
    body = {"state": str(state), "reason": reason, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


class ControlWatcher:
    def __init__(
        self, state_dir: Path, engine: RiskEngine, clock: Clock, interval: float = 1.0
    ) -> None:
        self.path = state_dir / COMMAND_FILE
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.applied = 0
        self.invalid = 0  # files that could not be read as a command (logged, then ignored)
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read

    def check(self) -> None:
        """Apply the command file if it changed since the last look."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            state = RiskState(body["state"])
            reason = str(body.get("reason") or "operator")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.invalid += 1
            _log.error("control_file_invalid", path=str(self.path), error=str(exc))
            return
        self.applied += 1
        self.engine.set_state(state, reason, "operator")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The operator's last command holds from the start (given while the daemon was down,
        # or before a restart); a stricter state restored from earlier today (a breach) is not
        # lifted by an older command, only by a new one.
        self.check()
        engine = self.engine
        if engine.restored is not None and engine.restored.strictness > engine.state.strictness:
            engine.set_state(engine.restored, engine.restored_reason, "restart")
        task_status.started()
        while True:
            await self.clock.sleep(self.interval)
            self.check()
