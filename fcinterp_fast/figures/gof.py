"""Figures of goodness of fit and null heads (docs/spec.md section 7), built without pyplot.

* ``plot_qq(fit, cls)``: a class row's sorted values against the quantiles of its fitted ALD, with
  the KS distance and the AIC differences in the title.
* ``plot_null_comparison(fit)``: R^2 and slope of the first chain levels, the trained head beside
  each null head (``fit(null=...)``): is the trained head's fit better than noise's?
* ``plot_gof_summary(fit)``: over all classes, the AIC differences of the ALD against the normal
  and the Laplace (the share where the ALD wins), kappa and the KS distance, for every head.

Example:
    >>> fit = fcinterp_fast.fit(fcinterp_fast.models.load(), null=("normal", "ald"))  # doctest: +SKIP
    >>> plot_qq(fit, "tricycle").savefig("qq.png")                                   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ..gof import ald_ppf, ald_valid
from ..result import HeadFit
from ..summary import heads_of
from .fits import SIGN_COLORS, class_label, plain_text, pretty_node

__all__ = ["plot_qq", "plot_null_comparison", "plot_gof_summary", "HEAD_COLORS"]

#: One colour per head: the trained one, then the nulls (Okabe-Ito, readable for colour-blind eyes).
HEAD_COLORS = {"trained": "#0072B2", "null normal": "#999999", "null laplace": "#E69F00", "null ald": "#009E73"}
_LINE_COLOR = "#222222"


def _head_color(head: str) -> str:
    return HEAD_COLORS.get(head, "#CC79A7")


def ald_quantiles(p: np.ndarray, loc: float, scale: float, kappa: float) -> np.ndarray:
    """Quantiles of the ALD at probabilities 0 < ``p`` < 1 (``gof.ald_ppf``), float64."""
    return ald_ppf(torch.as_tensor(p, dtype=torch.float64), loc, scale, kappa).numpy()


def plot_qq(fit: HeadFit, cls: int | str) -> Figure:
    """QQ plot of class ``cls``'s row (all D values) against its fitted ALD, plotting positions
    (i - 1/2) / D; the diagonal is a perfect fit."""
    k = fit.class_index(cls)
    x = np.sort(fit.source.rows(k, k + 1)[0].to("cpu", torch.float64).numpy())
    loc, scale, kappa = (float(t[k]) for t in (fit.ald.loc, fit.ald.scale, fit.ald.kappa))
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel("quantile of the fitted ALD")
    ax.set_ylabel("sorted weights of the class")
    gof = fit.gof
    if not ald_valid(scale, kappa):
        ax.text(0.5, 0.5, "no ALD density (degenerate fit)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(plain_text(class_label(fit, k)), fontsize="medium")
        return fig
    p = (np.arange(len(x)) + 0.5) / len(x)
    q = ald_quantiles(p, loc, scale, kappa)
    color = np.where(x > 0, SIGN_COLORS["+"], SIGN_COLORS["-"])
    ax.scatter(q, x, s=5, c=color, alpha=0.6, lw=0)
    span = [min(q[0], x[0]), max(q[-1], x[-1])]
    ax.plot(span, span, color=_LINE_COLOR, lw=0.8, ls="--")
    ax.grid(alpha=0.25, lw=0.6)
    ax.set_title(
        f"{plain_text(class_label(fit, k))}: QQ against its ALD\n"
        rf"$\kappa$ {kappa:.3g}, KS {float(gof.ks[k]):.3f}, "
        rf"$\Delta$AIC vs normal {float(gof.daic_normal[k]):.1f}, vs Laplace {float(gof.daic_laplace[k]):.1f}",
        fontsize="small",
    )
    return fig


def _chain_nodes(fit: HeadFit, levels: int) -> list[str]:
    return [side * level for side in "+-" for level in range(1, levels + 1) if side * level in fit.nodes]


def plot_null_comparison(fit: HeadFit, levels: int = 3) -> Figure:
    """Box plots of R^2 (top) and slope (bottom) of the nodes ``+ ++ ... - -- ...`` down to
    ``levels``, one box per head (the trained head and each null head) at every node."""
    heads = heads_of(fit)
    nodes = _chain_nodes(fit, levels)
    fig = Figure(figsize=(max(6.0, 0.45 * len(nodes) * len(heads) + 2), 6.0), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(heads)
    for ax, quantity, label in zip(axes, ("r2", "slope"), ("$R^2$ of Algorithm 1", "slope"), strict=True):
        for i, (head, h) in enumerate(heads):
            data, positions = [], []
            for n, node in enumerate(nodes):
                if node not in h.nodes:
                    continue
                j = h.nodes.index(node)
                values = getattr(h, quantity)[:, j][h.count[:, j] > 0].cpu().numpy()
                values = values[~np.isnan(values)]
                if values.size:
                    data.append(values)
                    positions.append(n + (i - (len(heads) - 1) / 2) * width)
            if not data:
                continue
            boxes = ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.9,
                patch_artist=True,
                manage_ticks=False,
                flierprops={"ms": 1.5, "alpha": 0.4},
                medianprops={"color": _LINE_COLOR},
            )
            for patch in boxes["boxes"]:
                patch.set_facecolor(to_rgba(_head_color(head), 0.45))
                patch.set_edgecolor(_head_color(head))
            ax.plot([], [], color=_head_color(head), lw=6, alpha=0.6, label=head)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.25, lw=0.6)
    axes[1].set_xticks(range(len(nodes)), [pretty_node(n) for n in nodes])
    axes[1].set_xlabel("node")
    axes[0].legend(fontsize="small", ncols=len(heads), loc="lower left")
    axes[0].set_title(
        "Algorithm 1 on the trained head and on null heads with the same row statistics", fontsize="medium"
    )
    return fig


def plot_gof_summary(fit: HeadFit) -> Figure:
    """Histograms over all classes of every head: AIC of the normal and of the Laplace minus the
    ALD's (right of 0: the ALD is preferred; the share in the legend), kappa, and the KS distance."""
    heads = heads_of(fit)
    fig = Figure(figsize=(10.0, 6.0), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    panels = [
        ("daic_normal", r"$\Delta$AIC = AIC(normal) - AIC(ALD)", True),
        ("daic_laplace", r"$\Delta$AIC = AIC(Laplace) - AIC(ALD)", True),
        ("kappa", r"ALD $\kappa$ (1: symmetric)", False),
        ("ks", "KS distance of the row to its ALD", False),
    ]
    for ax, (name, title, share) in zip(axes, panels, strict=True):
        columns = [(head, (h.ald.kappa if name == "kappa" else h.gof[name]).cpu().numpy()) for head, h in heads]
        finite = np.concatenate([v[np.isfinite(v)] for _, v in columns])
        if not finite.size:
            ax.set_title(f"{title}: no finite values", fontsize="small")
            continue
        low, high = np.quantile(finite, [0.005, 0.995])
        bins = np.linspace(low, high if high > low else low + 1, 50)
        for head, values in columns:
            values = values[np.isfinite(values)]
            label = head
            if share and values.size:
                label += f" (ALD wins {100 * (values > 0).mean():.0f}%)"
            ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, histtype="stepfilled", alpha=0.35,
                    color=_head_color(head), edgecolor=_head_color(head), label=label)  # fmt: skip
        if share:
            ax.axvline(0, color=_LINE_COLOR, lw=0.8, ls="--")
        ax.set_title(title, fontsize="small")
        ax.set_ylabel("classes")
        ax.legend(fontsize="x-small")
    K, D = fit.shape
    fig.suptitle(f"Goodness of fit of the ALD over {K} classes of {D} weights", fontsize="medium")
    return fig
