"""``backend="torch"``: docs/spec.md sections 2-4 vectorised over a block of rows, on any torch device.

Algorithm (per block of R rows, everything (R, D) at a time):

1. Sort every row once (float64 from here on) and take ``y = ln|theta|``.
2. Walk the tree level by level. ``node`` (R, D) holds, for every element, the position of the
   node it belongs to within the current level (or -1). Node statistics are segment reductions
   (``index_add_`` / ``scatter_reduce``) over ``row * width + node``; sums are taken directly over
   the members (no prefix-sum differences, so no cancellation).
3. The line fit needs each member's rank among the node's magnitudes. Single-signed nodes are
   runs of the sorted row, so the rank is a distance to the run's end. Nodes that straddle zero
   (``root="mean"``) interleave a reversed negative run with a positive run; the rank adds how
   many of the other run are smaller, read off one ``searchsorted`` of ``-x`` done per row.
4. A split sends an element up when ``x >= mean``. The mean here is a float64 sum in whatever
   order the device reduces; the exact threshold of docs/spec.md is the correctly rounded sum divided once.
   Both lie within ``rounding_slack`` of each other, so any element closer than that to the
   computed mean marks its row ``ambiguous`` and ``fit`` recomputes the row exactly.
5. The ALD fit uses prefix sums of the weighted gaps of the sorted row (see ``reference.ald_fit``);
   the goodness of fit (docs/spec.md section 7) reads the same sorted rows (``gof.gof_rows``).
"""

from __future__ import annotations

import torch

from ..config import FitConfig
from ..gof import gof_rows
from ..result import RowFit
from .registry import Backend, register_backend

__all__ = ["fit_rows", "rounding_slack", "ald_rows"]

_U = 2.0**-53  # unit roundoff of float64
_TINY = 2.0**-1000  # absolute slack for float64 inputs near the subnormal range


def rounding_slack(count: torch.Tensor, abs_sum: torch.Tensor) -> torch.Tensor:
    """Bound on |computed mean - exact mean of docs/spec.md| for a float64 sum taken in any order.

    Any summation order of n terms errs by at most gamma_{n-1} * sum|x| (Higham, Thm 4.4);
    one more rounding for the computed division and two for the exact one add 3u * sum|x| / n.
    The result is doubled for margin.
    """
    count = count.to(torch.float64)
    return 2 * (count + 3) * _U * abs_sum / count + _TINY


class _Segments:
    """Segment reductions of (R, D) element values into (R, width) node values."""

    def __init__(self, node: torch.Tensor, width: int):
        rows = node.shape[0]
        self.member = node >= 0
        self.node = node.clamp(min=0)
        self.shape = (rows, width)
        row_base = torch.arange(rows, device=node.device).unsqueeze(1) * width
        # Non-members go to one extra trash slot at the end.
        self.index = torch.where(self.member, row_base + self.node, rows * width).flatten()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(self.shape[0] * self.shape[1] + 1, dtype=values.dtype, device=values.device)
        total.index_add_(0, self.index, values.flatten())
        return total[:-1].view(self.shape)

    def reduce(self, values: torch.Tensor, how: str, where: torch.Tensor | None = None) -> torch.Tensor:
        """``how`` in {"amin", "amax"} over members (and ``where``); NaN / sentinel for none."""
        if values.is_floating_point():
            fill = float("inf") if how == "amin" else float("-inf")
        else:
            info = torch.iinfo(values.dtype)
            fill = info.max if how == "amin" else info.min
        index = self.index
        if where is not None:
            index = torch.where(where.flatten(), index, self.shape[0] * self.shape[1])
        out = torch.full((self.shape[0] * self.shape[1] + 1,), fill, dtype=values.dtype, device=values.device)
        out.scatter_reduce_(0, index, values.flatten(), reduce=how, include_self=True)
        return out[:-1].view(self.shape)

    def gather(self, per_node: torch.Tensor) -> torch.Tensor:
        """Broadcast (R, width) node values back to (R, D) elements (garbage for non-members)."""
        return torch.gather(per_node, 1, self.node)


