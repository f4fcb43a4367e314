"""Checks run in Python before any compiled code: a bad argument is a clear ``ValueError``."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.typing import NDArray

Series = NDArray[np.float64]


def series(name: str, value: Any) -> Series:
    """``value`` as a contiguous 1-D float64 array; integers and float32 are widened losslessly."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize > 8:
        raise ValueError(f"{name}: expected real numbers (float64), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def same_length(**arrays: Series) -> int:
    """The common length of several input series, or a ``ValueError`` naming the lengths."""
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"input series differ in length: {lengths}")
    return next(iter(lengths.values()))


def integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer parameter within TA-Lib's range ``[low, high]``."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if not low <= result <= high:
        raise ValueError(f"{name}: {result} is outside [{low}, {high}]")
    return result


def real(name: str, value: Any, low: float, high: float) -> float:
    """A finite real parameter within ``[low, high]``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    result = float(value)
    if not low <= result <= high:
        raise ValueError(f"{name}: {result} is outside [{low}, {high}]")
    return result
