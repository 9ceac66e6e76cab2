"""``backend="reference"``: docs/spec.md sections 2-4 and 7 in plain PyTorch, one row and one node at a time.

This is the oracle of record: it is written to be read next to ``docs/spec.md``, not to be fast.
Two readings of docs/spec.md that every backend shares are made explicit here:

* "mean accumulated in float64" is the correctly rounded float64 sum of the node's values
  (``math.fsum``), divided once by the count. It does not depend on the order of summation, so
  every backend can agree with it on every membership (fast backends sum in any order and flag
  the rows where their rounding bound cannot decide a side; see ``RowFit.ambiguous``).
* The line fit is computed on ``d = y - y_0`` (logs relative to the smallest magnitude), which is
  the same least-squares problem but makes a node of equal magnitudes come out exactly as the
  the spec's special case says: slope 0, intercept ``y_0``, ``SS_tot == SS_res == 0`` so r2 = 1.
"""

from __future__ import annotations

import itertools
import math

import torch

from ..config import FitConfig
from ..gof import gof_row
from ..result import RowFit
from .registry import Backend, register_backend

__all__ = ["fit_rows", "exact_mean", "line_fit", "ald_fit"]

NAN = float("nan")


def exact_mean(values: torch.Tensor) -> float:
    """Correctly rounded float64 sum of ``values`` divided by their count."""
    return math.fsum(values.tolist()) / values.numel()


def line_fit(values: torch.Tensor, grid: str) -> tuple[float, float, float]:
    """Algorithm 1 on one node: ``(slope, intercept, r2)`` of ln|theta| against its sorted position.

    Args:
        values: (n,) float64, the node's members (zeros are skipped).
        grid: ``"paper"`` (x_i = i / L) or ``"linspace"`` (x_i = i / (L - 1)).
    """
    v = values[values != 0].abs().sort().values
    L = v.numel()
    if L == 0:
        return NAN, NAN, NAN
    y = torch.log(v)
    if L == 1:
        return 0.0, float(y[0]), NAN
    x = torch.arange(L, dtype=torch.float64) / (L if grid == "paper" else L - 1)
    d = y - y[0]
    x_mean, d_mean = x.mean(), d.mean()
    slope = ((x - x_mean) * (d - d_mean)).sum() / ((x - x_mean) ** 2).sum()
    intercept = y[0] + d_mean - slope * x_mean
    ss_res = ((d - d_mean - slope * (x - x_mean)) ** 2).sum()
    ss_tot = ((d - d_mean) ** 2).sum()
    if ss_tot == 0:
        r2 = 1.0 if ss_res == 0 else 0.0
    else:
        r2 = float(1 - ss_res / ss_tot)
    return float(slope), float(intercept), r2


def ald_fit(row: torch.Tensor) -> tuple[float, float, float, float]:
    """Exact ALD maximum likelihood of one row: ``(loc, scale, kappa, loglik)`` (docs/spec.md section 4).

    With x sorted and gaps g_i = x_{i+1} - x_i, the sums n * beta and n * alpha at m = x_p are
    sum_{i<p} (i + 1) g_i and sum_{i>=p} (n - 1 - i) g_i: prefix sums of non-negative terms, so
    ties give exact zeros. Everything is plain Python float arithmetic (every operation correctly
    rounded, sums accumulated one term at a time), the order ``csrc/fit.cpp`` follows too: the two
    pick the same order statistic even where the likelihood is flat to the last bit. (torch's
    vectorised square root is not correctly rounded on every CPU.)
    """
    x = row.sort().values.tolist()
    n = len(x)
    if n < 3:
        return NAN, NAN, NAN, NAN
    gaps = [b - a for a, b in itertools.pairwise(x)]
    below = list(itertools.accumulate((i + 1) * g for i, g in enumerate(gaps)))  # n*beta at x[p+1]
    # n*alpha at x[p], summed from the top end down
    above = list(itertools.accumulate((n - 1 - i) * gaps[i] for i in reversed(range(n - 1))))[::-1]
    best_p, best = 1, math.inf
    for p in range(1, n - 1):  # interior order statistics x_(2) .. x_(n-1)
        objective = math.sqrt(above[p] / n) + math.sqrt(below[p - 1] / n)
        if objective < best:  # strict: the first minimum wins
            best_p, best = p, objective
    root_alpha, root_beta = math.sqrt(above[best_p] / n), math.sqrt(below[best_p - 1] / n)
    return (x[best_p], *ald_parameters(root_alpha, root_beta, n))


