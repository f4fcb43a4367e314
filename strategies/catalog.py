"""The built-in strategies by kind, and :func:`build`, which the configuration layer calls.

==================  ==========================================================================
kind                class (its module's documentation lists the parameters and the rule)
==================  ==========================================================================
``ema_cross``       :class:`~tickd.strategies.ema_cross.EmaCross`
``rsi_reversion``   :class:`~tickd.strategies.rsi_reversion.RsiReversion`
``news_momentum``   :class:`~tickd.strategies.news_momentum.NewsMomentum`
==================  ==========================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tickd.strategies.base import Strategy
from tickd.strategies.ema_cross import EmaCross
from tickd.strategies.news_momentum import NewsMomentum
from tickd.strategies.rsi_reversion import RsiReversion

__all__ = ["STRATEGIES", "build", "parameters"]

STRATEGIES: Final[dict[str, type]] = {
    "ema_cross": EmaCross,
    "rsi_reversion": RsiReversion,
    "news_momentum": NewsMomentum,
}


def parameters(kind: str) -> dict[str, Any]:
    """The parameters a kind takes (besides ``name`` and ``symbols``) with their defaults."""
    cls = _kind(kind)
    return {
        p.name: p.default
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("name", "symbols")
    }


def _kind(kind: str) -> type:
    try:
        return STRATEGIES[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown strategy kind {kind!r}; known: {', '.join(sorted(STRATEGIES))}"
        ) from None


def build(kind: str, *, name: str, symbols: Sequence[str], params: Mapping[str, Any]) -> Strategy:
    """A strategy of ``kind`` named ``name`` for ``symbols`` with ``params``.

    Raises ``ValueError`` naming the kind and the strategy for an unknown kind, an unknown
    parameter or a bad value (the message names the parameter).
    """
    cls = _kind(kind)
    known = parameters(kind)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"strategy {name!r} ({kind}): unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    try:
        strategy: Strategy = cls(name=name, symbols=symbols, **params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"strategy {name!r} ({kind}): {e}") from e
    return strategy