def _line_fit(xs, y, seg: _Segments, z0, z1, mirror, grid: str):
    """(slope, intercept, r2) of every node, each (R, width) float64."""
    member = seg.member
    nonzero = member & (xs != 0)
    positions = torch.arange(xs.shape[1], device=xs.device).expand_as(xs)
    count = seg.sum(member.to(torch.int64))
    start = seg.reduce(positions, "amin")
    end = start + count
    s, e = seg.gather(start), seg.gather(end)
    # Rank of each member among the node's non-zero magnitudes (ties share a log value, so any
    # consistent order of tied magnitudes gives the same sums).
    pos_first, neg_last = torch.maximum(s, z1), torch.minimum(e, z0)
    rank_pos = positions - pos_first + (z0 - torch.maximum(s, mirror)).clamp(min=0)
    rank_neg = neg_last - 1 - positions + (torch.minimum(e, mirror) - pos_first).clamp(min=0)
    rank = torch.where(xs > 0, rank_pos, rank_neg).to(torch.float64)

    L = seg.sum(nonzero.to(torch.int64)).to(torch.float64)
    y_min = seg.reduce(y, "amin", where=nonzero)
    d = torch.where(nonzero, y - seg.gather(y_min), 0.0)
    rank = torch.where(nonzero, rank, 0.0)
    step = 1.0 / (L if grid == "paper" else L - 1)  # x_i = step * rank_i
    mid = (L - 1) / 2
    sum_d = seg.sum(d)
    sum_rd = seg.sum(rank * d)
    slope = 12 * (sum_rd - mid * sum_d) / (step * L * (L * L - 1))
    d_mean = sum_d / L
    intercept = y_min + d_mean - slope * step * mid
    resid = d - seg.gather(d_mean) - seg.gather(slope * step) * (rank - seg.gather(mid))
    ss_res = seg.sum(torch.where(nonzero, resid * resid, 0.0))
    dev = torch.where(nonzero, d - seg.gather(d_mean), 0.0)
    ss_tot = seg.sum(dev * dev)
    r2 = torch.where(ss_tot == 0, (ss_res == 0).to(torch.float64), 1 - ss_res / ss_tot)

    single = L == 1
    nan = torch.full_like(slope, float("nan"))
    slope = torch.where(L >= 2, slope, torch.where(single, 0.0, nan))
    intercept = torch.where(L >= 2, intercept, torch.where(single, y_min, nan))
    r2 = torch.where(L >= 2, r2, nan)
    return slope, intercept, r2


def ald_rows(xs: torch.Tensor):
    """Exact ALD MLE of every row of sorted float64 ``xs`` (R, n): loc, scale, kappa, loglik (R,)."""
    rows, n = xs.shape
    if n < 3:
        nan = torch.full((rows,), float("nan"), dtype=torch.float64, device=xs.device)
        return nan, nan.clone(), nan.clone(), nan.clone()
    gaps = xs.diff(dim=1)
    weights_up = torch.arange(1, n, dtype=torch.float64, device=xs.device)
    below = torch.cumsum(gaps * weights_up, 1)  # n*beta at x[p] is below[p - 1]
    above = torch.cumsum((gaps * weights_up.flip(0)).flip(1), 1).flip(1)  # n*alpha at x[p]
    alpha, beta = above[:, 1 : n - 1] / n, below[:, : n - 2] / n
    objective = torch.sqrt(alpha) + torch.sqrt(beta)
    best = torch.argmin(objective, dim=1, keepdim=True)  # first minimum
    alpha, beta = (t.gather(1, best).squeeze(1) for t in (alpha, beta))
    loc = xs.gather(1, best + 1).squeeze(1)
    return (loc, *ald_parameters(alpha, beta, n))


