"""Every backend against the independent numpy oracle (docs/spec.md section 2-4), plus hand-computed rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import oracle
from checks import assert_equal, assert_matches_oracle
from strategies import FLOAT_DTYPES, LAYOUTS, as_layout, fit_options, heads


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@given(data=st.data())
def test_matches_oracle(backend, dtype, data):
    W = data.draw(heads(dtypes=(dtype,)), label="W")
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    options = data.draw(fit_options(), label="options")
    row_blocks = data.draw(st.booleans(), label="a block per row")
    view = as_layout(backend.put(W), layout)
    max_memory = backend.one_row(view) if row_blocks else None
    fit = backend.fit(view, max_memory=max_memory, **options)
    K, N = W.shape[0], len(fit.nodes)
    for name, dtype in (("count", torch.int64), ("mean", torch.float64), ("r2", torch.float64)):
        t = getattr(fit, name)
        assert (t.shape, t.dtype, t.device) == ((K, N), dtype, view.device), name
    assert (fit.ald.loglik.shape, fit.ald.loglik.dtype, fit.ald.loglik.device) == ((K,), torch.float64, view.device)
    assert_matches_oracle(fit, W, options, backend.float64)


def test_deepest_chain_node(backend):
    """``"+*"`` / ``"-*"`` select, per class, the deepest node of that chain (docs/spec.md section 6)."""
    W = torch.tensor([[5.0, 4.0, 1.0, -1.0, -2.0, -9.0], [3.0, -1.0, -1.0, -1.0, -1.0, -8.0]])
    fit = backend.fit(W, min_size=2)
    expected = oracle.fit_head(W.numpy(), min_size=2)
    for sign in "+-":
        want = np.zeros(W.shape, dtype=bool)
        for k, members in enumerate(expected.members):
            chain = [name for name in members if name == sign * len(name)]
            want[k, members[max(chain, key=len)]] = True
        assert_equal(f"mask({sign}*)", fit.mask(sign + "*"), want)


# ------------------------------------------------------------------ hand-computed rows
def test_row_1_2_3_4_by_hand(backend):
    """[1, 2, 3, 4], chain, min_size 1: + = all (mean 2.5) -> ++ = {3, 4} (mean 3.5) -> +++ = {4}."""
    fit = backend.fit(torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64), min_size=1)
    assert fit.nodes == ["+", "-", "++", "--", "+++", "---"]
    assert fit.count[0].tolist() == [4, 0, 2, 0, 1, 0]
    assert fit.mean[0, [0, 2, 4]].tolist() == [2.5, 3.5, 4.0]
    assert fit.lo[0, [0, 2, 4]].tolist() == [1.0, 3.0, 4.0]
    assert fit.hi[0, [0, 2, 4]].tolist() == [4.0, 4.0, 4.0]
    # "+": y = ln 1..4 at x = 0, 1/4, 2/4, 3/4; x - mean(x) = -3/8, -1/8, 1/8, 3/8, S_xx = 5/16.
    slope = (3 / 8 * math.log(4) + 1 / 8 * math.log(3 / 2)) / (5 / 16)
    intercept = math.log(24) / 4 - 3 / 8 * slope
    assert fit.slope[0, 0].item() == pytest.approx(slope, rel=1e-14)
    assert fit.intercept[0, 0].item() == pytest.approx(intercept, rel=1e-14)
    # "++": two points are fitted exactly; x = 0, 1/2.
    assert fit.slope[0, 2].item() == pytest.approx(2 * math.log(4 / 3), rel=1e-14)
    assert fit.intercept[0, 2].item() == pytest.approx(math.log(3), rel=1e-14)
    assert fit.r2[0, 2].item() == pytest.approx(1.0, abs=1e-14)
    # "+++": one magnitude: slope 0, intercept ln 4, r2 NaN.
    assert fit.slope[0, 4].item() == 0.0 and fit.intercept[0, 4].item() == pytest.approx(math.log(4), rel=1e-15)
    assert math.isnan(fit.r2[0, 4].item())
    # Absent nodes: count 0, every statistic NaN.
    assert torch.isnan(fit.mean[0, [1, 3, 5]]).all() and torch.isnan(fit.slope[0, [1, 3, 5]]).all()


def test_ald_tie_first_minimum_wins(backend):
    """[1, 2, 3, 4]: m = 2 gives alpha = 3/4, beta = 1/4; m = 3 the mirror image, the same
    objective bit for bit. The first minimum (m = 2) wins."""
    fit = backend.fit(torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]]))
    objective = math.sqrt(0.75) + 0.5
    for k in range(2):
        assert fit.ald.loc[k].item() == 2.0
        assert fit.ald.kappa[k].item() == pytest.approx((1 / 3) ** 0.25, rel=1e-14)
        assert fit.ald.scale[k].item() == pytest.approx((3 / 16) ** 0.25 * objective, rel=1e-14)
        assert fit.ald.loglik[k].item() == pytest.approx(-4 * (1 + 2 * math.log(objective)), rel=1e-14)


def test_ald_symmetric_unique(backend):
    """[-3, -1, 0, 1, 3]: m = 0 gives alpha = beta = 4/5, beating m = +-1 (7/5 and 2/5)."""
    fit = backend.fit(torch.tensor([[-3.0, -1.0, 0.0, 1.0, 3.0]]))
    assert fit.ald.loc.item() == 0.0
    assert fit.ald.kappa.item() == 1.0
    assert fit.ald.scale.item() == pytest.approx(0.8**0.5 * 2 * 0.8**0.5, rel=1e-14)
    assert fit.ald.loglik.item() == pytest.approx(-5 * (1 + 2 * math.log(2 * math.sqrt(0.8))), rel=1e-14)


@pytest.mark.parametrize(
    "row, count, slope, intercept, r2, ald",
    [
        # one element: slope 0, intercept ln|x|, r2 NaN; ALD needs n >= 3
        ([5.0], [1, 0], [0.0, math.nan], [math.log(5), math.nan], [math.nan] * 2, [math.nan] * 4),
        # two equal magnitudes of opposite sign: one node each
        ([-2.0, 2.0], [1, 1], [0.0, 0.0], [math.log(2)] * 2, [math.nan] * 2, [math.nan] * 4),
        # equal magnitudes: slope 0, intercept y_0, r2 = 1 exactly (SS_tot == SS_res == 0)
        ([3.0, 3.0], [2, 0], [0.0, math.nan], [math.log(3), math.nan], [1.0, math.nan], [math.nan] * 4),
        # zeros belong to no node (root "zero"); three values: m = 0, alpha = beta = 1/3
        (
            [-1.0, 0.0, 1.0],
            [1, 1],
            [0.0, 0.0],
            [0.0, 0.0],
            [math.nan] * 2,
            [0.0, 2 / 3, 1.0, -3 * (1 + 2 * math.log(2 / math.sqrt(3)))],
        ),
        # all zero: no node; ALD alpha = beta = 0: kappa NaN, scale 0, loglik +inf
        ([0.0, 0.0, 0.0], [0, 0], [math.nan] * 2, [math.nan] * 2, [math.nan] * 2, [0.0, 0.0, math.nan, math.inf]),
        # all equal: alpha = beta = 0 too
        (
            [7.0, 7.0, 7.0, 7.0],
            [4, 0],
            [0.0, math.nan],
            [math.log(7), math.nan],
            [1.0, math.nan],
            [7.0, 0.0, math.nan, math.inf],
        ),
        # only the top value above m: alpha = 0 at the optimum gives kappa = inf
        (
            [0.0, 1.0, 1.0],
            [2, 0],
            [0.0, math.nan],
            [0.0, math.nan],
            [1.0, math.nan],
            [1.0, 0.0, math.inf, -3 * (1 + 2 * math.log(math.sqrt(1 / 3)))],
        ),
    ],
)
def test_tiny_rows_by_hand(backend, row, count, slope, intercept, r2, ald):
    fit = backend.fit(torch.tensor([row], dtype=torch.float64), min_size=20)
    assert fit.nodes == ["+", "-"]
    assert fit.count[0].tolist() == count
    for name, want in (("slope", slope), ("intercept", intercept), ("r2", r2)):
        np.testing.assert_allclose(getattr(fit, name)[0].cpu().numpy(), want, rtol=1e-15, err_msg=name)
    got = [getattr(fit.ald, f)[0].item() for f in ("loc", "scale", "kappa", "loglik")]
    np.testing.assert_allclose(got, ald, rtol=1e-14, err_msg="ald loc, scale, kappa, loglik")


# ----------------------------------------------------------------- depth and precision
def test_chain_reaches_the_64_level_cap(backend):
    """root="mean" with values -1000**i: every mean is dominated by the most negative member, so
    each level of the "+" chain drops exactly that one value, down to the 64-level cap."""
    row = -(1000.0 ** np.arange(1, 71))
    fit = backend.fit(torch.tensor(row[None]), root="mean", min_size=2)
    assert len(fit.nodes) == 128 and fit.nodes[-2] == "+" * 64
    assert fit.count[0, 0::2].tolist() == list(range(69, 5, -1))
    assert fit.count[0, 1].item() == 1 and (fit.count[0, 3::2] == 0).all()
    assert_matches_oracle(fit, torch.tensor(row[None]), dict(root="mean", min_size=2), backend.float64)


def test_mean_rounding_decides_the_split(backend):
    """{1, 1 + 2**-52}: the float64 mean rounds (ties to even) to exactly 1, so the lower child is
    empty and the upper child is the node itself, level after level, down to the cap. A mean
    summed in another way, or not rounded to float64, would split the pair at level 2."""
    W = torch.tensor([[1.0, 1.0 + 2.0**-52]], dtype=torch.float64)
    fit = backend.fit(W, min_size=2)
    assert len(fit.nodes) == 128
    assert fit.count[0, 0::2].tolist() == [2] * 64
    assert_matches_oracle(fit, W, dict(min_size=2), backend.float64)


def test_values_near_the_float64_limit(backend):
    """Huge float64 weights just inside the head checker's overflow guard (|x| <= max / (4 D))."""
    D = 16
    limit = torch.finfo(torch.float64).max / (4 * D)
    row = np.linspace(-0.9, 0.95, D) * limit
    W = torch.tensor(np.stack([row, row[::-1] / 3]))
    options = dict(tree="full", depth=3, root="mean", min_size=2)
    assert_matches_oracle(backend.fit(W, **options), W, options, backend.float64)


