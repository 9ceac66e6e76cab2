"""All report writing: a fit's tables, figures and a markdown summary that links them.

``write_report(fit, out, classes)`` writes into ``out``:

* ``nodes.csv``: every class and present node (``HeadFit.to_csv``);
* ``ald.csv``: one row per class, the ALD maximum likelihood fit;
* ``r2_by_node.png``: R^2 over all classes per node level and side (``plot.plot_r2_summary``);
* for the chosen classes, ``fits.png`` (the paper's Fig. 1/2) and per class ``split_<k>.png`` and
  ``nodes_<k>.png``;
* with an ``Explanation``, its figure (the paper's Fig. 5 for one image and class);
* ``index.md``: the head, the options, median and IQR of R^2 per node level over all classes, the
  chosen classes' numbers, and links to everything above.

``save_figure`` writes any figure of ``fcinterp_fast.figures`` (the command line's ``explain`` too).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from .cam.options import CamOptions
from .figures import fits as plot
from .result import HeadFit

__all__ = ["write_report", "save_figure", "Explanation", "LevelStats", "level_stats", "DPI"]

#: Figure resolution; 150 dpi keeps text sharp in a browser without multi-megabyte files.
DPI = 150
# Full trees list nodes down to this level in the markdown (deeper ones are in nodes.csv).
_FULL_TREE_TABLE_LEVELS = 3


@dataclasses.dataclass
class LevelStats:
    """R^2 of one level and side (``plot.node_groups``) over all classes that have such a node."""

    level: int
    side: str
    nodes: int
    median: float
    q25: float
    q75: float
    median_count: float


@dataclasses.dataclass
class Explanation:
    """The explanation figure of a report and what it shows.

    Attributes:
        figure: the paper's Fig. 5 (``fcinterp_fast.figures.cam.chain_figure``).
        filename: its file name in the report folder (``explain_grace_hopper.png``).
        class_name: the class explained; image: the image, as the report should name it.
        options: the explanation's ``CamOptions``; seed: the seed of its noise.
    """

    figure: Figure
    filename: str
    class_name: str
    image: str
    options: CamOptions
    seed: int


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``figure`` to ``path`` (the format follows the suffix: .png, .pdf, .svg ...), creating
    its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def level_stats(fit: HeadFit) -> list[LevelStats]:
    """Median and quartiles of R^2 (and the median node size) per level and side, level by level."""
    stats = []
    for level, side, columns in plot.node_groups(fit):
        present = fit.count[:, columns] > 0
        r2 = fit.r2[:, columns][present].cpu()
        counts = fit.count[:, columns][present].cpu().to(torch.float64)
        if not counts.numel():
            continue
        # Nodes of a single non-zero magnitude have r2 NaN (docs/spec.md section 3): left out of the quartiles.
        q25, median, q75 = torch.nanquantile(r2, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
        stats.append(LevelStats(level, side, counts.numel(), median, q25, q75, float(counts.median())))
    return stats


def write_report(
    fit: HeadFit,
    out: str | Path,
    classes: Sequence[int | str] = (),
    *,
    head: str = "head",
    seconds: float | None = None,
    explanation: Explanation | None = None,
) -> Path:
    """Write the tables, figures and ``index.md`` of ``fit`` into the folder ``out``.

    Args:
        fit: a ``HeadFit``.
        out: folder (created if missing; files of an earlier report are overwritten).
        classes: class indices or names to draw and list in detail.
        head: what was fitted, for the summary (e.g. ``"efficientnet_lite0 (bundled)"``).
        seconds: how long ``fit`` took, for the summary.
        explanation: an explanation figure to add (``fcinterp demo`` adds the paper's Fig. 5).

    Returns:
        The path of ``index.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ks = list(dict.fromkeys(fit.class_index(c) for c in classes))  # unique, in the order given
    fit.to_csv(out / "nodes.csv")
    _write_ald_csv(fit, out / "ald.csv")
    figures = {"r2_by_node.png": plot.plot_r2_summary(fit)}
    if ks:
        figures["fits.png"] = plot.plot_fits(fit, ks)
    for k in ks:
        figures[f"split_{k}.png"] = plot.plot_split(fit, k)
        figures[f"nodes_{k}.png"] = plot.plot_node_fits(fit, k)
    if explanation is not None:
        figures[explanation.filename] = explanation.figure
    for name, figure in figures.items():
        save_figure(figure, out / name)
    index = out / "index.md"
    index.write_text(_markdown(fit, ks, head, seconds, explanation))
    return index


def _write_ald_csv(fit: HeadFit, path: Path) -> None:
    ald = fit.ald
    columns = [t.cpu().tolist() for t in (ald.loc, ald.scale, ald.kappa, ald.lam, ald.loglik)]
    names = fit.class_names or [""] * len(fit)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "class_name", "ald_loc", "ald_scale", "ald_kappa", "ald_lambda", "ald_loglik"])
        writer.writerows(zip(range(len(fit)), names, *columns, strict=True))


