"""The service manager's notification protocol, without libsystemd: one datagram per message.

systemd (``Type=notify``) passes a unix datagram socket in ``$NOTIFY_SOCKET``; the daemon writes
newline-separated ``KEY=value`` fields to it (sd_notify(3)): ``READY=1`` once the readiness
handshake is done (kernels compiled, feeds subscribed), ``STATUS=`` a line ``systemctl status``
shows, ``WATCHDOG=1`` more often than ``$WATCHDOG_USEC``, ``STOPPING=1`` at the start of the
shutdown. The watchdog pings come from a task on the event loop itself: a loop that is blocked
or wedged stops pinging, and systemd kills it (SIGABRT: with ``PYTHONFAULTHANDLER`` the journal
gets every thread's stack) and restarts it. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import anyio
import structlog

__all__ = ["Notifier", "watchdog_interval"]

_log = structlog.get_logger("tickd.systemd")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two pings (half of ``WatchdogSec``, the convention), or None when no
    watchdog is asked of this process."""
    environ = os.environ if environ is None else environ
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


def _line(text: str) -> str:
    """``text`` on one line: a newline would end the field and start another (``READY=1``)."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address if address[:1] in ("/", "\0") else ""
        self.watchdog = watchdog_interval(environ)
        self.failures = 0  # datagrams the manager did not take (logged; never fatal)
        self.stopped = False  # STOPPING=1 was sent: no READY=1 nor a fresh STATUS= after it

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one message; False when not under a manager or it failed."""
        if not self.address:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait on the manager: a full queue (it is busy, or gone) must not block
                # the event loop; the message is dropped, counted and logged instead.
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            self.failures += 1
            _log.warning("sd_notify_failed", fields=list(fields), error=str(exc))
            return False
        return True

    def ready(self, status: str) -> None:
        """``READY=1``, unless the stop began meanwhile (a SIGTERM between the handshake and
        this call): READY after STOPPING would tell the manager a stopping daemon is up."""
        if self.stopped:
            return
        self.send("READY=1", f"STATUS={_line(status)}", f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "stopping") -> None:
        self.stopped = True
        self.send("STOPPING=1", f"STATUS={_line(status)}")

    async def run(self, status: Callable[[], str], status_interval: float = 5.0) -> None:
        """Until cancelled: ``WATCHDOG=1`` every :attr:`watchdog` seconds (when asked for) and a
        fresh ``STATUS=`` every ``status_interval`` seconds, from this event loop. Once
        :meth:`stopping` was sent the pings go on (the ordered stop may take a while) but the
        status stays the stop's. A ``status`` that raises is logged, never fatal."""
        if not self.address:
            return
        every = min(self.watchdog or status_interval, status_interval)
        since_status = status_interval
        while True:
            fields = ["WATCHDOG=1"] if self.watchdog is not None else []
            if since_status >= status_interval and not self.stopped:
                try:
                    fields.append(f"STATUS={_line(status())}")
                except Exception as exc:  # a status bug must not stop the pings, nor the daemon
                    _log.warning("sd_status_failed", error=f"{type(exc).__name__}: {exc}")
                since_status = 0.0
            if fields:
                self.send(*fields)
            await anyio.sleep(every)
            since_status += every
