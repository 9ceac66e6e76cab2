"""``source.check_block``: the first non-finite row is named, finite rows whose sum overflows pass."""

from __future__ import annotations

import pytest
import torch

from fcinterp_fast.heads.source import check_block
from strategies import FLOAT_DTYPES


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_names_the_first_non_finite_row(dtype, bad):
    block = torch.ones(9, 33, dtype=dtype)
    block[6, 5] = bad
    block[3, 32] = bad
    block[3, 0] = -bad  # inf and -inf in one row: their sum is NaN
    with pytest.raises(ValueError, match="row 13 of the head contains NaN or infinite values"):
        check_block(block, first_row=10)
    with pytest.raises(ValueError, match="row 12 "):
        check_block(block[4:], first_row=10)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16, torch.float32))
def test_finite_rows_whose_sum_overflows_pass(dtype):
    big = torch.finfo(dtype).max
    block = torch.full((4, 64), big, dtype=dtype)
    block[1] = -big
    check_block(block, first_row=0)
    block[2, 7] = float("nan")
    with pytest.raises(ValueError, match="row 2 "):
        check_block(block, first_row=0)


def test_float64_values_too_large_for_sums():
    block = torch.ones(3, 10, dtype=torch.float64)
    block[1, 4] = 1e307
    with pytest.raises(ValueError, match="row 1 of the head has a value with"):
        check_block(block, first_row=0)
