"""What the backends are measured against: the author's per-class numpy loop and scipy's ALD fit.

``author_fit`` is written the way the paper's notebooks work, one class at a time in numpy:
Algorithm 1 on the positive (and negative) weights (sort, log, ``np.polyfit``, R^2), then the
recursive split of each chain at its mean (``+ -> ++ -> +++``, ``- -> -- -> ---``). It computes
the same numbers as ``fit(W, tree="chain", root="zero")``'s line fits (the tests check that), but
no ALD maximum likelihood: ``scipy_ald`` is that part, ``scipy.stats.laplace_asymmetric.fit`` per
row. They exist for ``fcinterp bench``; use ``fcinterp_fast.fit`` for real work.
"""

from __future__ import annotations

import numpy as np

__all__ = ["author_fit", "scipy_ald"]


def _line_fit(values: np.ndarray, grid: str) -> tuple[float, float, float]:
    """Algorithm 1 on one node: (slope, intercept, r2) of ln|theta| sorted against x_i."""
    v = np.sort(np.abs(values[values != 0]))
    L = len(v)
    if L == 0:
        return np.nan, np.nan, np.nan
    y = np.log(v)
    if L == 1:
        return 0.0, float(y[0]), np.nan
    x = np.arange(L) / (L if grid == "paper" else L - 1)
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1 - ss_res / ss_tot
    return float(slope), float(intercept), r2


def author_fit(
    W: np.ndarray, *, min_size: int = 20, depth: int = 64, grid: str = "paper"
) -> list[dict[str, tuple[int, float, float, float]]]:
    """The chain split tree of every row of ``W`` (K, D), one class at a time.

    Returns:
        For each class, ``{node: (count, slope, intercept, r2)}`` for the nodes of both chains.
    """
    results = []
    for theta in np.asarray(W, dtype=np.float64):
        nodes: dict[str, tuple[int, float, float, float]] = {}
        for name, values in (("+", theta[theta > 0]), ("-", theta[theta < 0])):
            while True:  # one chain: the node, then its strong child at the node's mean
                nodes[name] = (len(values), *_line_fit(values, grid))
                if len(values) == 0 or len(values) < min_size or len(name) >= depth or values.min() == values.max():
                    break
                mu = values.mean()
                name, values = name + name[0], values[values >= mu] if name[0] == "+" else values[values < mu]
        results.append(nodes)
    return results


def scipy_ald(W: np.ndarray) -> np.ndarray:
    """``scipy.stats.laplace_asymmetric.fit`` of every row: (K, 3) float64 of (kappa, loc, scale)."""
    from scipy.stats import laplace_asymmetric

    return np.array([laplace_asymmetric.fit(row) for row in np.asarray(W, dtype=np.float64)])
