"""Figures of a fit: the paper's Algorithm 1 plots, the split tree of a class and R^2 summaries.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing opens a
window, nothing depends on the interactive backend and nothing touches pyplot's global state;
save with ``fig.savefig(path, dpi=150)`` (Agg renders PNG).

* ``plot_fits(fit, classes)``: the paper's Fig. 1/2: for each class the log of the sorted ``+``
  weights and of the sorted ``-`` magnitudes against Algorithm 1's grid, with the fitted line.
* ``plot_split(fit, cls)``: the class row's histogram with its ALD maximum likelihood density and
  the thresholds of every split, above the nested value intervals of the tree's nodes.
* ``plot_node_fits(fit, cls)``: the tree of one class, one Algorithm 1 panel per node.
* ``plot_r2_summary(fit)``: the spread of r2 over all classes for every node level and side.

Example:
    >>> fit = fcinterp_fast.fit(fcinterp_fast.models.load())              # doctest: +SKIP
    >>> plot_fits(fit, ["tricycle", "web site", "whiptail"]).savefig("fits.png")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ..result import HeadFit

__all__ = [
    "NodeCurve",
    "node_curve",
    "node_groups",
    "class_label",
    "short_name",
    "plain_text",
    "pretty_node",
    "plot_fits",
    "plot_split",
    "plot_node_fits",
    "plot_r2_summary",
]

#: Colour of each side of the tree (Okabe-Ito blue and vermillion: readable for colour-blind eyes).
SIGN_COLORS = {"+": "#0072B2", "-": "#D55E00"}
_LINE_COLOR = "#222222"
# Behind labels written over bars and ticks: light enough to keep the bar's colour visible.
_LABEL_BOX = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.6}
# Width of one Algorithm 1 panel and of the figures built from them (inches).
_PANEL_SIZE = (4.2, 3.0)


@dataclasses.dataclass
class NodeCurve:
    """What Algorithm 1 fits for one node of one class.

    Attributes:
        x: (L,) float64, the grid (``i / L`` for ``grid="paper"``, ``i / (L - 1)`` for
            ``"linspace"``).
        y: (L,) float64, ln of the node's non-zero magnitudes, sorted ascending.
        count: members of the node (zeros included, so ``count >= L``).
        slope, intercept, r2: the fit's line and its coefficient of determination.
    """

    x: np.ndarray
    y: np.ndarray
    count: int
    slope: float
    intercept: float
    r2: float


def node_curve(fit: HeadFit, cls: int | str, node: str) -> NodeCurve:
    """The data and the line of Algorithm 1 for ``node`` (a name, ``"+*"`` or ``"-*"``) of class ``cls``."""
    k = fit.class_index(cls)
    j = fit.column(node, k) if node in ("+*", "-*") else fit.column(node)
    members = _row(fit, k)[fit.members(k, fit.nodes[j]).cpu().numpy()]
    magnitudes = np.sort(np.abs(members[members != 0]))
    L = magnitudes.size
    x = np.arange(L, dtype=np.float64) / (L if fit.config.grid == "paper" or L < 2 else L - 1)
    return NodeCurve(
        x=x,
        y=np.log(magnitudes),
        count=int(fit.count[k, j]),
        slope=float(fit.slope[k, j]),
        intercept=float(fit.intercept[k, j]),
        r2=float(fit.r2[k, j]),
    )


def pretty_node(name: str) -> str:
    """A node name for figures: ``"--+"`` -> ``"−−+"`` (a typographic minus reads better than a hyphen)."""
    return name.replace("-", "\u2212")


def class_label(fit: HeadFit, cls: int | str) -> str:
    """Short label of a class: its first synonym and index (``"tricycle (870)"``), or ``"class 870"``."""
    k = fit.class_index(cls)
    if fit.class_names:
        return f"{short_name(fit.class_names[k])} ({k})"
    return f"class {k}"


def short_name(name: str) -> str:
    """A class name's first synonym (``"tricycle, trike, velocipede"`` -> ``"tricycle"``)."""
    return name.split(",")[0].strip()


def plain_text(text: str) -> str:
    """``text`` (a class name, say) drawn as it is by matplotlib: a ``$`` would start mathtext,
    and an unbalanced or unknown formula makes ``savefig`` raise."""
    return text.replace("$", r"\$")


def node_groups(fit: HeadFit) -> list[tuple[int, str, list[int]]]:
    """Columns grouped by level and root side: ``[(level, side, columns), ...]``, level by level.

    For chains each group is one node (``+``, ``-``, ``++``, ...); for full trees it gathers the
    nodes of a level below the root ``+`` (or ``-``).
    """
    groups: dict[tuple[int, str], list[int]] = {}
    for j, name in enumerate(fit.nodes):
        groups.setdefault((len(name), name[0]), []).append(j)
    return [(level, side, columns) for (level, side), columns in groups.items()]


