"""Checks run in Python before any compiled code: a bad argument is a clear ``ValueError``."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from numpy.typing import NDArray

Series = NDArray[np.float64]
_FLOAT64 = np.dtype(np.float64)


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


def valid_from(*arrays: Series) -> int:
    """Index of the first row where every input is a number (the length if there is none).

    TA-Lib's Python wrapper starts each computation there and leaves the rows before it NaN, so
    leading NaN shift the warm-up rather than poisoning the output; streaming steps do the same by
    ignoring updates until one whose inputs are all numbers. (For an input with no such row, TA-Lib
    computes from the last row anyway; tickd returns all NaN, as streaming does.)
    """
    size = arrays[0].shape[0]
    ok = np.ones(size, dtype=bool)
    for a in arrays:
        ok &= ~np.isnan(a)
    return int(ok.argmax()) if ok.any() else size


def output(size: int, start: int, count: int = 1) -> tuple[Series, ...]:
    """``count`` output arrays of ``size`` rows with the rows before ``start`` already NaN."""
    outs = tuple(np.empty(size) for _ in range(count))
    if start:
        for out in outs:
            out[:start] = np.nan
    return outs


def prepare(
    names: tuple[str, ...], *values: Any, outputs: int = 1
) -> tuple[tuple[Series, ...], tuple[Series, ...], tuple[Series, ...]]:
    """Everything a batch function does before its kernel, in one call: the input series
    ``values`` (called ``names`` in errors) checked (:func:`series`, :func:`same_length`),
    ``outputs`` output arrays allocated, and both cut to start at the first row where every
    input is a number (:func:`valid_from`).

    Returns the cut inputs (the kernel's), the whole outputs (the caller's, NaN before that row)
    and the cut outputs (the kernel's). Python around a kernel costs more than it seems: at 1e6
    bars the kernel has just evicted the interpreter's own data from the caches, and each call
    around it then costs about a microsecond. So the usual case (plain float64 arrays, numbers in
    the first row) makes no call and no slice here, and takes its arguments by position.
    """
    arrays = values
    for value in values:
        if not (
            type(value) is np.ndarray
            and value.dtype is _FLOAT64
            and value.ndim == 1
            and value.flags.c_contiguous
        ):
            arrays = tuple(series(n, v) for n, v in zip(names, values, strict=True))
            break
    size = arrays[0].shape[0]
    for a in arrays:
        if a.shape[0] != size:
            same_length(**dict(zip(names, arrays, strict=True)))  # raises, naming the lengths
    if size:
        for a in arrays:
            if math.isnan(a[0]):
                break
        else:
            outs = (np.empty(size),) if outputs == 1 else output(size, 0, outputs)
            return arrays, outs, outs
    start = valid_from(*arrays)
    outs = output(size, start, outputs)
    return tuple(a[start:] for a in arrays), outs, tuple(o[start:] for o in outs)
