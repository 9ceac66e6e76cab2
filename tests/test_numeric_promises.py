"""What the numbers promise (docs/spec.md sections 2 and 4): finite, correctly scaled ALD parameters for
extreme heads, the same order statistic where the likelihood is flat, and node means that are
within their stated bound of the exact threshold and reproduce every split."""

from __future__ import annotations

import math

import pytest
import torch

from fcinterp_fast.backends import cpu, reference
from fcinterp_fast.config import FitConfig
from fcinterp_fast.heads.source import check_block

ALD_ONLY = FitConfig(depth=1)


def _laplace_rows(rows: int, D: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(rows, D, generator=generator, dtype=torch.float64) - 0.5
    return -0.05 * u.sign() * torch.log1p(-2 * u.abs()) + 0.01 * torch.randn(rows, 1, generator=generator)


# Before the scaled form: 1e155 gave scale inf and lam 0, 1e-200 scale 0, 1e-160 a relative error of 2.6e-4.
@pytest.mark.parametrize("factor", [1e155, 1e200, 1e-160, 1e-200, 1e-290])
def test_ald_of_scaled_rows_is_finite_and_scales(backend, factor):
    base = _laplace_rows(3, 64, seed=1)
    W = base * factor
    check_block(W, 0)  # the input checker accepts these rows
    fit, unscaled = backend.fit(W).ald, backend.fit(base).ald
    n = base.shape[1]
    for name in ("loc", "scale", "kappa", "loglik", "lam"):
        assert torch.isfinite(getattr(fit, name)).all(), (name, getattr(fit, name))
    torch.testing.assert_close(fit.scale.cpu(), unscaled.scale.cpu() * factor, rtol=1e-12, atol=0)
    torch.testing.assert_close(fit.kappa.cpu(), unscaled.kappa.cpu(), rtol=1e-12, atol=0)
    torch.testing.assert_close(fit.loglik.cpu(), unscaled.loglik.cpu() - n * math.log(factor), rtol=1e-12, atol=0)
    # the same order statistic, scaled
    torch.testing.assert_close(fit.loc.cpu(), unscaled.loc.cpu() * factor, rtol=4e-16, atol=0)


def test_rows_at_the_input_checkers_limit_give_finite_parameters(backend):
    D = 64
    limit = torch.finfo(torch.float64).max / 4 / D  # check_block's bound for float64 rows
    W = _laplace_rows(2, D, seed=2)
    W = W / W.abs().max() * limit * 0.999
    check_block(W, 0)
    ald = backend.fit(W).ald
    for name in ("loc", "scale", "kappa", "loglik", "lam"):
        assert torch.isfinite(getattr(ald, name)).all(), (name, getattr(ald, name))


def _flat_rows(count: int, seed: int) -> torch.Tensor:
    """Rows spanning 1e-38 .. 1e38 in float32 (mostly tiny values, a few huge ones): the objective
    is flat to the last bit over many order statistics."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(count):
        n = int(torch.randint(5, 300, (1,), generator=generator))
        huge = torch.rand(n, generator=generator) < 0.1
        exponent = torch.where(
            huge, 38 - torch.rand(n, generator=generator), -38 + 8 * torch.rand(n, generator=generator)
        ).double()
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).double()
        rows.append((sign * 10**exponent).float())
    return rows


def test_cpu_picks_the_references_order_statistic_on_flat_likelihoods():
    """csrc/fit.h promises the reference's loc bit for bit; before the reference computed its
    objective with torch's vectorised square root (not correctly rounded), 2 rows of 300 differed."""
    if cpu.unavailable():
        pytest.skip(cpu.unavailable())
    for row in _flat_rows(300, seed=0):
        got, want = cpu.fit_rows(row[None], ALD_ONLY), reference.fit_rows(row[None], ALD_ONLY)
        for name in ("loc", "scale", "kappa", "loglik"):
            assert getattr(got, name).equal(getattr(want, name)), (name, row.numel())


def _objective(row: list[float], m: float) -> float:
    """sqrt(alpha) + sqrt(beta) at location m, each mean summed exactly (math.fsum)."""
    n = len(row)
    alpha, beta = math.fsum(max(x - m, 0.0) for x in row) / n, math.fsum(max(m - x, 0.0) for x in row) / n
    return math.sqrt(alpha) + math.sqrt(beta)


def test_every_backend_picks_an_order_statistic_tied_with_the_best(backend):
    """Where the likelihood is flat, a backend summing or rooting in another order may pick another
    of the tied order statistics (docs/spec.md section 4): its exact objective is within 8 ulps of
    the exact best, and its log-likelihood equals the reference's to 1e-12."""
    rows = _flat_rows(40 if backend.name == "triton" else 200, seed=1)
    for row in rows:
        got, want = backend.fit(row[None], depth=1).ald, reference.fit_rows(row[None].double(), ALD_ONLY)
        values = row.double().tolist()
        best = min(_objective(values, m) for m in sorted(values)[1:-1])
        assert _objective(values, float(got.loc[0])) <= best * (1 + 16 * 2.0**-53)
        torch.testing.assert_close(got.loglik.cpu(), want.loglik, rtol=1e-12, atol=0)


def test_reported_means_are_within_their_bound_and_reproduce_every_split(backend):
    """A node's ``mean`` is the exact threshold (correctly rounded sum / count) or a float64 sum in
    another order within 2 (n + 3) u mean|x| of it, with no member in between, so ``x >= mean``
    gives the node's upper child exactly. (50 values of 0.1 sum to 0.09999999999999996 * 50 in
    SIMD order: the README once promised the correctly rounded mean for every backend.)"""
    generator = torch.Generator().manual_seed(3)
    W = torch.randn(6, 96, generator=generator, dtype=torch.float64) * 10.0 ** torch.randint(-3, 4, (6, 1))
    W[0, :50], W[0, 50:] = 0.1, -0.3  # the README's example: 50 values of 0.1
    W[1] = torch.randint(-4, 5, (96,), generator=generator).double() / 8  # ties and exact sums
    fit = backend.fit(W, tree="full", depth=3, min_size=2)
    rows = W.tolist()
    for k in range(W.shape[0]):
        for j, name in enumerate(fit.nodes):
            if fit.count[k, j] == 0:
                continue
            members = [rows[k][i] for i in fit.members(k, name).tolist()]
            exact = math.fsum(members) / len(members)
            bound = 2 * (len(members) + 3) * 2.0**-53 * math.fsum(map(abs, members)) / len(members)
            mean = float(fit.mean[k, j])
            assert abs(mean - exact) <= bound, (k, name, mean, exact)
            upper = name + "+"
            if upper in fit.nodes and fit.count[k, fit.nodes.index(upper)] > 0:
                children = sorted(x for x in members if x >= mean)
                assert children == sorted(rows[k][i] for i in fit.members(k, upper).tolist()), (k, name)


def test_lazily_negated_views_are_fitted_with_their_values(backend):
    """``z.conj().imag`` is a float view whose memory holds -imag and a negation bit: the triton
    kernels read the memory (counts came out with the signs swapped) and the cpu backend refused
    it with numpy's RuntimeError; every block is now resolved where all backends read it."""
    z = torch.complex(_laplace_rows(4, 96, seed=5), _laplace_rows(4, 96, seed=6)).to(torch.complex64)
    view = z.conj().imag
    assert view.is_neg()
    got, want = backend.fit(view, min_size=8), backend.fit(view.resolve_neg().clone(), min_size=8)
    for name in ("count", "lo", "hi", "mean", "slope", "r2"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got.ald.loc, want.ald.loc, rtol=0, atol=0)
    assert view.is_neg() and torch.equal(z.conj().imag, view)  # the input is not modified
