"""The cpu backend's 16-bit paths (csrc/fit.h, "Counting fits of 16-bit heads") against the reference.

float16 / bfloat16 rows are radix sorted (two 8-bit passes) or, from a length on, counted: their
keys tallied over 2^16 buckets, the sorted row expanded from the runs of equal values, ln|x| read
from a table of every 16-bit pattern, and the ALD walked over the runs. The default lengths are
long (8192 / 32768 values), so the tests force the counting fit on short rows through the
extension's ``counting_from`` hook and check that it gives exactly what the radix path gives (the
same sorted row and logs, the same sequential sums), and what the reference gives.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cpu_backend import assert_same_fit

import fcinterp_fast
from fcinterp_fast.backends import cpu, reference
from fcinterp_fast.config import FitConfig
from strategies import as_layout, fit_options, heads

pytestmark = pytest.mark.skipif(cpu.unavailable() is not None, reason=f"backend 'cpu' unavailable: {cpu.unavailable()}")

HALF_DTYPES = (torch.float16, torch.bfloat16)
SETTINGS = dict(
    max_examples=max(60, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NEVER = 2**40  # counting_from longer than any row: the radix path


def counted(W: torch.Tensor, cfg: FitConfig):
    return cpu._fit_rows(W, cfg, None, counting_from=1)


def radix(W: torch.Tensor, cfg: FitConfig):
    return cpu._fit_rows(W, cfg, None, counting_from=NEVER)


def assert_identical(got, want) -> None:
    for name, value in want.fields().items():
        torch.testing.assert_close(
            getattr(got, name), value, rtol=0, atol=0, equal_nan=True, msg=lambda m, name=name: f"{name}: {m}"
        )


@settings(**SETTINGS)
@given(
    W=heads(dtypes=HALF_DTYPES, max_rows=5, max_cols=60),
    options=fit_options(),
    layout=st.sampled_from(["contiguous", "strided", "transposed"]),
)
def test_counting_fit_matches_reference_and_radix_path(W, options, layout):
    W = as_layout(W, layout)
    cfg = FitConfig(**options)
    before = W.clone()
    got = counted(W, cfg)
    assert_same_fit(got, reference.fit_rows(W, cfg), W)
    assert_identical(got, radix(W, cfg))
    assert torch.equal(W, before), "the head was modified"


def _awkward_row(dtype: torch.dtype, n: int, seed: int) -> torch.Tensor:
    """Laplace values with every awkward 16-bit case: long runs of ties, +0.0 and -0.0, subnormals of
    the dtype, its largest finite magnitude, values one ulp apart."""
    generator = torch.Generator().manual_seed(seed)
    row = torch.distributions.Laplace(0.0, 0.05).sample((n,)).to(dtype)
    tiny = torch.finfo(dtype).smallest_normal
    special = torch.tensor([0.0, -0.0, tiny / 4, -tiny / 2, tiny / 1024, torch.finfo(dtype).max / 8, 1.0], dtype=dtype)
    picks = torch.randint(0, n, (n // 4,), generator=generator)
    row[picks] = special[torch.randint(0, len(special), (n // 4,), generator=generator)]
    row[: n // 8] = row[n // 8]  # a long run of one value
    nudged = (row[-16:].view(torch.int16) + 1).view(dtype)  # one ulp up
    row[-32:-16] = torch.where(torch.isfinite(nudged), nudged, row[-16:])
    return row


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("cfg", [FitConfig(), FitConfig(root="mean"), FitConfig(tree="full", depth=3, min_size=3)])
def test_default_counting_length_matches_reference(dtype, cfg):
    """Rows as long as the default counting length (every path at its production size) against
    the radix path on all rows and the reference on a few."""
    n = 8192 if dtype == torch.bfloat16 else 32768
    W = torch.stack([_awkward_row(dtype, n, seed) for seed in range(3)])
    got = cpu.fit_rows(W, cfg)
    assert_identical(got, radix(W, cfg))
    assert_same_fit(got.map(lambda name, t: t[:1]), reference.fit_rows(W[:1], cfg), W[:1])


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_counted_ald_only_matches_the_fit(dtype):
    torch.manual_seed(3)
    W = torch.stack([_awkward_row(dtype, 700, seed) for seed in range(5)])[:, ::2]
    fit = counted(W, FitConfig())
    for name, value in zip(("loc", "scale", "kappa", "loglik"), cpu.ald_only(W, counting_from=1), strict=True):
        torch.testing.assert_close(value, getattr(fit, name), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused_on_counted_rows(dtype, bad):
    W = torch.stack([_awkward_row(dtype, 32768, seed) for seed in range(4)])
    W[2, 1234] = bad
    with pytest.raises(ValueError, match="row 2"):
        fcinterp_fast.fit(W, backend="cpu")


def test_counting_from_must_not_be_negative():
    W = torch.zeros(2, 8, dtype=torch.float16)
    with pytest.raises(ValueError, match="counting_from must be >= 0"):
        cpu.ald_only(W, counting_from=-1)
