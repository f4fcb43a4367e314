"""The bus: routes each event to the mailboxes that asked for its kind and symbol.

A subscription names a kind (a schema struct type, e.g. ``Trade``; subclasses are kinds of
their own) and either some symbols or all
of them. An event's symbols are its ``symbol`` field, or its ``symbols`` (a news item names
several), or none (then only all-symbol subscribers get it). Routes are resolved once per
(kind, symbol) and cached, so publishing costs a dict lookup and the sends. Events nobody asked
for are counted by kind in ``unrouted``: not an error, never silent. Every published event is
counted by kind in ``published`` (the metrics read it), once per kind per call, not per event.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from .actors import Mailbox

__all__ = ["Bus"]


class Bus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[tuple[type, str | None], list[Mailbox[Any]]] = defaultdict(
            list
        )
        self._routes: dict[tuple[type, str | None], tuple[Mailbox[Any], ...]] = {}
        self._by_symbol: set[type] = set()  # kinds with a subscription for some symbols only
        self.unrouted: Counter[str] = Counter()
        self.published: Counter[str] = Counter()

    def subscribe(
        self, mailbox: Mailbox[Any], kind: type, symbols: Iterable[str] | None = None
    ) -> None:
        """Send events of exactly ``kind`` for ``symbols`` (None: all of them) to ``mailbox``.
        Exactly: an ``UpdatedBar`` is a ``Bar`` subclass but means "replace", so a subscriber
        names each kind it can handle. A mailbox subscribed both ways gets each event once."""
        for symbol in (None,) if symbols is None else symbols:
            if mailbox not in self._subscribers[kind, symbol]:
                self._subscribers[kind, symbol].append(mailbox)
        if symbols is not None:
            self._by_symbol.add(kind)
        self._routes.clear()

    def targets(self, kind: type, symbol: str | None) -> tuple[Mailbox[Any], ...]:
        """The mailboxes an event of ``kind`` for ``symbol`` goes to, in subscription order."""
        route = self._routes.get((kind, symbol))
        if route is None:
            found: dict[int, Mailbox[Any]] = {}
            for key in ((kind, symbol), (kind, None)) if symbol is not None else ((kind, None),):
                for mailbox in self._subscribers.get(key, ()):
                    found.setdefault(id(mailbox), mailbox)
            route = self._routes[kind, symbol] = tuple(found.values())
        return route

    async def publish(self, event: Any) -> None:
        """Send ``event`` to every mailbox that asked for it (a blocking mailbox that is full makes
        this wait: that is the back-pressure the policy asks for)."""
        self.published[type(event).__name__] += 1
        targets = self._targets_of(event)
        for mailbox in targets:
            await mailbox.send(event)
        if not targets:
            self.unrouted[type(event).__name__] += 1

    def _targets_of(self, event: Any) -> tuple[Mailbox[Any], ...]:
        kind = type(event)
        symbol = getattr(event, "symbol", None)
        if symbol is None and (many := getattr(event, "symbols", None)):
            routes: dict[int, Mailbox[Any]] = {}
            for name in (*many, None):
                for mailbox in self.targets(kind, name):
                    routes.setdefault(id(mailbox), mailbox)
            return tuple(routes.values())
        return self.targets(kind, symbol)

    async def publish_many(self, events: list[Any]) -> None:
        """Publish events in order (one decoded frame, typically), with one send per mailbox:
        each mailbox gets its share of ``events`` in their order, as one batch."""
        kinds = Counter(map(type, events))  # in order of appearance: deterministic
        published = self.published
        for kind, n in kinds.items():
            published[kind.__name__] += n
        if len(kinds) == 1 and (kind := next(iter(kinds))) not in self._by_symbol:
            # The hot path: one kind (a frame of trades), whose subscribers all take every
            # symbol: the frame goes on whole, with no work per event.
            route = self.targets(kind, None)
            for mailbox in route:
                await mailbox.send_many(events)
            if not route:
                self.unrouted[kind.__name__] += len(events)
            return
        if self._by_symbol.isdisjoint(kinds):
            # Several kinds (trades and a bar), no routing by symbol: each mailbox gets the
            # events of the kinds it takes, in order, with no lookup per event.
            takes: dict[Mailbox[Any], set[type]] = {}
            for kind in kinds:
                route = self.targets(kind, None)
                for mailbox in route:
                    takes.setdefault(mailbox, set()).add(kind)
                if not route:
                    self.unrouted[kind.__name__] += kinds[kind]
            for mailbox, taken in takes.items():
                share = events if taken == kinds.keys() else [e for e in events if type(e) in taken]
                await mailbox.send_many(share)
            return
        # Some kinds go by symbol: those events are routed one by one; the others' routes are
        # looked up once per kind.
        static = {k: self.targets(k, None) for k in kinds if k not in self._by_symbol}
        shares: dict[Mailbox[Any], list[Any]] = {}
        for event in events:
            targets = static.get(type(event))
            if targets is None:
                targets = self._targets_of(event)
            if not targets:
                self.unrouted[type(event).__name__] += 1
            for mailbox in targets:
                shares.setdefault(mailbox, []).append(event)
        for mailbox, share in shares.items():
            await mailbox.send_many(share)
