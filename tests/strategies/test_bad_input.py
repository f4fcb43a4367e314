"""Bad arguments are a clear ValueError raised in Python, before any compiled code runs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.strategies import oracle
from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import CATALOG, Bank, Spec, Stream

NAMES = sorted(CATALOG)
BARS = price_path(50, seed=2)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_or_non_integer_parameters_are_value_errors(name: str) -> None:
    ind = CATALOG[name]
    inputs = oracle.arrays(ind, BARS)
    for p in ind.params:
        if p.integer:
            for bad in (int(p.low) - 1, int(p.high) + 1, 2.5, "3", True):
                with pytest.raises(ValueError, match=p.name):
                    ind.batch(*inputs, **{p.name: bad})
        else:
            for bad in ("2", None, float("nan")):
                with pytest.raises(ValueError, match=p.name):
                    ind.batch(*inputs, **{p.name: bad})


@pytest.mark.parametrize("name", NAMES)
def test_wrong_dtype_shape_or_length_of_inputs_are_value_errors(name: str) -> None:
    ind = CATALOG[name]
    good = oracle.arrays(ind, BARS)
    for k, field in enumerate(ind.inputs):
        for bad, why in (
            (good[k].astype(str), "dtype"),
            (good[k].astype(complex), "dtype"),
            (np.stack([good[k], good[k]]), "1-D"),
        ):
            args = list(good)
            args[k] = bad
            with pytest.raises(ValueError, match=why):
                ind.batch(*args)
        if len(good) > 1:
            args = list(good)
            args[k] = good[k][:-1]
            with pytest.raises(ValueError, match="length"):
                ind.batch(*args)
        assert field


@pytest.mark.parametrize("name", NAMES)
def test_integer_and_float32_inputs_are_widened(name: str) -> None:
    ind = CATALOG[name]
    good = oracle.arrays(ind, BARS)
    expected = oracle.as_tuple(ind.batch(*good))
    rounded = oracle.as_tuple(ind.batch(*[np.rint(a).astype(np.int64) for a in good]))
    widened = oracle.as_tuple(ind.batch(*[np.rint(a) for a in good]))
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(rounded, widened, strict=True))
    assert len(expected) == len(ind.outputs)


def test_unknown_indicator_or_parameter_names_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown indicator 'nope'"):
        Bank([Spec("nope")], symbols=1)
    with pytest.raises(ValueError, match="unknown parameter"):
        Stream("ema", period=3)
    with pytest.raises(ValueError, match="at least one"):
        Bank([], symbols=1)
    with pytest.raises(ValueError, match="symbols"):
        Bank([Spec("ema")], symbols=0)


@pytest.mark.parametrize("name", NAMES)
def test_strided_big_endian_read_only_and_list_inputs_give_the_same_values(name: str) -> None:
    """Inputs that are not plain float64 arrays take the checking path, not the fast one."""
    ind = CATALOG[name]
    good = oracle.arrays(ind, BARS)
    expected = oracle.as_tuple(ind.batch(*good))
    strided = [np.repeat(a, 2)[::2] for a in good]
    big_endian = [a.astype(">f8") for a in good]
    read_only = [a.copy() for a in good]
    for a in read_only:
        a.flags.writeable = False
    for variant in (strided, big_endian, read_only, [a.tolist() for a in good]):
        got = oracle.as_tuple(ind.batch(*variant))
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, expected, strict=True))
