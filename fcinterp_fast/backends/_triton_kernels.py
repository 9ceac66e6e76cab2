"""Triton kernels of ``backend="triton"``: docs/spec.md sections 2-4 and 7 for a block of rows, on the GPU.

Two kernels share the per-node arithmetic below:

``_fit_rows_kernel`` (rows up to ``MAX_SINGLE_PASS`` elements) does everything for ``ROWS`` rows in
one pass, with the rows held in registers:

1. Load (any float dtype and strides, int64 row offsets), cast to the sort dtype (float32, or
   float64 for float64 input), pad with +inf and sort each row with ``tl.sort``.
2. ALD maximum likelihood (docs/spec.md section 4, as ``reference.ald_fit``): with gaps g_i = x_{i+1} - x_i,
   n * beta at x_p is the prefix sum of (i + 1) g_i over i < p and n * alpha the suffix sum of
   (n - 1 - i) g_i over i >= p. The neighbours x_{i-1}, x_{i+1} come from two "shift" scans
   (``_neighbours``; ``tl.gather`` would cost 2x the registers and spill); the terms are placed
   so that both sums are inclusive float64 scans (forward and reverse), hence sums of
   non-negative terms in which ties give exact zeros. First minimum of sqrt(alpha) + sqrt(beta)
   over p = 1..n-2 (``tl.argmin`` breaks ties to the left).
   Then the goodness of fit (docs/spec.md section 7, as ``gof.gof_row``): median, mean, the Laplace
   and normal deviations and the KS statistic against the fitted ALD in one more sweep of the
   sorted rows (``_store_gof``).
3. The split tree, level by level, in a ``while`` loop that stops when no row of the program has a
   node left to split. ``node`` holds, for every sorted element, the index of its node within the
   level (-1: none). Every node is a run ``[s, e)`` of the sorted row, so the rest is read off
   positions and a few totals: its non-zero count from the row's zero run ``[z0, z1)``, its
   smallest magnitude from its ends or the row's elements nearest zero, and the rank of every
   member among the node's magnitudes (``_magnitude_rank``: a distance to the end of the run).
   Node totals are float64 sums over the members themselves (never prefix-sum differences, which
   would cancel): for chains (two nodes per level: ``+`` is a suffix of the row, ``-`` a prefix)
   masked reductions; for full trees a segmented scan keyed by node id followed by a reverse
   segmented scan that copies each run's totals (and last value) back to all its members.
   Pass 1 gives count, sum, absolute sum, min and max; pass 2 (relative to the node's smallest
   log magnitude) the line-fit sums. Node statistics are stored straight into the ``RowFit``
   columns (``_config`` layout), for full trees by each node's first element.
   With root="mean" one node per level may hold both signs; its members' ranks interleave the
   two runs. |x| along the sorted row falls then rises (a bitonic sequence), so one
   ``tl.bitonic_merge`` of (|x|, sign) keys orders the row by magnitude once, and each level
   takes that node's rank sum there (a cumulative count of its members).
4. Splits: a node splits when it has at least ``min_size`` members, is below ``levels`` and not
   constant; its members go up when ``x >= mean``. The mean is a float64 sum taken in the
   reduction's order; the spec's threshold (correctly rounded sum / count) lies within
   ``_slack`` of it, so a row where some element of a splitting node lies that close to the
   computed mean is flagged ``ambiguous`` and recomputed exactly by ``fit``. Where the members'
   magnitudes span few enough binades that every partial sum is exact (typical of 16-bit heads
   and of deep nodes), the two thresholds are the same float and nothing is flagged.

``_fit_sorted_kernel`` (longer rows) takes rows already sorted by ``torch.sort`` (and, for
root="mean", ``mirror`` from ``torch.searchsorted``), one row per program, and walks the same tree
node by node over each node's own run of the row in chunks of ``CHUNK`` elements; node ranges
are kept in a small int32 scratch table per row. The ALD uses a float64 scratch row for the
suffix sums.

Logs, sums and line fits are float64 throughout; the sort dtype only holds the input values,
which it represents exactly.
"""
from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["MAX_SINGLE_PASS", "single_pass_config", "_fit_rows_kernel", "_fit_sorted_kernel"]

#: Longest row the single-pass kernel keeps in registers (elements); longer rows are sorted by
#: ``torch.sort`` and fitted by ``_fit_sorted_kernel``.
MAX_SINGLE_PASS = 16384

_UNIT_ROUNDOFF = tl.constexpr(2.0**-53)
_TINY = tl.constexpr(2.0**-1000)  # absolute slack for float64 inputs near the subnormal range