def test_derived_estimates_match_formulas(backend):
    """k_est, lam_est, mean_est follow the author's ``fit_exp`` from each node's line fit."""
    W = torch.randn(6, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fit = backend.fit(W, tree="full", depth=3)
    want = oracle.derived(fit.slope.cpu().numpy(), fit.intercept.cpu().numpy())
    for name, values in want.items():
        np.testing.assert_allclose(getattr(fit, name).cpu().numpy(), values, rtol=1e-12, err_msg=name)


def test_chain_without_depth_keeps_whole_levels(backend):
    """A level reached only on the "+" side still lists its "-" node (absent: count 0, NaN), and
    "-*" stays at the deepest node the "-" chain reaches."""
    fit = backend.fit(torch.tensor([[1.0, 2.0]]), min_size=0)
    assert fit.nodes == ["+", "-", "++", "--"]
    assert fit.count[0].tolist() == [2, 0, 1, 0]
    assert not fit.mask("--").any()
    row = torch.linspace(-1, 2, 50)[None]  # the + chain reaches level 6, the - chain level 5
    fit = backend.fit(row, min_size=2)
    assert fit.nodes[-2:] == ["++++++", "------"]
    assert fit.count[0, -2:].tolist() == [1, 0]
    assert not fit.mask("------").any()
    assert fit.column("-*", 0) == fit.nodes.index("-----")


def test_float64_subnormal_row(backend):
    """Multiples of the smallest float64 (2**-1074): sums are exact, the division by the count
    rounds to a whole multiple, e.g. mean{1, 2, 4} = 7/3 -> 2, which puts 2 in the upper child."""
    W = torch.tensor([[1.0, 2.0, 4.0, -3.0, 0.0, -1.0]], dtype=torch.float64) * 2.0**-1074
    fit = backend.fit(W, min_size=2)
    assert fit.mean[0, 0].item() == 2 * 2.0**-1074
    assert fit.count[0, fit.nodes.index("++")].item() == 2  # {2, 4}: exact arithmetic would keep {4}
    assert_matches_oracle(fit, W, dict(min_size=2), backend.float64)


def test_table_lists_every_present_node(backend):
    W = torch.randn(5, 60, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fit = backend.fit(W, tree="full", depth=3, min_size=10)
    expected = oracle.fit_head(W.numpy(), tree="full", depth=3, min_size=10)
    table = fit.to_pandas()
    assert sorted(zip(table["class"], table["node"], strict=True)) == sorted(
        (k, node) for k, members in enumerate(expected.members) for node in members
    )
    for row in table.itertuples():
        j = expected.nodes.index(row.node)
        assert row.count == expected.count[row[1], j] and row.lo == expected.lo[row[1], j]
        assert row.ald_loglik == fit.ald.loglik[row[1]].item()
