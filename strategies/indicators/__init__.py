"""Indicator kernels: TA-Lib's functions in lower case (batch), plus streaming and bank forms.

Batch functions take and return float64 arrays the length of the input, with TA-Lib's parameter
names, defaults, output order and NaN warm-up. :class:`Stream` updates one indicator a value at a
time; :class:`Bank` updates many indicators for many symbols in one compiled call per batch;
:class:`BarBank` turns trades into time bars the same way.
"""

from tickd.strategies.indicators.averages import dema, ema, kama, sma, tema, wma
from tickd.strategies.indicators.bank import CATALOG, Bank, Spec
from tickd.strategies.indicators.bars import BarBank
from tickd.strategies.indicators.directional import adx, minus_di, plus_di
from tickd.strategies.indicators.momentum import cci, macd, mfi, mom, roc, rsi, ultosc
from tickd.strategies.indicators.stochastic import stoch, stochf, willr
from tickd.strategies.indicators.streaming import Stream
from tickd.strategies.indicators.volatility import atr, bbands, natr, stddev, trange, zscore
from tickd.strategies.indicators.volume import ad, obv, vwap

__all__ = [
    "CATALOG",
    "Bank",
    "BarBank",
    "Spec",
    "Stream",
    "ad",
    "adx",
    "atr",
    "bbands",
    "cci",
    "dema",
    "ema",
    "kama",
    "macd",
    "mfi",
    "minus_di",
    "mom",
    "natr",
    "obv",
    "plus_di",
    "roc",
    "rsi",
    "sma",
    "stddev",
    "stoch",
    "stochf",
    "tema",
    "trange",
    "ultosc",
    "vwap",
    "willr",
    "wma",
    "zscore",
]