def ald_parameters(root_alpha: float, root_beta: float, n: int) -> tuple[float, float, float]:
    """scale, kappa, loglik (docs/spec.md section 4) from sqrt(alpha) and sqrt(beta) at the location.

    The fourth roots are square roots of the square roots: (alpha beta)^(1/4) computed directly
    overflows for rows scaled by 1e+155 and underflows for rows scaled by 1e-200. Degenerate rows
    (alpha or beta 0) follow IEEE arithmetic: kappa 0, inf or NaN, scale 0, loglik +inf.
    """
    objective = root_alpha + root_beta
    kappa = _ieee_div(root_beta, root_alpha)
    scale = math.sqrt(root_alpha) * math.sqrt(root_beta) * objective
    loglik = -n * (1 + 2 * math.log(objective)) if objective > 0 else math.inf
    return scale, math.sqrt(kappa), loglik


def _ieee_div(a: float, b: float) -> float:
    """a / b as IEEE arithmetic gives it (Python raises on division by zero)."""
    if b != 0:
        return a / b
    return math.nan if a == 0 else math.copysign(math.inf, a)


def _fit_row(row: torch.Tensor, cfg: FitConfig, out: RowFit, k: int) -> None:
    columns = {name: j for j, name in enumerate(cfg.nodes)}

    def record(name: str, values: torch.Tensor) -> None:
        j = columns[name]
        out.count[k, j] = values.numel()
        if values.numel():
            out.mean[k, j] = exact_mean(values)
            out.lo[k, j], out.hi[k, j] = float(values.min()), float(values.max())
            out.slope[k, j], out.intercept[k, j], out.r2[k, j] = line_fit(values, cfg.grid)

    def expand(name: str, values: torch.Tensor) -> None:
        record(name, values)
        level = len(name)
        splittable = (
            values.numel() >= cfg.min_size
            and level < cfg.levels
            and values.numel() > 0
            and values.min() != values.max()
        )
        if not splittable:
            return
        mu = exact_mean(values)
        upper, lower = values[values >= mu], values[values < mu]
        if cfg.tree == "chain":  # only the strong child: ++ under +, -- under -
            expand(name + name[0], upper if name[0] == "+" else lower)
        else:
            expand(name + "+", upper)
            expand(name + "-", lower)

    if cfg.root == "zero":
        expand("+", row[row > 0])
        expand("-", row[row < 0])
    else:
        mu = exact_mean(row)
        expand("+", row[row >= mu])
        expand("-", row[row < mu])
    out.loc[k], out.scale[k], out.kappa[k], out.loglik[k] = ald_fit(row)
    gof = gof_row(row.sort().values.tolist(), float(out.loc[k]), float(out.scale[k]), float(out.kappa[k]))
    out.loglik_laplace[k], out.loglik_normal[k], out.ks[k] = gof


def fit_rows(W: torch.Tensor, cfg: FitConfig) -> RowFit:
    """Fit every row of ``W`` (R, D), any float dtype and device; results on W's device."""
    out = RowFit.empty(W.shape[0], cfg.n_columns)
    rows = W.detach().to("cpu", torch.float64)
    for k in range(rows.shape[0]):
        _fit_row(rows[k], cfg, out, k)
    return out.to(W.device)


register_backend(
    Backend(name="reference", fit_rows=fit_rows, devices=frozenset({"cpu", "cuda"}), bytes_per_element=16, exact=True)
)
