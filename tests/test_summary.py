"""``HeadFit.summary()``: the trained fit against its null heads (fcinterp_fast.summary)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcinterp_fast
from fcinterp_fast.summary import SUMMARY_COLUMNS, depth_reached

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(3)
    W = torch.tensor(rng.laplace(0.0, 1.0, (60, 500)) * rng.uniform(0.5, 2, (60, 1)))
    return fcinterp_fast.fit(W, null=("normal", "ald"), null_seed=1)


def _one(s, quantity, node, head):
    rows = s[(s.quantity == quantity) & (s.node == node) & (s["head"] == head)]
    assert len(rows) == 1, (quantity, node, head)
    return rows.iloc[0]


def test_columns_and_heads(fit):
    s = fit.summary()
    assert list(s.columns) == list(SUMMARY_COLUMNS)
    assert set(s["head"]) == {"trained", "null normal", "null ald"}
    assert {"r2", "slope", "depth", "kappa", "ks", "daic_normal", "daic_laplace", "lr_asym"} <= set(s.quantity)


def test_values_are_the_fits(fit):
    s = fit.summary()
    for head, h in (("trained", fit), ("null normal", fit.null["normal"])):
        j = h.nodes.index("++")
        present = h.count[:, j] > 0
        r2 = h.r2[:, j][present].numpy()
        row = _one(s, "r2", "++", head)
        assert row["median"] == pytest.approx(np.nanmedian(r2), rel=1e-12)
        assert row["q25"] == pytest.approx(np.nanquantile(r2, 0.25), rel=1e-12)
        assert row.classes == np.isfinite(r2).sum()
        daic = h.gof.daic_normal.numpy()
        assert _one(s, "daic_normal", "", head).share == pytest.approx((daic > 0).mean())
        assert _one(s, "kappa", "", head)["median"] == pytest.approx(np.median(h.ald.kappa.numpy()), rel=1e-12)
    deepest = fit.column("+*")  # chains: the depth is the deepest node's level
    want = torch.tensor([len(fit.nodes[int(c)]) for c in deepest])
    assert torch.equal(depth_reached(fit, "+"), want)


def test_full_tree_depth_and_no_nulls():
    W = torch.randn(8, 300, dtype=torch.float64)
    fit = fcinterp_fast.fit(W, tree="full", depth=3, min_size=50)
    s = fit.summary()
    assert set(s["head"]) == {"trained"}
    levels = depth_reached(fit, "-")
    present = [[len(n) for j, n in enumerate(fit.nodes) if n[0] == "-" and fit.count[k, j] > 0] for k in range(8)]
    assert levels.tolist() == [max(p) for p in present]