# ------------------------------------------------------------------------------ the paper's figure
def plot_fits(fit: HeadFit, classes: Sequence[int | str] | int | str, nodes: Sequence[str] = ("+", "-")) -> Figure:
    """Algorithm 1 for several classes: one row per class, one panel per node (the paper's Fig. 1/2).

    Args:
        fit: a ``HeadFit``.
        classes: a class index or name (``"tricycle"``), or a list of them.
        nodes: the node of each column (default the root split ``+`` and ``-``; ``"+*"`` / ``"-*"``
            are the deepest nodes of the chains).

    Returns:
        A figure of ``len(classes)`` x ``len(nodes)`` panels: the log of the sorted magnitudes
        (dots), the fitted line, R^2 and slope in each title.
    """
    one = isinstance(classes, str) or (isinstance(classes, torch.Tensor) and classes.dim() == 0)
    if one or not isinstance(classes, (Sequence, np.ndarray, torch.Tensor)):  # an int, numpy or 0-d integer
        classes = [classes]  # type: ignore[list-item]
    ks = [fit.class_index(c) for c in classes]
    if not ks or not nodes:
        raise ValueError("plot_fits needs at least one class and one node")
    fig = Figure(figsize=(_PANEL_SIZE[0] * len(nodes), _PANEL_SIZE[1] * len(ks)), layout="constrained")
    axes = fig.subplots(len(ks), len(nodes), squeeze=False)
    for row, k in zip(axes, ks, strict=True):
        for ax, node in zip(row, nodes, strict=True):
            _draw_node_fit(ax, fit, k, node, title=f"{plain_text(class_label(fit, k))}, {pretty_node(node)}")
    for ax in axes[-1]:
        ax.set_xlabel(_grid_label(fit))
    for row in axes:
        row[0].set_ylabel(r"$\ln|\theta|$, sorted")
    fig.suptitle(_fit_caption(fit), fontsize="medium")
    return fig