# ----------------------------------------------------------------------------------- markdown
def _markdown(fit: HeadFit, ks: list[int], head: str, seconds: float | None, explanation: Explanation | None) -> str:
    K, D = fit.shape
    c = fit.config
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    lines = [
        f"# fcinterp report: {head}",
        "",
        f"- Head: {K} classes x {D} features, {str(fit.source.dtype).replace('torch.', '')}.",
        f"- Fit: `tree={c.tree}`, `root={c.root}`, `grid={c.grid}`, `min_size={c.min_size}`, "
        f"`depth={c.depth}`; backend `{fit.backend}`{took}.",
        f"- Nodes: {', '.join(f'`{n}`' for n in fit.nodes[:12])}{' ...' if len(fit.nodes) > 12 else ''}.",
        "",
        "## Algorithm 1 over all classes",
        "",
        "R^2 of the line fitted to the log of each node's sorted magnitudes, over the classes that "
        "have that node"
        + (" (full trees: all nodes of a level under the root `+` or `-`)" if c.tree == "full" else "")
        + ".",
        "",
        "| level | side | nodes | median R^2 | IQR of R^2 | median size |",
        "|---:|:---:|---:|---:|---:|---:|",
    ]
    for s in level_stats(fit):
        lines.append(
            f"| {s.level} | `{s.side}` | {s.nodes} | {s.median:.3f} | {s.q25:.3f} - {s.q75:.3f} | {s.median_count:g} |"
        )
    lines += ["", "![R^2 by node](r2_by_node.png)", ""]
    if ks:
        lines += [
            "## Chosen classes",
            "",
            "The log of the sorted `+` weights and `-` magnitudes with the fitted line (the paper's Fig. 1/2):",
            "",
            "![Algorithm 1 fits](fits.png)",
            "",
        ]
        for k in ks:
            lines += _class_section(fit, k)
    if explanation is not None:
        lines += _explanation_section(explanation)
    lines += [
        "## Files",
        "",
        "- [nodes.csv](nodes.csv): every class and present node: count, mean (split threshold), min, "
        "max, slope, intercept, R^2, the derived `k_est`, `lam_est`, `mean_est`, and the class's ALD fit.",
        "- [ald.csv](ald.csv): the ALD maximum likelihood fit of every class (scipy's "
        "`laplace_asymmetric` parameters; `ald_lambda` = 1 / scale).",
        "- [r2_by_node.png](r2_by_node.png)"
        + "".join(f", [split_{k}.png](split_{k}.png), [nodes_{k}.png](nodes_{k}.png)" for k in ks)
        + (", [fits.png](fits.png)" if ks else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def _class_section(fit: HeadFit, k: int) -> list[str]:
    ald = fit.ald
    name = f": `{fit.class_names[k]}`" if fit.class_names else ""
    lines = [
        f"### {plot.class_label(fit, k)}{name}",
        "",
        f"ALD fit: kappa = {float(ald.kappa[k]):.4g}, scale = {float(ald.scale[k]):.4g} "
        f"(lambda = {float(ald.lam[k]):.4g}), loc = {float(ald.loc[k]):.4g}, "
        f"log-likelihood = {float(ald.loglik[k]):.6g}.",
        "",
        "| node | size | mean (threshold) | min | max | slope | intercept | R^2 |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    deepest = _FULL_TREE_TABLE_LEVELS if fit.config.tree == "full" else len(fit.nodes)
    for j, node in enumerate(fit.nodes):
        count = int(fit.count[k, j])
        if count and len(node) <= deepest:
            values = (float(t[k, j]) for t in (fit.mean, fit.lo, fit.hi, fit.slope, fit.intercept, fit.r2))
            lines.append(f"| `{node}` | {count} | " + " | ".join(f"{v:.4g}" for v in values) + " |")
    if fit.config.tree == "full" and any(len(n) > deepest for n in fit.nodes):
        lines += ["", f"Levels below {deepest} are in `nodes.csv`."]
    lines += ["", f"![split of class {k}](split_{k}.png)", "", f"![node fits of class {k}](nodes_{k}.png)", ""]
    return lines


def _explanation_section(e: Explanation) -> list[str]:
    return [
        "## What the neurons of each node see",
        "",
        f"{e.options.describe()}, noise seed {e.seed}, of `{e.class_name}` on {e.image}: the map through only "
        f"the neurons of each level of the `+` chain (most discriminative) and the `-` chain (most "
        f"confusing), the paper's Fig. 5:",
        "",
        f"![explanation per node]({e.filename})",
        "",
    ]
