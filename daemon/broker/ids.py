"""Deterministic client order ids: the same decision always names the same order.

``client_order_id(salt, strategy, event_id, symbol)`` hashes the strategy's name, the id of the
event the decision was made on, the symbol (one news item can move several) and a salt kept in
the state directory: one order per strategy, event and symbol. A retry, a timeout's lookup and a
restart that replays the same event all produce the same id, and the venue refuses a second
order under an id it has seen; the salt keeps two state directories (a paper run and a replay,
two daemons on one account) from colliding.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["PREFIX", "client_order_id", "load_salt"]

PREFIX = "tickd-"  # Alpaca allows up to 128 characters; this makes 38


def client_order_id(salt: str, strategy: str, event_id: str, symbol: str) -> str:
    key = "\x1f".join((salt, strategy, event_id, symbol))
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return PREFIX + digest


def load_salt(state_dir: Path) -> str:
    """The state directory's salt, created (atomically, readable by the owner only) on first
    use."""
    path = state_dir / "order-salt"
    try:
        salt = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(16) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # fails if another process made one first: use theirs
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        salt = path.read_text(encoding="ascii").strip()
    if len(salt) < 16:
        raise ValueError(f"{path}: the order-id salt is damaged ({len(salt)} characters)")
    return salt
