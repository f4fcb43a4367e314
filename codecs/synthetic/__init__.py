"""The synthetic data factory: a seeded market, wire frames made from it, Hypothesis strategies.

Tests, benchmarks and the fake exchange draw their data from here rather than from hand-written
mocks. :mod:`.market` generates schema structs, :mod:`.frames` turns them into each source's wire
frames with the real encoders, and :mod:`.strategies` (imports Hypothesis, a test-only
dependency, so it is not imported here) generates arbitrary and mangled values for fuzzing.
"""

from .frames import (
    alpaca_frames,
    alpaca_handshake,
    alpaca_view,
    as_finnhub,
    as_newsapi,
    finnhub_basic_financials_body,
    finnhub_company_news_body,
    finnhub_frames,
    finnhub_view,
    newsapi_body,
    trade_update_frames,
    trading_handshake,
)
from .market import (
    MarketConfig,
    MarketEvent,
    Ohlcv,
    SyntheticMarket,
    available_at,
    in_session,
    price_path,
)

__all__ = [
    "MarketConfig",
    "MarketEvent",
    "Ohlcv",
    "SyntheticMarket",
    "alpaca_frames",
    "alpaca_handshake",
    "alpaca_view",
    "as_finnhub",
    "as_newsapi",
    "available_at",
    "finnhub_basic_financials_body",
    "finnhub_company_news_body",
    "finnhub_frames",
    "finnhub_view",
    "in_session",
    "newsapi_body",
    "price_path",
    "trade_update_frames",
    "trading_handshake",
]
