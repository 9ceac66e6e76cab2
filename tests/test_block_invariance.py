"""A row's result must not depend on the other rows fitted in the same block: streamed, sharded
and in-memory fits block the rows differently and must still agree bit for bit."""

import pytest
import torch

from fcinterp_fast.backends import registry
from fcinterp_fast.config import FitConfig


@pytest.mark.parametrize("name", registry.names())
def test_rows_do_not_depend_on_their_block(name):
    backend = registry.get_backend(name)
    if backend.unavailable() is not None:
        pytest.skip(f"backend {name!r} is not available here: {backend.unavailable()}")
    W = torch.randn(203, 64, generator=torch.Generator().manual_seed(5)) * 0.05
    whole = backend.fit_rows(W, FitConfig())
    for start in range(0, W.shape[0], 7):  # blocks of 7 put every row in a SIMD tail (torch's CPU
        block = backend.fit_rows(W[start : start + 7], FitConfig())  # pow once rounded tails differently)
        for field, values in block.fields().items():
            expected = whole.fields()[field][start : start + 7]
            torch.testing.assert_close(
                values, expected, rtol=0, atol=0, equal_nan=True, msg=f"{field} of rows {start}+"
            )
