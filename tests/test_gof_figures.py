"""The goodness-of-fit figures (fcinterp_fast.figures.gof): what they draw, on normal and degenerate fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import fcinterp_fast
from fcinterp_fast.figures import gof as figures

stats = pytest.importorskip("scipy.stats")


@pytest.fixture(scope="module")
def fit():
    W = torch.randn(12, 400, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    W[3] = 1.5  # one degenerate row
    return fcinterp_fast.fit(W, null=("normal", "ald"), min_size=10)


def test_ald_quantiles_are_scipys():
    p = np.linspace(0.01, 0.99, 41)
    for kappa in (0.3, 1.0, 2.2):
        want = stats.laplace_asymmetric.ppf(p, kappa, loc=0.5, scale=2.0)
        np.testing.assert_allclose(figures.ald_quantiles(p, 0.5, 2.0, kappa), want, rtol=1e-12)


def test_qq_plots_the_sorted_row_against_its_ald(fit):
    figure = figures.plot_qq(fit, 0)
    (ax,) = figure.axes
    points = ax.collections[0].get_offsets()
    row = np.sort(fit.source.rows(0, 1)[0].numpy())
    np.testing.assert_array_equal(points[:, 1], row)
    p = (np.arange(400) + 0.5) / 400
    loc, scale, kappa = (float(t[0]) for t in (fit.ald.loc, fit.ald.scale, fit.ald.kappa))
    np.testing.assert_allclose(points[:, 0], stats.laplace_asymmetric.ppf(p, kappa, loc=loc, scale=scale), rtol=1e-9)
    assert "degenerate" in figures.plot_qq(fit, 3).axes[0].texts[0].get_text()


def test_null_comparison_has_a_box_per_head_and_node(fit):
    figure = figures.plot_null_comparison(fit, levels=2)
    top = figure.axes[0]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["trained", "null normal", "null ald"]
    nodes = [n for n in ("+", "++", "-", "--") if n in fit.nodes]
    assert len(top.patches) == len(nodes) * 3  # one box per node and head


def test_gof_summary_reports_the_share_where_the_ald_wins(fit):
    figure = figures.plot_gof_summary(fit)
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    daic = fit.gof.daic_normal.numpy()
    daic = daic[np.isfinite(daic)]
    assert legend[0] == f"trained (ALD wins {100 * (daic > 0).mean():.0f}%)"
    figure.savefig(__import__("io").BytesIO(), format="png", dpi=40)  # draws


def test_class_names_with_dollars_are_drawn_as_text():
    """A class name is any text: "$" must not start matplotlib's mathtext (savefig raised)."""
    import io

    from fcinterp_fast.figures import fits as fit_figures

    W = torch.randn(4, 200, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    fit = fcinterp_fast.fit(W, class_names=[r"x $\foo$ y", "price in $", "b", "c"])
    for figure in (figures.plot_qq(fit, 0), fit_figures.plot_split(fit, 0), fit_figures.plot_fits(fit, [0, 1])):
        figure.savefig(io.BytesIO(), format="png")
    assert r"x \$\foo\$ y (0)" in figures.plot_qq(fit, 0).axes[0].get_title()  # drawn as typed
