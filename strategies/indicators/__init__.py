"""Indicator kernels: TA-Lib's functions in lower case (batch), plus streaming and bank forms.

Batch functions take and return float64 arrays the length of the input, with TA-Lib's parameter
names, defaults, output order and NaN warm-up. :class:`Stream` updates one indicator a value at a
time; :class:`Bank` updates many indicators for many symbols in one compiled call per batch.
"""

from tickd.strategies.indicators.averages import ema, sma
from tickd.strategies.indicators.bank import CATALOG, Bank, Spec
from tickd.strategies.indicators.streaming import Stream

__all__ = ["CATALOG", "Bank", "Spec", "Stream", "ema", "sma"]
