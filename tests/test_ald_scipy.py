"""The ALD maximum likelihood of every backend against scipy's ``laplace_asymmetric`` (docs/spec.md section 4).

docs/spec.md section 4 demands that our log-likelihood is never below the one scipy's ``fit`` reaches on the same
row (beyond 1e-9 relative), and our (kappa, loc, scale) must be a point of scipy's own density:
plugged into ``laplace_asymmetric.logpdf`` they give back our log-likelihood.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

stats = pytest.importorskip("scipy.stats")

# (kappa, loc, scale, n): skewed both ways, symmetric, short and real-head sizes.
_ALD_ROWS = [(0.3, 0.0, 1.0, 101), (1.0, -2.0, 0.5, 40), (3.0, 0.01, 0.003, 1280), (0.5, 1.0, 1e-4, 12)]
# Rows so short that the likelihood's supremum lies at an extreme order statistic (see below).
_TINY_ALD_ROWS = [(0.8, 5.0, 2.0, 3), (1.7, 0.0, 1e-4, 4)]


def _samples(params=_ALD_ROWS, ties: bool = True) -> list[np.ndarray]:
    """ALD samples (1-D float64 arrays), and one with many exact ties."""
    rng = np.random.default_rng(2205)
    rows = [stats.laplace_asymmetric.rvs(k, loc=m, scale=s, size=n, random_state=rng) for k, m, s, n in params]
    return rows + [np.round(rows[0] * 4) / 4] if ties else rows


def _scipy_loglik(x: np.ndarray, kappa, loc, scale) -> float:
    return float(stats.laplace_asymmetric.logpdf(x, kappa, loc=loc, scale=scale).sum())


def _check_rows(backend, rows: list[np.ndarray], dtype=torch.float64) -> None:
    for x in rows:
        W = torch.tensor(x[None], dtype=dtype)
        x = W.to(torch.float64).numpy()[0]  # the values the backend saw
        ald = backend.fit(W).ald
        kappa, loc, scale, loglik = (getattr(ald, f).item() for f in ("kappa", "loc", "scale", "loglik"))
        scipy_loglik = _scipy_loglik(x, *stats.laplace_asymmetric.fit(x))
        assert loglik >= scipy_loglik - 1e-9 * abs(scipy_loglik), (len(x), loglik, scipy_loglik)
        if 0 < kappa < np.inf and scale > 0:
            assert _scipy_loglik(x, kappa, loc, scale) == pytest.approx(loglik, rel=1e-9, abs=1e-9)


def test_ald_samples(backend):
    _check_rows(backend, _samples())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_ald_samples_in_narrow_dtypes(backend, dtype):
    _check_rows(backend, _samples()[:3], dtype=dtype)


@pytest.mark.xfail(
    strict=True,
    reason="docs/spec.md section 4 conflict: its maximiser is restricted to the interior order statistics "
    "x_(2)..x_(n-1), but on these 3- and 4-value rows the likelihood is larger as loc approaches "
    "x_(1) with kappa -> 0, and scipy's fit goes there (kappa ~ 0.002), beating our loglik.",
)
def test_ald_tiny_rows_lose_to_scipys_boundary_fit(backend):
    _check_rows(backend, _samples(_TINY_ALD_ROWS, ties=False))


def test_ald_real_head_rows(backend, lite0_head):
    """Rows of the bundled EfficientNet-Lite0 head (float32, 1280 weights each)."""
    _check_rows(backend, list(lite0_head[::97].double().numpy()), dtype=torch.float32)