def _draw_node_fit(ax, fit: HeadFit, k: int, node: str, title: str, compact: bool = False) -> None:
    """One Algorithm 1 panel: sorted log magnitudes, the fitted line, n, R^2 and slope.

    ``compact`` (small panels of a tree): n, R^2 and slope in a two-line title and no legend.
    """
    j = fit.column(node, k) if node in ("+*", "-*") else fit.column(node)
    name = fit.nodes[j]
    color = SIGN_COLORS[name[0]]
    if int(fit.count[k, j]) == 0:
        ax.set_title(f"{title}: absent", fontsize="small" if compact else "medium")
        ax.text(0.5, 0.5, "node not produced", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    curve = node_curve(fit, k, name)
    ax.plot(
        curve.x,
        curve.y,
        "o",
        ms=2.2,
        color=to_rgba(color, 0.55),
        mec="none",
        label=f"{pretty_node(name)} (n = {curve.count})",
    )
    if curve.x.size > 1:
        line_x = np.array([curve.x[0], curve.x[-1]])
        sign = "+" if curve.intercept >= 0 else "\u2212"
        ax.plot(
            line_x,
            curve.slope * line_x + curve.intercept,
            "-",
            color=_LINE_COLOR,
            lw=1.3,
            label=f"fit: y = {curve.slope:.2f} x {sign} {abs(curve.intercept):.2f}",
        )
    quality = f"$R^2$ = {curve.r2:.3f}, slope {curve.slope:.2f}"
    if compact:
        ax.set_title(f"{title}  (n = {curve.count})\n{quality}", fontsize="small")
    else:
        ax.set_title(f"{title}: {quality}", fontsize="medium")
        ax.legend(loc="lower right", fontsize="small", frameon=False, handlelength=1.2)
    ax.grid(alpha=0.25, lw=0.6)


def _grid_label(fit: HeadFit) -> str:
    return "x = i / L" if fit.config.grid == "paper" else "x = i / (L - 1)"


def _fit_caption(fit: HeadFit) -> str:
    K, D = fit.shape
    c = fit.config
    return (
        f"Algorithm 1 on a {K} x {D} head (tree={c.tree}, root={c.root}, grid={c.grid}, "
        f"min_size={c.min_size}, depth={c.depth})"
    )


# ------------------------------------------------------------------------------- one class's split
def plot_split(fit: HeadFit, cls: int | str, max_levels: int = 6) -> Figure:
    """The split tree of one class in value space.

    Top: histogram of the class row (log density) with the ALD maximum likelihood density and the
    split thresholds (node means) as dashed lines. Bottom: one row per level; each node is a bar
    from its smallest to its largest member, labelled with its name, size and R^2, with a tick at
    its mean (where its children split). Chain nodes are nested intervals at the tails.

    Args:
        fit: a ``HeadFit``.
        cls: class index or name.
        max_levels: deepest level drawn (deeper levels are listed in the caption, not drawn).
    """
    k = fit.class_index(cls)
    row = _row(fit, k)
    levels = _present_levels(fit, k)
    shown = min(levels, max_levels)
    fig = Figure(figsize=(10, 4.2 + 0.42 * shown), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3.2, 0.42 * shown + 0.3])

    top.hist(
        row,
        bins=min(80, max(10, row.size // 20)),
        density=True,
        color="0.75",
        edgecolor="none",
        label=f"weights (D = {row.size})",
    )
    _draw_ald_density(top, fit, k, row)
    root = 0.0 if fit.config.root == "zero" else math.fsum(row.tolist()) / row.size
    top.axvline(root, color="0.35", ls=":", lw=1.0, label=f"root split ({fit.config.root})")
    for j in _split_columns(fit, k, shown):
        name = fit.nodes[j]
        top.axvline(float(fit.mean[k, j]), color=SIGN_COLORS[name[0]], ls="--", lw=0.9, alpha=0.8)
    top.set_yscale("log")
    top.set_ylabel("density (log)")
    top.legend(loc="upper left", fontsize="small", framealpha=0.85, edgecolor="none")
    top.set_title(f"{plain_text(class_label(fit, k))}: split thresholds (dashed) and ALD fit", fontsize="medium")

    for j, name in enumerate(fit.nodes):
        level = len(name)
        if level > shown or int(fit.count[k, j]) == 0:
            continue
        lo, hi, mean = (float(t[k, j]) for t in (fit.lo, fit.hi, fit.mean))
        color = SIGN_COLORS[name[0]]
        bottom.barh(
            level,
            hi - lo,
            left=lo,
            height=0.72,
            color=to_rgba(color, 0.18 + 0.5 * level / shown),
            edgecolor=color,
            lw=0.8,
        )
        bottom.plot([mean, mean], [level - 0.36, level + 0.36], color=_LINE_COLOR, lw=1.0)
        outside = fit.config.tree == "chain"  # chain bars sit at the tails, free space towards the centre
        _label_bar(
            bottom,
            (lo, hi, level),
            name,
            int(fit.count[k, j]),
            float(fit.r2[k, j]),
            span=float(row.max() - row.min()),
            outside=outside,
        )
    bottom.set_ylim(shown + 0.6, 0.4)
    bottom.set_yticks(range(1, shown + 1))
    bottom.set_ylabel("level")
    bottom.set_xlabel(r"weight $\theta$")
    bottom.grid(axis="x", alpha=0.25, lw=0.6)
    hidden = levels - shown
    caption = f"nodes: [min, max] of their members, tick at the mean; {fit.config.tree} tree"
    bottom.set_title(caption + (f" ({hidden} deeper levels not drawn)" if hidden > 0 else ""), fontsize="small")
    return fig


def _draw_ald_density(ax, fit: HeadFit, k: int, row: np.ndarray) -> None:
    """The row's ALD maximum likelihood density (scipy's ``laplace_asymmetric``), when defined."""
    loc, scale, kappa = (float(t[k]) for t in (fit.ald.loc, fit.ald.scale, fit.ald.kappa))
    if not all(math.isfinite(v) and v > 0 for v in (scale, kappa)):
        return  # degenerate rows (ties) have no density to draw
    from scipy.stats import laplace_asymmetric

    x = np.linspace(row.min(), row.max(), 600)
    ax.plot(
        x,
        laplace_asymmetric.pdf(x, kappa, loc=loc, scale=scale),
        color=_LINE_COLOR,
        lw=1.3,
        label=f"ALD MLE: $\\kappa$={kappa:.3f}, scale={scale:.3g}, loc={loc:.3g}",
    )


def _label_bar(ax, bar: tuple, name: str, count: int, r2: float, span: float, outside: bool) -> None:
    """Label a node's bar ``(lo, hi, level)``: name, size and R^2 where they fit, less in narrower bars.

    ``span`` is the row's range (the axis width); with ``outside`` a bar too narrow for the full
    label gets it beside the bar, towards the centre (``+`` bars sit at the right end).
    """
    lo, hi, level = bar
    width = (hi - lo) / span if span > 0 else 1.0  # a row of equal values: one point, label it
    inside = dict(ha="center", va="center", fontsize="small", bbox=_LABEL_BOX)
    full = f"{pretty_node(name)}  n={count}  $R^2$={r2:.2f}"
    # Widths are fractions of the axis; a character of the small font takes about 0.8% of it.
    if width > 0.25:
        ax.text((lo + hi) / 2, level, full, **inside)
    elif outside:
        x, align = (lo, "right") if name[0] == "+" else (hi, "left")
        ax.text(x, level, f" {full} ", ha=align, va="center", fontsize="small")
    elif width > 0.12:
        ax.text((lo + hi) / 2, level, f"{pretty_node(name)} n={count}", **inside)
    elif width > 0.01 * len(name) + 0.01:
        ax.text((lo + hi) / 2, level, pretty_node(name), **inside)


def _present_levels(fit: HeadFit, k: int) -> int:
    present = [len(name) for j, name in enumerate(fit.nodes) if int(fit.count[k, j]) > 0]
    return max(present, default=0)


def _split_columns(fit: HeadFit, k: int, levels: int) -> list[int]:
    """Columns of the nodes of class k that were split into children within ``levels``."""
    present = {name for j, name in enumerate(fit.nodes) if int(fit.count[k, j]) > 0}
    return [
        j
        for j, name in enumerate(fit.nodes)
        if name in present and len(name) < levels and (name + "+" in present or name + "-" in present)
    ]


# ------------------------------------------------------------------------ one class's node fits
def plot_node_fits(fit: HeadFit, cls: int | str, max_levels: int = 6) -> Figure:
    """The tree of one class with the Algorithm 1 fit of every node.

    Chains are drawn as two rows (the ``+`` chain above the ``-`` chain, one column per level);
    full trees as a tree with one row per level, each node centred above its two children (at
    most 3 levels, 8 panels wide, whatever ``max_levels`` says).

    Args:
        fit: a ``HeadFit``.
        cls: class index or name.
        max_levels: deepest level drawn.
    """
    k = fit.class_index(cls)
    if fit.config.tree == "chain":
        shown = max(1, min(_present_levels(fit, k), max_levels))
        fig = Figure(figsize=(3.0 * shown + 0.6, 6.0), layout="constrained")
        grid = fig.add_gridspec(2, shown)
        placements = [
            (grid[row, level - 1], side * level) for row, side in enumerate("+-") for level in range(1, shown + 1)
        ]
    else:
        shown = max(1, min(_present_levels(fit, k), max_levels, 3))
        width = 2**shown
        fig = Figure(figsize=(max(8.0, 1.9 * width), 2.6 * shown), layout="constrained")
        grid = fig.add_gridspec(shown, width)
        placements = []
        for name in fit.nodes:
            level = len(name)
            if level <= shown:
                i = int(name.replace("+", "0").replace("-", "1"), 2)
                span = 2 ** (shown - level)
                placements.append((grid[level - 1, i * span : (i + 1) * span], name))
    for cell, name in placements:
        _draw_node_fit(fig.add_subplot(cell), fit, k, name, title=pretty_node(name), compact=True)
    fig.suptitle(
        f"{class_label(fit, k)}: Algorithm 1 on every node ({_grid_label(fit)}, "
        r"y = $\ln|\theta|$ sorted)",
        fontsize="medium",
    )
    return fig


# ------------------------------------------------------------------------------ over all classes
def plot_r2_summary(fit: HeadFit) -> Figure:
    """Box plots of R^2 over all classes, one box per level and side (``node_groups``)."""
    groups = node_groups(fit)
    data, labels, colors = [], [], []
    for level, side, columns in groups:
        present = fit.count[:, columns] > 0
        r2 = fit.r2[:, columns][present & ~torch.isnan(fit.r2[:, columns])]
        if r2.numel():
            data.append(r2.cpu().numpy())
            node = pretty_node(side * level) if fit.config.tree == "chain" else f"L{level} {pretty_node(side)}"
            labels.append(f"{node}\n{present.sum().item()}")
            colors.append(SIGN_COLORS[side])
    fig = Figure(figsize=(max(6.0, 0.75 * len(data) + 1.5), 4.0), layout="constrained")
    ax = fig.subplots()
    if not data:  # e.g. an all-zero head: matplotlib cannot draw zero boxes
        ax.text(0.5, 0.5, "no node of any class has an $R^2$\n(fewer than 2 non-zero magnitudes)", ha="center")
        ax.set_title(_fit_caption(fit), fontsize="medium")
        return fig
    boxes = ax.boxplot(
        data,
        tick_labels=labels,
        patch_artist=True,
        widths=0.6,
        flierprops={"ms": 2.5, "alpha": 0.5},
        medianprops={"color": _LINE_COLOR},
    )
    for patch, color in zip(boxes["boxes"], colors, strict=True):
        patch.set_facecolor(to_rgba(color, 0.35))
        patch.set_edgecolor(color)
    ax.set_ylabel("$R^2$ of Algorithm 1")
    ax.set_xlabel("node (and how many classes have it)")
    ax.grid(axis="y", alpha=0.25, lw=0.6)
    ax.set_title(_fit_caption(fit), fontsize="medium")
    return fig


def _row(fit: HeadFit, k: int) -> np.ndarray:
    """Row k of the head as (D,) float64 numpy."""
    return fit.source.rows(k, k + 1)[0].to("cpu", torch.float64).numpy()