def single_pass_config(D: int, heavy: bool) -> tuple[int, int, int]:
    """``(BLOCK, ROWS, num_warps)`` for rows of ``D <= MAX_SINGLE_PASS`` elements; ``heavy``: full
    trees or root="mean", which keep more per-element state and get twice the warps.

    Every distinct configuration is a separate compilation (tens of seconds, for ``tl.sort``),
    so it depends on D alone, through a few power-of-two block sizes: rows shorter than 256 are
    padded to 128 or 256 and packed two or four to a program. About 16 elements per thread keep
    the state in registers (up to 8192 elements; 16384 spills some).
    """
    block = max(128, triton.next_power_of_2(D))
    rows = max(1, 512 // block)
    num_warps = min(16, max(4, block // 512) * (2 if heavy else 1))
    return block, rows, num_warps


# ----------------------------------------------------------------------------------------------
# Per-node arithmetic shared by both kernels (shape-agnostic: scalars, (ROWS, 2) or (ROWS, BLOCK))
# ----------------------------------------------------------------------------------------------


@triton.jit
def _slack(count, abs_sum, smallest, MANTISSA: tl.constexpr):
    """Bound on |computed mean - spec mean| of a node, or -1 when the two are the same float.

    Every member is a multiple of g = ulp(smallest non-zero magnitude) at ``MANTISSA`` bits; if
    sum|x| < 2^53 g, every partial sum in any order is exact, so the computed sum is the correctly
    rounded one and the mean the spec's to the bit. Otherwise a float64 sum of n terms in any
    order is within 2 (n + 3) u sum|x| / n + tiny of it (as ``torch_vec.rounding_slack``).
    """
    n = count.to(tl.float64)
    bound = 2.0 * (n + 3.0) * _UNIT_ROUNDOFF * abs_sum / n + _TINY
    exponent_of_sum = (abs_sum.to(tl.int64, bitcast=True) >> 52) & 0x7FF
    exponent_of_smallest = (smallest.to(tl.int64, bitcast=True) >> 52) & 0x7FF
    exact = exponent_of_sum < exponent_of_smallest - MANTISSA + 54
    return tl.where(exact, -1.0, bound)


@triton.jit
def _nonzero_parts(s, e, z0, z1):
    """Of the node run [s, e): end of its negative part and start of its positive part, and its
    number of non-zero members. The row's zeros are the run [z0, z1)."""
    neg_end = tl.minimum(e, z0)
    pos_start = tl.maximum(s, z1)
    n_nonzero = tl.maximum(neg_end - s, 0) + tl.maximum(e - pos_start, 0)
    return neg_end, pos_start, n_nonzero


@triton.jit
def _magnitude_rank(i, x, s, e, z0, z1, mirror):
    """Rank of member ``i`` (value ``x``) among the node's non-zero magnitudes.

    Positive members count the node's positives below them and the negatives of smaller
    magnitude; negative members the negatives nearer zero and the positives of magnitude <= |x|
    (``mirror`` = #{elements <= -x} in the sorted row). Tied magnitudes get distinct ranks in a
    consistent order, which leaves every line-fit sum unchanged since they share one log value.
    """
    neg_end, pos_start, _ = _nonzero_parts(s, e, z0, z1)
    rank_pos = i - pos_start + tl.maximum(z0 - tl.maximum(s, mirror), 0)
    rank_neg = neg_end - 1 - i + tl.maximum(tl.minimum(e, mirror) - pos_start, 0)
    return tl.where(x > 0, rank_pos, rank_neg).to(tl.float64)


@triton.jit
def _line_fit(L, y_min, sum_d, sum_rd, sum_dd, linspace):
    """Algorithm 1 from the sums of d = ln|x| - y_min over the node's magnitudes sorted ascending:
    ``sum_d``, ``sum_rd`` (rank * d), ``sum_dd``; x_rank = rank / L (paper) or / (L - 1).

    Returns (slope, intercept, r2); L == 1: (0, y_min, NaN); L == 0: NaN. A node of equal
    magnitudes has d == 0 exactly, hence slope 0, intercept y_min and r2 = 1 exactly.
    """
    Lf = L.to(tl.float64)
    Lsafe = tl.maximum(Lf, 2.0)
    step = 1.0 / tl.where(linspace != 0, Lsafe - 1.0, Lsafe)
    mid = (Lsafe - 1.0) / 2.0
    centred = sum_rd - mid * sum_d  # sum of (rank - mid) * d
    slope = 12.0 * centred / (step * Lsafe * (Lsafe * Lsafe - 1.0))
    d_mean = sum_d / Lsafe
    intercept = y_min + d_mean - slope * step * mid
    # SS_tot >= max(d)^2 / 2 >= sum_dd / (2 L) when d is not constant, so these differences keep
    # their relative accuracy; the clamps only remove rounding below zero.
    ss_tot = tl.maximum(sum_dd - sum_d * d_mean, 0.0)
    ss_res = tl.maximum(ss_tot - slope * step * centred, 0.0)
    r2 = tl.where(ss_tot == 0.0, tl.where(ss_res == 0.0, 1.0, 0.0), 1.0 - ss_res / tl.where(ss_tot == 0.0, 1.0, ss_tot))
    nan = float("nan")
    slope = tl.where(L >= 2, slope, tl.where(L == 1, 0.0, nan))
    intercept = tl.where(L >= 2, intercept, tl.where(L == 1, y_min, nan))
    r2 = tl.where(L >= 2, r2, nan)
    return slope, intercept, r2


@triton.jit
def _store_ald(loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, offset, mask, D, loc, alpha, beta):
    """The ALD at the chosen order statistic ``loc`` (docs/spec.md section 4, in IEEE arithmetic: alpha or beta 0
    give kappa 0, inf or NaN and loglik +inf for constant rows); NaN when D < 3."""
    n = D.to(tl.float64)
    root_alpha = tl.sqrt(alpha)
    root_beta = tl.sqrt(beta)
    objective = root_alpha + root_beta
    # fourth roots from the square roots: alpha * beta overflows for rows scaled by 1e+155
    kappa = tl.sqrt(root_beta / root_alpha)
    scale = tl.sqrt(root_alpha) * tl.sqrt(root_beta) * objective
    loglik = -n * (1.0 + 2.0 * tl.log(objective))
    nan = float("nan")
    tl.store(loc_ptr + offset, tl.where(D >= 3, loc, nan), mask=mask)
    tl.store(scale_ptr + offset, tl.where(D >= 3, scale, nan), mask=mask)
    tl.store(kappa_ptr + offset, tl.where(D >= 3, kappa, nan), mask=mask)
    tl.store(loglik_ptr + offset, tl.where(D >= 3, loglik, nan), mask=mask)


@triton.jit
def _ald_cdf(x, loc, scale, kappa):
    """The ALD cdf as ``scipy.stats.laplace_asymmetric._cdf`` writes it (docs/spec.md section 7)."""
    z = (x - loc) / scale
    kapinv = 1.0 / kappa
    both = kappa + kapinv
    return tl.where(z >= 0, 1.0 - tl.exp(-z * kappa) * (kapinv / both), tl.exp(z * kapinv) * (kappa / both))


@triton.jit
def _store_gof(ll_laplace_ptr, ll_normal_ptr, ks_ptr, offset, mask, D, alpha, beta, b, spread, sum_sq, ks, flat):
    """Goodness of fit of rows (docs/spec.md section 7, as ``gof.gof_row``): the Laplace and normal
    log-likelihoods from b = mean |x - median| and sigma = spread * sqrt(sum_sq / n), the KS
    statistic ``ks`` against the ALD fitted at (alpha, beta); NaN for D < 3, constant rows (``flat``)
    and (ks) ALD fits without a density."""
    n = D.to(tl.float64)
    nan = float("nan")
    ll_laplace = -n * (1.0 + tl.log(2.0 * b))
    sigma = spread * tl.sqrt(sum_sq / n)
    ll_normal = -n / 2.0 * (1.0 + 1.8378770664093453) - n * tl.log(sigma)  # ln(2 pi)
    bad = flat | (D < 3)
    ald_ok = (alpha > 0) & (beta > 0) & (alpha < float("inf")) & (beta < float("inf"))
    tl.store(ll_laplace_ptr + offset, tl.where(bad, nan, ll_laplace), mask=mask)
    tl.store(ll_normal_ptr + offset, tl.where(bad, nan, ll_normal), mask=mask)
    tl.store(ks_ptr + offset, tl.where(bad | ~ald_ok, nan, ks), mask=mask)


@triton.jit
def _ald_scale_kappa(alpha, beta):
    """scale and kappa of the ALD at (alpha, beta), as ``_store_ald`` computes them."""
    root_alpha = tl.sqrt(alpha)
    root_beta = tl.sqrt(beta)
    return tl.sqrt(root_alpha) * tl.sqrt(root_beta) * (root_alpha + root_beta), tl.sqrt(root_beta / root_alpha)


@triton.jit
def _store_node(
    count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
    offset, mask, count, mean, lo, hi, slope, intercept, r2,
):
    """Write one node's statistics at ``offset`` (row * n_columns + column, int64)."""
    tl.store(count_ptr + offset, count.to(tl.int64), mask=mask)
    tl.store(mean_ptr + offset, mean, mask=mask)
    tl.store(lo_ptr + offset, lo, mask=mask)
    tl.store(hi_ptr + offset, hi, mask=mask)
    tl.store(slope_ptr + offset, slope, mask=mask)
    tl.store(intercept_ptr + offset, intercept, mask=mask)
    tl.store(r2_ptr + offset, r2, mask=mask)


# ----------------------------------------------------------------------------------------------
# Scans and node totals inside the single-pass kernel
# ----------------------------------------------------------------------------------------------


@triton.jit
def _shift_combine(prev1, cur1, prev2, cur2):
    # Pieces of a sequence as (element before the last, last element); NaN: piece of one element.
    return tl.where(prev2 != prev2, cur1, prev2), cur2


@triton.jit
def _neighbours(xs):
    """(x[i - 1], x[i + 1]) along each row (NaN past the ends); rows hold no NaN."""
    none = tl.full(xs.shape, float("nan"), xs.dtype)
    before, _ = tl.associative_scan((none, xs), 1, _shift_combine)
    after, _ = tl.associative_scan((none, xs), 1, _shift_combine, reverse=True)
    return before, after


@triton.jit
def _segment_add_first(k1, a1, b1, c1, f1, k2, a2, b2, c2, f2):
    # Within a run of equal keys (each node is one run of the sorted row): running sums of a, b, c
    # and the run's first f.
    same = k1 == k2
    return (k2, a2 + tl.where(same, a1, 0), b2 + tl.where(same, b1, 0), c2 + tl.where(same, c1, 0),
            tl.where(same, f1, f2))  # fmt: skip


@triton.jit
def _segment_last(k1, a1, b1, c1, f1, k2, a2, b2, c2, f2):
    # Scanned in reverse: every element takes the values of the last element of its run.
    same = k1 == k2
    return k2, tl.where(same, a1, a2), tl.where(same, b1, b2), tl.where(same, c1, c2), tl.where(same, f1, f2)


@triton.jit
def _segment_totals(node, a, b, c, f):
    """Full trees, per element: running sum of ``a`` within its node, the node's first ``f``,
    the node's totals of ``a``, ``b``, ``c`` and its last ``f``."""
    _, a_run, b_run, c_run, f_first = tl.associative_scan((node, a, b, c, f), 1, _segment_add_first)
    _, a, b, c, f_last = tl.associative_scan((node, a_run, b_run, c_run, f), 1, _segment_last, reverse=True)
    return a_run, f_first, a, b, c, f_last


@triton.jit
def _pair_sum(node, v):
    """Chains: (ROWS, BLOCK) -> (ROWS, 2) sums of ``v`` over node 0 and node 1."""
    zero = tl.zeros_like(v)
    return tl.join(tl.sum(tl.where(node == 0, v, zero), axis=1), tl.sum(tl.where(node == 1, v, zero), axis=1))


@triton.jit
def _per_element(t, node, FULL: tl.constexpr):
    """Node values as seen by each element: chains select from (ROWS, 2); full trees already
    hold them per element."""
    if FULL:
        return t
    else:
        t0, t1 = tl.split(t)
        return tl.where(node == 0, t0[:, None], t1[:, None])


@triton.jit
def _one_per_row(t, where, FULL: tl.constexpr):
    """(ROWS,) value of the node-level ``t`` at the (at most one) node of each row marked by
    ``where`` (0 if none)."""
    if FULL:
        return tl.sum(tl.where(where, t, tl.zeros_like(t)), axis=1)
    else:
        # tl.split, not a reduction over the joined axis: keeps the rows' layout intact
        t0, t1 = tl.split(t)
        w0, w1 = tl.split(where)
        return tl.where(w0, t0, tl.where(w1, t1, tl.zeros_like(t0)))


# Sizes and options stay runtime values (an argument equal to 1 would otherwise become a
# compile-time constant and recompile the kernel).
@triton.jit(do_not_specialize=["n_rows", "D", "n_columns", "min_size", "levels", "linspace"])
def _fit_rows_kernel(
    w_ptr,
    count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
    loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, ll_laplace_ptr, ll_normal_ptr, ks_ptr, ambiguous_ptr,
    n_rows, D, stride_row, stride_col, n_columns,
    min_size, levels, linspace,
    # Meta-parameters
    BLOCK: tl.constexpr, ROWS: tl.constexpr,
    FULL: tl.constexpr, ROOT_MEAN: tl.constexpr, SORT_DTYPE: tl.constexpr, MANTISSA: tl.constexpr,
):
    """Fit ``ROWS`` rows of ``w`` (n_rows, D) in one pass; see the module docstring.

    ``MANTISSA``: significand bits of w's dtype (for ``_slack``).
    """
    # -- map the program to its rows --------------------------------------------------------
    pid = tl.program_id(0)
    rows = pid * ROWS + tl.arange(0, ROWS)  # (ROWS,)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK)  # (BLOCK,)
    pos = cols[None, :] + tl.zeros((ROWS, BLOCK), dtype=tl.int32)  # (ROWS, BLOCK) sorted positions
    valid = (pos < D) & row_ok[:, None]

    # -- load, sort ---------------------------------------------------------------------------
    ptrs = w_ptr + rows64[:, None] * stride_row + cols.to(tl.int64)[None, :] * stride_col
    x = tl.load(ptrs, mask=valid, other=0.0).to(SORT_DTYPE)  # cast right after the load (bf16)
    xs = tl.sort(tl.where(valid, x, float("inf")), dim=1)  # (ROWS, BLOCK), +inf sorts last
    xs = tl.where(valid, xs, 0.0)  # keep the padding out of the arithmetic below
    x64 = xs.to(tl.float64)
    z0 = tl.sum((valid & (xs < 0)).to(tl.int32), axis=1)[:, None]  # (ROWS, 1) first position >= 0
    z1 = tl.sum((valid & (xs <= 0)).to(tl.int32), axis=1)[:, None]  # first position > 0
    neg_max = tl.max(tl.where(valid & (xs < 0), x64, float("-inf")), axis=1)[:, None]  # x[z0 - 1]
    pos_min = tl.min(tl.where(valid & (xs > 0), x64, float("inf")), axis=1)[:, None]  # x[z1]
    row_min = tl.min(tl.where(valid, xs, float("inf")), axis=1)  # (ROWS,)
    row_max = tl.max(tl.where(valid, xs, float("-inf")), axis=1)
    nonzero = valid & (xs != 0)
    y = tl.log(tl.where(nonzero, tl.abs(x64), 1.0))  # float64 log magnitudes, 0 off the nodes

    # -- ALD maximum likelihood ---------------------------------------------------------------
    n = D.to(tl.float64)
    before, after = _neighbours(xs)
    posf = pos.to(tl.float64)
    # (i + 1) g_i sits at i + 1 and (n - 1 - i) g_i at i, so both sums are inclusive scans.
    below = tl.cumsum(tl.where((pos >= 1) & (pos < D), posf * (x64 - before.to(tl.float64)), 0.0), axis=1)
    above = tl.cumsum(tl.where(pos < D - 1, (n - 1.0 - posf) * (after.to(tl.float64) - x64), 0.0), axis=1, reverse=True)
    # sqrt(n alpha) + sqrt(n beta): the spec's objective times sqrt(n), same minimiser
    objective = tl.where((pos >= 1) & (pos <= D - 2), tl.sqrt(above) + tl.sqrt(below), float("inf"))
    at_best = pos == tl.argmin(objective, axis=1)[:, None]  # first minimum
    loc = tl.sum(tl.where(at_best, x64, 0.0), axis=1)
    alpha = tl.sum(tl.where(at_best, above, 0.0), axis=1) / n
    beta = tl.sum(tl.where(at_best, below, 0.0), axis=1) / n
    _store_ald(loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, rows64, row_ok, D, loc, alpha, beta)

    # -- goodness of fit (docs/spec.md section 7): one more sweep of the sorted rows ----------
    half = D // 2
    median = tl.sum(tl.where((pos == half) | ((pos == half - 1) & (D % 2 == 0)), x64, 0.0), axis=1)
    median = tl.where(D % 2 == 0, median / 2.0, median)
    b = tl.sum(tl.where(valid, tl.abs(x64 - median[:, None]), 0.0), axis=1) / n
    mean = tl.sum(tl.where(valid, x64, 0.0), axis=1) / n
    spread = tl.maximum(tl.abs(row_min.to(tl.float64) - mean), tl.abs(row_max.to(tl.float64) - mean))
    spread = tl.where(spread > 0, spread, 1.0)
    scaled = (x64 - mean[:, None]) / spread[:, None]
    sum_sq = tl.sum(tl.where(valid, scaled * scaled, 0.0), axis=1)
    scale, kappa = _ald_scale_kappa(alpha, beta)
    ald_ok = (scale > 0) & (kappa > 0) & (kappa < float("inf"))
    cdf = _ald_cdf(x64, loc[:, None], tl.where(ald_ok, scale, 1.0)[:, None], tl.where(ald_ok, kappa, 1.0)[:, None])
    gap = tl.maximum((posf + 1.0) / n - cdf, cdf - posf / n)
    ks = tl.max(tl.where(valid, gap, float("-inf")), axis=1)
    _store_gof(ll_laplace_ptr, ll_normal_ptr, ks_ptr, rows64, row_ok, D, alpha, beta, b, spread, sum_sq, ks,
               row_min == row_max)  # fmt: skip

    # -- root split ---------------------------------------------------------------------------
    if ROOT_MEAN:
        mu = tl.sum(tl.where(valid, x64, 0.0), axis=1)[:, None] / n
        row_smallest = tl.minimum(-neg_max, pos_min)
        slack = _slack(D, tl.sum(tl.where(valid, tl.abs(x64), 0.0), axis=1)[:, None], row_smallest, MANTISSA)
        ambiguous = tl.max((valid & (tl.abs(x64 - mu) <= slack)).to(tl.int32), axis=1)
        node = tl.where(valid, tl.where(x64 >= mu, 0, 1), -1)
        # The row by magnitude, for the one node per level that straddles zero: |x| along the
        # sorted row falls then rises (a bitonic sequence), so one bitonic merge orders it.
        # Keys: magnitude bits * 2 + sign, the padding last.
        if SORT_DTYPE == tl.float64:
            bits = tl.abs(xs).to(tl.int64, bitcast=True).to(tl.uint64)
        else:
            bits = tl.abs(xs).to(tl.int32, bitcast=True).to(tl.uint64)
        keys = tl.where(valid, bits * 2 + (xs < 0).to(tl.uint64), 0xFFFFFFFFFFFFFFFF)
        keys = tl.bitonic_merge(keys, dim=1)
        if SORT_DTYPE == tl.float64:
            by_size = (keys >> 1).to(tl.int64).to(tl.float64, bitcast=True)
        else:
            by_size = (keys >> 1).to(tl.int32).to(tl.float32, bitcast=True).to(tl.float64)
        by_size_fit = valid & (by_size != 0)
        by_size_y = tl.log(tl.where(by_size_fit, by_size, 1.0))
        by_size = tl.where((keys & 1) != 0, -by_size, by_size)  # signed values, by magnitude
    else:
        ambiguous = tl.zeros((ROWS,), dtype=tl.int32)
        node = tl.where(valid & (xs > 0), 0, tl.where(valid & (xs < 0), 1, -1))

    # -- the split tree, level by level -------------------------------------------------------
    if FULL:
        slot = pos  # full trees: every element carries its node's values
    else:
        slot = tl.arange(0, 2)[None, :] + tl.zeros((ROWS, 2), dtype=tl.int32)  # node 0 (+), 1 (-)
    level = pid * 0 + 1
    go = tl.max(tl.max((node >= 0).to(tl.int32), axis=1), axis=0) > 0
    while go:
        member = node >= 0
        # Pass 1: count, sum, sum of magnitudes, min, max; the node's run [first, end).
        ones = member.to(tl.int32)
        values = tl.where(member, x64, 0.0)
        if FULL:
            count_run, lo, count, total, abs_total, hi = _segment_totals(node, ones, values, tl.abs(values), xs)
            first = pos - count_run + 1
        else:
            count = _pair_sum(node, ones)
            total = _pair_sum(node, values)
            if ROOT_MEAN:
                abs_total = _pair_sum(node, tl.abs(values))
            else:
                abs_total = tl.abs(total)  # single-signed nodes
            # + is a suffix of the sorted row and - a prefix: + ends at the row's maximum and
            # - starts at its minimum
            inf = float("inf")
            lo = tl.join(tl.min(tl.where(node == 0, xs, inf), axis=1), row_min)
            hi = tl.join(row_max, tl.max(tl.where(node == 1, xs, -inf), axis=1))
            first = tl.where(slot == 0, D - count, 0)
        end = first + count
        present = count > 0
        lo = lo.to(tl.float64)
        hi = hi.to(tl.float64)
        neg_end, pos_start, L = _nonzero_parts(first, end, z0, z1)
        has_neg = neg_end > first
        has_pos = pos_start < end
        # Smallest magnitude: the node's end nearest zero, or the row's own if it spans past it.
        smallest = tl.minimum(
            tl.where(has_neg, tl.where(end > z0, -neg_max, -hi), float("inf")),
            tl.where(has_pos, tl.where(first < z1, pos_min, lo), float("inf")),
        )
        y_min = tl.log(tl.where(L > 0, smallest, 1.0))

        # Pass 2: line-fit sums relative to the node's smallest log magnitude.
        fit_member = member & nonzero
        d = tl.where(fit_member, y - _per_element(y_min, node, FULL), 0.0)
        # ranks of single-signed nodes (with mirror = z0 the cross terms vanish)
        rank = _magnitude_rank(pos, xs, _per_element(first, node, FULL), _per_element(end, node, FULL), z0, z1, z0)
        rank_d = tl.where(fit_member, rank, 0.0) * d
        if FULL:
            _, _, sum_d, sum_rd, sum_dd, _ = _segment_totals(node, d, rank_d, d * d, xs)
        else:
            sum_d = _pair_sum(node, d)
            sum_rd = _pair_sum(node, rank_d)
            sum_dd = _pair_sum(node, d * d)
        if ROOT_MEAN:  # the straddling node: ranks are positions among its members by magnitude
            straddles = present & has_neg & has_pos
            if FULL:
                marked = straddles & (pos == first)  # the node's first element speaks for it
            else:
                marked = straddles
            any_marked = _one_per_row(marked.to(tl.int32), marked, FULL) > 0
            s_lo = tl.where(any_marked, _one_per_row(lo, marked, FULL), float("inf"))
            s_hi = _one_per_row(hi, marked, FULL)
            s_member = by_size_fit & (by_size >= s_lo[:, None]) & (by_size <= s_hi[:, None])
            s_rank = (tl.cumsum(s_member.to(tl.int32), axis=1) - 1).to(tl.float64)
            s_d = by_size_y - _one_per_row(y_min, marked, FULL)[:, None]
            s_rd = tl.sum(tl.where(s_member, s_rank * s_d, 0.0), axis=1)
            sum_rd = tl.where(straddles, s_rd[:, None], sum_rd)
        slope, intercept, r2 = _line_fit(L, y_min, sum_d, sum_rd, sum_dd, linspace)
        mean = total / tl.maximum(count, 1).to(tl.float64)

        if FULL:
            column = (1 << level) - 2 + node
            store = member & (pos == first) & row_ok[:, None]
        else:
            column = 2 * (level - 1) + slot
            store = present & row_ok[:, None]
        _store_node(
            count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
            rows64[:, None] * n_columns + column.to(tl.int64), store,
            count, mean, lo, hi, slope, intercept, r2,
        )

        # Split: members go up when x >= mean; flag rows the rounding bound cannot decide.
        split = present & (count >= min_size) & (lo != hi) & (level < levels)
        split_e = member & (_per_element(split.to(tl.int32), node, FULL) != 0)
        mean_e = _per_element(mean, node, FULL)
        slack_e = _per_element(_slack(tl.maximum(count, 1), abs_total, smallest, MANTISSA), node, FULL)
        close = split_e & (tl.abs(x64 - mean_e) <= slack_e)
        ambiguous = tl.maximum(ambiguous, tl.max(close.to(tl.int32), axis=1))
        upper = x64 >= mean_e
        if FULL:
            node = tl.where(split_e, 2 * node + tl.where(upper, 0, 1), -1)
        else:  # + keeps its upper child, - its lower child
            node = tl.where(split_e & (upper == (node == 0)), node, -1)
        level += 1
        go = tl.max(tl.max(split.to(tl.int32), axis=1), axis=0) > 0

    tl.store(ambiguous_ptr + rows64, ambiguous != 0, mask=row_ok)


# ----------------------------------------------------------------------------------------------
# Rows longer than MAX_SINGLE_PASS: sorted by torch, walked node by node in chunks
# ----------------------------------------------------------------------------------------------


@triton.jit
def _count_below(s_row, D, threshold, strict: tl.constexpr, CHUNK: tl.constexpr):
    """#{x < threshold} (``strict``) or #{x <= threshold} over a whole sorted row."""
    total = tl.zeros((), dtype=tl.int32)
    for start in range(0, D, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        x = tl.load(s_row + offs, mask=offs < D, other=float("inf")).to(tl.float64)
        hit = (x < threshold) if strict else (x <= threshold)
        total += tl.sum(hit.to(tl.int32), axis=0)
    return total


@triton.jit(do_not_specialize=["D", "n_columns", "min_size", "levels", "linspace"])
def _fit_sorted_kernel(
    s_ptr, mirror_ptr, above_ptr, start_ptr, stop_ptr,
    count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
    loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, ll_laplace_ptr, ll_normal_ptr, ks_ptr, ambiguous_ptr,
    D, n_columns, min_size, levels, linspace,
    # Meta-parameters
    CHUNK: tl.constexpr, FULL: tl.constexpr, ROOT_MEAN: tl.constexpr, MANTISSA: tl.constexpr,
):
    """Fit one sorted row of ``s`` (n_rows, D) per program; see the module docstring.

    ``MANTISSA``: significand bits of the head's own dtype (the sorted copy may be wider).
    ``mirror`` (n_rows, D) int64: #{x <= -x_i} (read only when ROOT_MEAN); ``above`` (n_rows, D)
    float64 scratch; ``start``/``stop`` (n_rows, n_columns) int32 node runs, zero-initialised.
    """
    row = tl.program_id(0).to(tl.int64)
    s_row = s_ptr + row * D
    lane = tl.arange(0, CHUNK)
    n = D.to(tl.float64)
    z0 = _count_below(s_row, D, 0.0, True, CHUNK)
    z1 = _count_below(s_row, D, 0.0, False, CHUNK)

    # -- ALD: suffix sums into scratch (reverse order), then prefix sums and the first minimum --
    carry = tl.zeros((), dtype=tl.float64)
    n_chunks = tl.cdiv(D, CHUNK)
    for k in range(0, n_chunks):
        offs = (n_chunks - 1 - k) * CHUNK + lane
        x = tl.load(s_row + offs, mask=offs < D, other=0.0).to(tl.float64)
        after = tl.load(s_row + offs + 1, mask=offs + 1 < D, other=0.0).to(tl.float64)
        term = tl.where(offs < D - 1, (n - 1.0 - offs.to(tl.float64)) * (after - x), 0.0)
        suffix = tl.cumsum(term, axis=0, reverse=True) + carry
        tl.store(above_ptr + row * D + offs, suffix, mask=offs < D)
        carry = tl.sum(term, axis=0) + carry
    tl.debug_barrier()
    carry = tl.zeros((), dtype=tl.float64)
    best = tl.full((), float("inf"), dtype=tl.float64)
    best_alpha = tl.zeros((), dtype=tl.float64)
    best_beta = tl.zeros((), dtype=tl.float64)
    best_loc = tl.zeros((), dtype=tl.float64)
    for start in range(0, D, CHUNK):
        offs = start + lane
        x = tl.load(s_row + offs, mask=offs < D, other=0.0).to(tl.float64)
        before = tl.load(s_row + offs - 1, mask=(offs >= 1) & (offs < D), other=0.0).to(tl.float64)
        term = tl.where((offs >= 1) & (offs < D), offs.to(tl.float64) * (x - before), 0.0)
        below = tl.cumsum(term, axis=0) + carry
        carry = tl.sum(term, axis=0) + carry
        alpha = tl.load(above_ptr + row * D + offs, mask=offs < D, other=0.0, volatile=True) / n
        beta = below / n
        objective = tl.where((offs >= 1) & (offs <= D - 2), tl.sqrt(alpha) + tl.sqrt(beta), float("inf"))
        chunk_best = tl.min(objective, axis=0)
        at = offs == (start + tl.argmin(objective, axis=0))
        if chunk_best < best:  # strict: the first minimum over the whole row wins
            best = chunk_best
            best_alpha = tl.sum(tl.where(at, alpha, 0.0), axis=0)
            best_beta = tl.sum(tl.where(at, beta, 0.0), axis=0)
            best_loc = tl.sum(tl.where(at, x, 0.0), axis=0)
    _store_ald(loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, row, D > 0, D, best_loc, best_alpha, best_beta)

    # -- goodness of fit (docs/spec.md section 7): two more sweeps of the sorted row ------------
    half = D // 2
    median = tl.load(s_row + half).to(tl.float64)
    if D % 2 == 0:
        median = (tl.load(s_row + half - 1).to(tl.float64) + median) / 2.0
    row_first = tl.load(s_row).to(tl.float64)
    row_last = tl.load(s_row + D - 1).to(tl.float64)
    total = tl.zeros((), dtype=tl.float64)
    for start in range(0, D, CHUNK):
        offs = start + lane
        total += tl.sum(tl.load(s_row + offs, mask=offs < D, other=0.0).to(tl.float64), axis=0)
    mean = total / n
    spread = tl.maximum(tl.abs(row_first - mean), tl.abs(row_last - mean))
    spread = tl.where(spread > 0, spread, 1.0)
    scale, kappa = _ald_scale_kappa(best_alpha, best_beta)
    ald_ok = (scale > 0) & (kappa > 0) & (kappa < float("inf"))
    scale = tl.where(ald_ok, scale, 1.0)
    kappa = tl.where(ald_ok, kappa, 1.0)
    abs_dev = tl.zeros((), dtype=tl.float64)
    sum_sq = tl.zeros((), dtype=tl.float64)
    ks = tl.zeros((), dtype=tl.float64)
    for start in range(0, D, CHUNK):
        offs = start + lane
        inside = offs < D
        x = tl.load(s_row + offs, mask=inside, other=0.0).to(tl.float64)
        abs_dev += tl.sum(tl.where(inside, tl.abs(x - median), 0.0), axis=0)
        scaled = (x - mean) / spread
        sum_sq += tl.sum(tl.where(inside, scaled * scaled, 0.0), axis=0)
        cdf = _ald_cdf(x, best_loc, scale, kappa)
        posf = offs.to(tl.float64)
        gap = tl.maximum((posf + 1.0) / n - cdf, cdf - posf / n)
        ks = tl.maximum(ks, tl.max(tl.where(inside, gap, float("-inf")), axis=0))
    _store_gof(ll_laplace_ptr, ll_normal_ptr, ks_ptr, row, D > 0, D, best_alpha, best_beta, abs_dev / n, spread,
               sum_sq, ks, row_first == row_last)  # fmt: skip

    # -- root split: + = [split, D), - = [0, lower_end) -----------------------------------------
    ambiguous = tl.zeros((), dtype=tl.int32)
    if ROOT_MEAN:
        total = tl.zeros((), dtype=tl.float64)
        abs_total = tl.zeros((), dtype=tl.float64)
        for start in range(0, D, CHUNK):
            offs = start + lane
            x = tl.load(s_row + offs, mask=offs < D, other=0.0).to(tl.float64)
            total += tl.sum(x, axis=0)
            abs_total += tl.sum(tl.abs(x), axis=0)
        mu = total / n
        largest_negative = tl.load(s_row + tl.maximum(z0 - 1, 0)).to(tl.float64)
        smallest_positive = tl.load(s_row + tl.minimum(z1, D - 1)).to(tl.float64)
        row_smallest = tl.minimum(tl.where(z0 > 0, -largest_negative, float("inf")),
                                  tl.where(z1 < D, smallest_positive, float("inf")))  # fmt: skip
        slack = _slack(D, abs_total, row_smallest, MANTISSA)
        split = _count_below(s_row, D, mu, True, CHUNK)
        lower_end = split
        for start in range(0, D, CHUNK):
            offs = start + lane
            x = tl.load(s_row + offs, mask=offs < D, other=0.0).to(tl.float64)
            close = (offs < D) & (tl.abs(x - mu) <= slack)
            ambiguous = tl.maximum(ambiguous, tl.max(close.to(tl.int32), axis=0))
    else:
        split = z1
        lower_end = z0
    table = row * n_columns
    tl.store(start_ptr + table, split)
    tl.store(stop_ptr + table, D)
    tl.store(stop_ptr + table + 1, lower_end)
    tl.debug_barrier()

    # -- the split tree, node by node ---------------------------------------------------------
    for level in range(1, levels + 1):
        if FULL:
            width = 1 << level
            first_column = width - 2
        else:
            width = 2
            first_column = 2 * (level - 1)
        for w in range(0, width):
            column = first_column + w
            # volatile: written by this program (possibly another thread) before the barrier
            s = tl.load(start_ptr + table + column, volatile=True)
            e = tl.load(stop_ptr + table + column, volatile=True)
            if e > s:
                count = e - s
                node_total = tl.zeros((), dtype=tl.float64)
                node_abs = tl.zeros((), dtype=tl.float64)
                for start in range(s, e, CHUNK):
                    offs = start + lane
                    x = tl.load(s_row + offs, mask=offs < e, other=0.0).to(tl.float64)
                    node_total += tl.sum(x, axis=0)
                    node_abs += tl.sum(tl.abs(x), axis=0)
                mean = node_total / count.to(tl.float64)
                lo = tl.load(s_row + s).to(tl.float64)
                hi = tl.load(s_row + e - 1).to(tl.float64)
                neg_end, pos_start, L = _nonzero_parts(s, e, z0, z1)
                nearest_negative = tl.abs(tl.load(s_row + tl.maximum(neg_end - 1, 0)).to(tl.float64))
                smallest = tl.minimum(
                    tl.where(neg_end > s, nearest_negative, float("inf")),
                    tl.where(pos_start < e, tl.load(s_row + tl.minimum(pos_start, D - 1)).to(tl.float64), float("inf")),
                )
                y_min = tl.log(tl.where(L > 0, smallest, 1.0))
                split_node = (count >= min_size) & (lo != hi) & (level < levels)
                slack = _slack(count, node_abs, smallest, MANTISSA)
                sum_d = tl.zeros((), dtype=tl.float64)
                sum_rd = tl.zeros((), dtype=tl.float64)
                sum_dd = tl.zeros((), dtype=tl.float64)
                n_lower = tl.zeros((), dtype=tl.int32)
                for start in range(s, e, CHUNK):
                    offs = start + lane
                    inside = offs < e
                    x = tl.load(s_row + offs, mask=inside, other=0.0).to(tl.float64)
                    if ROOT_MEAN:
                        mirror = tl.load(mirror_ptr + row * D + offs, mask=inside, other=0).to(tl.int32)
                    else:
                        mirror = z0
                    fit_member = inside & (x != 0)
                    d = tl.where(fit_member, tl.log(tl.where(fit_member, tl.abs(x), 1.0)) - y_min, 0.0)
                    rank = tl.where(fit_member, _magnitude_rank(offs, x, s, e, z0, z1, mirror), 0.0)
                    sum_d += tl.sum(d, axis=0)
                    sum_rd += tl.sum(rank * d, axis=0)
                    sum_dd += tl.sum(d * d, axis=0)
                    n_lower += tl.sum((inside & (x < mean)).to(tl.int32), axis=0)
                    close = inside & (tl.abs(x - mean) <= slack) & split_node
                    ambiguous = tl.maximum(ambiguous, tl.max(close.to(tl.int32), axis=0))
                slope, intercept, r2 = _line_fit(L, y_min, sum_d, sum_rd, sum_dd, linspace)
                _store_node(
                    count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
                    table + column, count > 0, count, mean, lo, hi, slope, intercept, r2,
                )
                if split_node:
                    cut = s + n_lower
                    if FULL:  # children 2w (upper) and 2w + 1 (lower) of the next level
                        child = 2 * width - 2 + 2 * w
                        tl.store(start_ptr + table + child, cut)
                        tl.store(stop_ptr + table + child, e)
                        tl.store(start_ptr + table + child + 1, s)
                        tl.store(stop_ptr + table + child + 1, cut)
                    else:  # + keeps its upper child, - its lower child
                        child = first_column + 2 + w
                        tl.store(start_ptr + table + child, tl.where(w == 0, cut, s))
                        tl.store(stop_ptr + table + child, tl.where(w == 0, e, cut))
        tl.debug_barrier()
    tl.store(ambiguous_ptr + row, ambiguous.to(tl.int1))
