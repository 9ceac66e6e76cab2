"""An independent float64 numpy oracle of docs/spec.md sections 2-4, written from docs/spec.md alone.

It imports nothing of ``fcinterp_fast``: the backends are checked against this file, so it must
not share their code or their mistakes. It is slow on purpose (plain loops over rows and nodes,
``math.fsum`` sums, an O(n^2) ALD), and it returns, next to every statistic, a bound on how far a
correct float64 implementation may lie from it (see ``line_fit`` and ``ald_fit``), so that tests
can be tight where the problem is well conditioned and honest where it is not.

Two readings of docs/spec.md are fixed here (they are the spec's meaning, not a choice of this file):

* "mean (float64, the split threshold)" is the exact mean of the node's values rounded to float64
  the way a careful float64 computation gets it: the correctly rounded sum (``math.fsum``) divided
  once by the count. Any other summation order gives a threshold that depends on the order, and
  docs/spec.md section 2 demands that "all backends agree on every membership exactly", which only an
  order-independent threshold allows.
* The Algorithm 1 line fit is the least-squares fit of y_i = ln v_(i) against x_i. Least squares
  is invariant to shifting y by a constant (the slope and the residuals do not change, the
  intercept moves by the constant), so it is computed on d_i = y_i - y_0 and y_0 is added back to
  the intercept. For a node whose magnitudes are all equal this makes d == 0 exactly, hence
  slope 0, intercept y_0 and SS_tot == SS_res == 0, i.e. r2 = 1 by the spec's own special case,
  instead of a rounding-noise ratio that a direct fit on y would give.

Column layout (docs/spec.md section 6, ``HeadFit.nodes``): level by level, ``+`` side first. A chain has two
columns per level l: ``"+" * l`` then ``"-" * l``. A full tree has 2**l columns per level, the
node at position i (0-based) named by the bits of i (most significant first, 0 -> "+", 1 -> "-").
A chain without ``depth`` keeps whole levels up to the deepest level any row reaches (at least
level 1); with ``depth`` every level up to ``depth`` is kept, present or not.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["OracleFit", "fit_head", "node_names", "split_tree", "line_fit", "ald_fit", "derived", "CHAIN_CAP"]

#: docs/spec.md section 2 lets chains stop at 64 levels when ``depth`` is None.
CHAIN_CAP = 64
#: Unit roundoff of float64.
U = 2.0**-53
#: Smallest positive float64 (absolute rounding floor of subnormal results).
TINY = 2.0**-1074
#: Accuracy assumed of any implementation's natural log, in units in the last place of the result.
LOG_ULPS = 2


# --------------------------------------------------------------------------------- layout
def node_names(tree: str, levels: int) -> list[str]:
    """Column names of ``levels`` levels of a ``tree`` ("chain" or "full"), in column order."""
    names = []
    for level in range(1, levels + 1):
        if tree == "chain":
            names += ["+" * level, "-" * level]
        else:
            names += ["".join("+-"[int(bit)] for bit in np.binary_repr(i, level)) for i in range(2**level)]
    return names


# ----------------------------------------------------------------------------- the tree
def exact_mean(values: np.ndarray) -> float:
    """Correctly rounded float64 sum over the count (the spec's split threshold)."""
    return math.fsum(values.tolist()) / len(values)


def split_tree(row: np.ndarray, tree: str, root: str, min_size: int, depth: int | None) -> dict[str, np.ndarray]:
    """Every produced node of one row: ``{name: ascending indices into row}`` (docs/spec.md section 2).

    A produced node may be empty (the lower child when rounding puts the mean on the minimum);
    its children are not produced. Level by level: a node is split when it has at least
    ``min_size`` members, is above the last level (``depth`` or ``CHAIN_CAP``) and its values are
    not all equal; a chain keeps only the child on the side of its root sign.
    """
    last_level = depth if depth is not None else CHAIN_CAP
    everything = np.arange(len(row))
    if root == "zero":
        level = {"+": everything[row > 0], "-": everything[row < 0]}
    else:
        mu = exact_mean(row)
        level = {"+": everything[row >= mu], "-": everything[row < mu]}
    produced = dict(level)
    for _ in range(1, last_level):
        children = {}
        for name, members in level.items():
            values = row[members]
            if len(members) == 0 or len(members) < min_size or values.min() == values.max():
                continue
            mu = exact_mean(values)
            halves = {"+": members[values >= mu], "-": members[values < mu]}
            signs = "+-" if tree == "full" else name[0]  # a chain follows its root's sign
            children.update({name + s: halves[s] for s in signs})
        if not children:
            break
        produced.update(children)
        level = children
    return produced


# ------------------------------------------------------------------------- line fit
@dataclasses.dataclass
class LineFit:
    """Algorithm 1 on one node and bounds on the error of any correct float64 implementation."""

    slope: float
    intercept: float
    r2: float
    slope_err: float
    intercept_err: float
    r2_err: float


def line_fit(values: np.ndarray, grid: str) -> LineFit:
    """Least squares of ln|theta| (non-zero members, sorted ascending) against x_i (docs/spec.md section 3).

    Error model (first order, the constants generous). Two correct implementations differ
      (a) in each y_i = ln v_i by up to ``LOG_ULPS`` ulps each, and in forming d_i = y_i - y_0:
          eps = 2 * LOG_ULPS * 2u * max|y| + 2u * max d per element, a perturbation of norm
          sqrt(L) * eps of the vector d;
      (b) in the sums of the normal equations, summed in any order and possibly uncentred:
          |delta S_ab| <= 2 L u |a| |b| with a, b the uncentred vectors x, d (Higham's bound).
    Slope = S_xd / S_xx moves by at most (delta S_xd + |slope| delta S_xx) / S_xx. With
    r2 = S_xd^2 / (S_xx S_dd) and Cauchy-Schwarz |S_xd| <= |x~| |d~| it moves by at most
    2 delta S_xd / (|x~| |d~|) + delta S_xx / S_xx + delta S_dd / S_dd. When the magnitudes are
    distinct but only a few ulps apart, |d~| is of the order of eps and r2 (and the slope) are
    genuinely undetermined in float64: the bound says so instead of hiding it behind a loose
    tolerance. When all magnitudes are equal, d == 0 exactly in any implementation: slope and r2
    are exact and only the intercept (= y_0) carries the log's error.
    """
    v = np.sort(np.abs(values[values != 0]))
    L = len(v)
    if L == 0:
        return LineFit(math.nan, math.nan, math.nan, 0.0, 0.0, 0.0)
    y = np.log(v)
    log_err = 2 * LOG_ULPS * 2 * U * abs(y).max()
    if L == 1:
        return LineFit(0.0, float(y[0]), math.nan, 0.0, log_err, 0.0)
    x = np.arange(L, dtype=np.float64) / (L if grid == "paper" else L - 1)
    d = y - y[0]
    x_mean, d_mean = math.fsum(x) / L, math.fsum(d) / L
    xc, dc = x - x_mean, d - d_mean
    s_xx, s_xd, s_dd = math.fsum(xc * xc), math.fsum(xc * dc), math.fsum(dc * dc)
    slope = s_xd / s_xx
    intercept = float(y[0]) + d_mean - slope * x_mean
    ss_res = math.fsum((dc - slope * xc) ** 2)
    if s_dd == 0:
        r2 = 1.0 if ss_res == 0 else 0.0
    else:
        r2 = 1 - ss_res / s_dd
    if v[0] == v[-1]:  # d == 0 in every implementation
        return LineFit(slope, intercept, r2, 0.0, log_err, 0.0)

    eps = log_err + 2 * U * d.max()
    norm_x, norm_d = math.sqrt(math.fsum(x * x)), math.sqrt(math.fsum(d * d))
    norm_xc, norm_dc = math.sqrt(s_xx), math.sqrt(s_dd)
    sum_err = 2 * L * U
    d_sxx = sum_err * norm_x**2
    d_sxd = math.sqrt(L) * eps * norm_xc + sum_err * norm_x * norm_d
    d_sdd = 2 * math.sqrt(L) * eps * norm_dc + L * eps**2 + sum_err * norm_d**2
    slope_err = (d_sxd + abs(slope) * d_sxx) / s_xx
    intercept_err = (
        log_err
        + eps
        + sum_err * d.max()
        + abs(x_mean) * slope_err
        + 4 * U * (abs(y[0]) + abs(d_mean) + abs(slope * x_mean))
    )
    if s_dd == 0:
        r2_err = math.inf
    else:
        r2_err = 2 * d_sxd / (norm_xc * norm_dc) + d_sxx / s_xx + d_sdd / s_dd
    return LineFit(slope, intercept, r2, slope_err, intercept_err, r2_err)


# ------------------------------------------------------------------------------- ALD
@dataclasses.dataclass
class AldFit:
    """ALD maximum likelihood of one row (scipy's parametrisation) and how sure it is."""

    loc: float
    scale: float
    kappa: float
    loglik: float
    loglik_err: float  # |loglik| difference any correct float64 implementation may show
    rel_err: float  # relative error of alpha, beta (hence kappa, scale) in one implementation
    margin: float  # relative gap from the best objective to the best at another value of m


def ald_fit(row: np.ndarray) -> AldFit:
    """docs/spec.md section 4 computed directly: alpha = mean((x - m)+), beta = mean((m - x)+) for every interior
    order statistic m = x_(2) .. x_(n-1); the first minimum of sqrt(alpha) + sqrt(beta) wins.

    Error model: alpha and beta are means of non-negative terms, each rounded a couple of times,
    so any summation order gets them to a relative (n + 3) u; the objective to (n + 4) u. Two
    implementations' minima then differ by 2 (n + 4) u relative, and
    loglik = -n (1 + 2 ln objective) by 4 n (n + 4) u plus its own rounding. When the best
    objective beats every other value of m by more than twice that, every implementation picks
    the same m, and loc is exact.
    """
    x = np.sort(row)
    n = len(x)
    if n < 3:
        return AldFit(math.nan, math.nan, math.nan, math.nan, 0.0, 0.0, math.inf)
    m = x[1 : n - 1]
    diff = x[None, :] - m[:, None]  # (n - 2, n): x_j - m_p
    alpha = np.maximum(diff, 0).mean(axis=1)
    beta = np.maximum(-diff, 0).mean(axis=1)
    objective = np.sqrt(alpha) + np.sqrt(beta)
    best = int(np.argmin(objective))  # first minimum
    a, b, o = alpha[best], beta[best], objective[best]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kappa = np.sqrt(np.sqrt(b) / np.sqrt(a))  # (b / a)^(1/4) in the scaled form docs/spec.md section 4 asks for
        loglik = -n * (1 + 2 * np.log(o))
        scale = np.sqrt(np.sqrt(a)) * np.sqrt(np.sqrt(b)) * o  # (a b)^(1/4) o, a * b never formed
    rel_err = (n + 4) * U
    others = objective[m != m[best]]
    if o == 0:
        margin = math.inf if others.size == 0 or others.min() > 0 else 0.0
    else:
        margin = (others.min() - o) / o if others.size else math.inf
    loglik_err = 4 * n * rel_err + 4 * U * abs(loglik) if np.isfinite(loglik) else 0.0
    return AldFit(float(m[best]), float(scale), float(kappa), float(loglik), loglik_err, rel_err, margin)


# ----------------------------------------------------------------------------- derived
def derived(slope: np.ndarray, intercept: np.ndarray) -> dict[str, np.ndarray]:
    """The author's ``fit_exp`` (docs/spec.md section 3): k_est = sqrt(e^b / (a - e^b)), lam_est = a k_est,
    mean_est = (1 - k_est^2) / (lam_est k_est); NaN where the square root or a quotient is not a
    finite real number."""
    with np.errstate(all="ignore"):
        eb = np.exp(intercept)
        ratio = eb / (slope - eb)
        k_est = np.where(np.isfinite(ratio) & (ratio > 0), np.sqrt(np.abs(ratio)), np.nan)
        lam_est = slope * k_est
        mean_est = (1 - k_est**2) / (lam_est * k_est)
        mean_est = np.where(lam_est * k_est != 0, mean_est, np.nan)
    return {"k_est": k_est, "lam_est": lam_est, "mean_est": mean_est}


# -------------------------------------------------------------------------------- head
@dataclasses.dataclass
class OracleFit:
    """Everything docs/spec.md section 2-4 defines for a (K, D) head, in the HeadFit column layout.

    Attributes:
        nodes: column names (N of them).
        count: (K, N) int64; absent nodes 0.
        mean, lo, hi, slope, intercept, r2: (K, N) float64; absent nodes NaN.
        mean_err, slope_err, intercept_err, r2_err: (K, N) float64 error bounds (see
            ``line_fit``; ``mean_err`` bounds a float64 sum in any order against the exact mean).
        members: K dicts ``{node: ascending indices}`` of the produced non-empty nodes.
        loc, scale, kappa, loglik, loglik_err, ald_rel_err, ald_margin: (K,) float64 (``ald_fit``).
    """

    nodes: list[str]
    count: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    r2: np.ndarray
    mean_err: np.ndarray
    slope_err: np.ndarray
    intercept_err: np.ndarray
    r2_err: np.ndarray
    members: list[dict[str, np.ndarray]]
    loc: np.ndarray
    scale: np.ndarray
    kappa: np.ndarray
    loglik: np.ndarray
    loglik_err: np.ndarray
    ald_rel_err: np.ndarray
    ald_margin: np.ndarray


_NODE_FIELDS = ("mean", "lo", "hi", "slope", "intercept", "r2", "mean_err", "slope_err", "intercept_err", "r2_err")
_ALD_FIELDS = ("loc", "scale", "kappa", "loglik", "loglik_err", "rel_err", "margin")


def fit_head(
    W: np.ndarray,
    *,
    tree: str = "chain",
    root: str = "zero",
    min_size: int = 20,
    depth: int | None = None,
    grid: str = "paper",
) -> OracleFit:
    """Fit every row of ``W`` ((K, D) float64, finite) as docs/spec.md sections 2-4 define."""
    W = np.asarray(W, dtype=np.float64)
    trees = [split_tree(row, tree, root, min_size, depth) for row in W]
    if depth is not None:
        levels = depth
    else:
        levels = max([len(name) for t in trees for name, idx in t.items() if len(idx)] + [1])
    nodes = node_names(tree, levels)
    column = {name: j for j, name in enumerate(nodes)}
    K, N = W.shape[0], len(nodes)
    count = np.zeros((K, N), dtype=np.int64)
    stats = {f: np.full((K, N), math.nan) for f in _NODE_FIELDS}
    ald = {f: np.full(K, math.nan) for f in _ALD_FIELDS}
    members = []
    for k, (row, produced) in enumerate(zip(W, trees, strict=True)):
        members.append({name: idx for name, idx in produced.items() if len(idx)})
        for name, idx in members[k].items():
            j, values = column[name], row[idx]
            count[k, j] = len(idx)
            fit = line_fit(values, grid)
            node_stats = dict(
                mean=exact_mean(values),
                lo=values.min(),
                hi=values.max(),
                mean_err=2 * (len(idx) + 2) * U * math.fsum(np.abs(values)) / len(idx) + TINY,
                **dataclasses.asdict(fit),
            )
            for f, value in node_stats.items():
                stats[f][k, j] = value
        for f, value in dataclasses.asdict(ald_fit(row)).items():
            ald[f][k] = value
    return OracleFit(
        nodes=nodes,
        count=count,
        members=members,
        **stats,
        loc=ald["loc"],
        scale=ald["scale"],
        kappa=ald["kappa"],
        loglik=ald["loglik"],
        loglik_err=ald["loglik_err"],
        ald_rel_err=ald["rel_err"],
        ald_margin=ald["margin"],
    )