def ald_parameters(alpha: torch.Tensor, beta: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """scale, kappa, loglik (docs/spec.md section 4) from alpha, beta at the chosen location.

    The fourth roots come from the square roots: (alpha beta)^(1/4) = sqrt(sqrt(alpha) sqrt(beta))
    stays in range where alpha * beta overflows or underflows (rows scaled by 1e+-155), and square
    roots round the same in torch's vectorised body and scalar tail (its ``pow`` does not).
    """
    root_alpha, root_beta = torch.sqrt(alpha), torch.sqrt(beta)
    objective = root_alpha + root_beta
    kappa = torch.sqrt(root_beta / root_alpha)
    scale = torch.sqrt(root_alpha) * torch.sqrt(root_beta) * objective
    loglik = -n * (1 + 2 * torch.log(objective))
    return scale, kappa, loglik


def fit_rows(W: torch.Tensor, cfg: FitConfig) -> RowFit:
    """Fit every row of ``W`` (R, D), any float dtype, on W's device."""
    rows, D = W.shape
    # Contiguous rows: the sort keeps a transposed head's strides, which searchsorted would copy.
    xs = torch.sort(W.detach(), dim=1).values.to(torch.float64).contiguous()
    out = RowFit.empty(rows, cfg.n_columns, device=W.device)
    out.loc, out.scale, out.kappa, out.loglik = ald_rows(xs)
    out.loglik_laplace, out.loglik_normal, out.ks = gof_rows(xs, out.loc, out.scale, out.kappa)

    y = torch.log(xs.abs())  # -inf at zeros, which never enter a fit
    z0 = (xs < 0).sum(1, keepdim=True)  # first index >= 0
    z1 = (xs <= 0).sum(1, keepdim=True)  # first index > 0
    if cfg.root == "zero":  # single-signed nodes: the cross-run terms of the rank vanish
        mirror = z0.expand_as(xs)
        node = torch.where(xs > 0, 0, torch.where(xs < 0, 1, -1))
    else:
        mirror = torch.searchsorted(xs, -xs, right=True)  # elements <= -x
        mean = xs.sum(1, keepdim=True) / D
        slack = rounding_slack(torch.full_like(mean, D), xs.abs().sum(1, keepdim=True))
        out.ambiguous |= ((xs - mean).abs() <= slack).any(1)
        node = torch.where(xs >= mean, 0, 1)

    for level in range(1, cfg.levels + 1):
        width = 2 if cfg.tree == "chain" else 2**level
        seg = _Segments(node, width)
        count = seg.sum(seg.member.to(torch.int64))
        total = seg.sum(torch.where(seg.member, xs, 0.0))
        lo, hi = seg.reduce(xs, "amin"), seg.reduce(xs, "amax")
        present = count > 0
        mean = total / count
        columns = cfg.level_columns(level)
        out.count[:, columns] = count
        out.mean[:, columns] = torch.where(present, mean, float("nan"))
        out.lo[:, columns] = torch.where(present, lo, float("nan"))
        out.hi[:, columns] = torch.where(present, hi, float("nan"))
        fits = _line_fit(xs, y, seg, z0, z1, mirror, cfg.grid)
        out.slope[:, columns], out.intercept[:, columns], out.r2[:, columns] = fits

        split = present & (count >= cfg.min_size) & (lo != hi)
        if level == cfg.levels or not bool(split.any()):
            break
        abs_sum = seg.sum(torch.where(seg.member, xs.abs(), 0.0))
        slack = rounding_slack(count.clamp(min=1), abs_sum)
        split_e = seg.member & seg.gather(split)
        mean_e = seg.gather(mean)
        out.ambiguous |= (split_e & ((xs - mean_e).abs() <= seg.gather(slack))).any(1)
        upper = xs >= mean_e
        if cfg.tree == "chain":  # + keeps its upper child, - its lower child
            keep = split_e & torch.where(seg.node == 0, upper, ~upper)
            node = torch.where(keep, seg.node, -1)
        else:
            node = torch.where(split_e, 2 * seg.node + (~upper).to(torch.int64), -1)
    return out


register_backend(
    Backend(
        name="torch",
        fit_rows=fit_rows,
        devices=frozenset({"cpu", "cuda"}),
        bytes_per_element=320,
        auto_rank=10,
    )
)
