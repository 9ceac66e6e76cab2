"""All report writing: a fit's tables, figures, an HTML page and a markdown summary that link them.

``write_report(fit, out, classes)`` writes into ``out``:

* ``nodes.csv``: every class and present node (``HeadFit.to_csv``), or ``nodes.parquet``
  (``HeadFit.to_parquet``) for heads of more than ``PARQUET_MIN_CLASSES`` classes (``tables``);
* ``ald.csv``: one row per class, the ALD maximum likelihood fit;
* ``gof.csv``: one row per class, its goodness of fit (``HeadFit.gof``, docs/spec.md section 7);
* ``summary.csv``: the trained head against its null heads (``HeadFit.summary``);
* ``r2_by_node.png``: R^2 over all classes per node level and side (``plot.plot_r2_summary``);
  ``gof_summary.png`` (``gof_plot.plot_gof_summary``) and, with null heads, ``null_comparison.png``;
* for the chosen classes, ``fits.png`` (the paper's Fig. 1/2) and per class ``split_<k>.png``,
  ``nodes_<k>.png`` and ``qq_<k>.png`` (the row against its fitted ALD);
* with an ``Explanation``, its figure (the paper's Fig. 5 for one image and class);
* ``index.html``: one self-contained page (``report_html``): the run's options and source, the
  summary, a searchable and sortable table of every class, a panel per chosen class, the
  explanation, links to the tables; every figure inline, no network request;
* ``index.md``: a short markdown summary: the head, the options, median and IQR of R^2 per node
  level, the goodness of fit in two sentences, the chosen classes' numbers, and links.

``save_figure`` writes any figure of ``fcinterp_fast.figures`` (the command line's ``explain`` too).

A report is never left half written where it looks whole: every file is written under a temporary
name beside its final one and renamed into place (``os.replace``) only once all of them are
written, so a run stopped by an error (a full disk) or Ctrl-C before that leaves the previous report
as it was. The previous ``index.html`` and ``index.md`` are removed before the renames and the new
ones written last (``index.html`` the very last), so a folder without ``index.html`` is incomplete.
Figures of an earlier report that this one does not draw are removed, and every ``OSError`` names
the file. ``check_folder`` finds an unwritable folder before a long fit.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure

from . import report_html
from ._deps import require
from .cam.options import CamOptions
from .diagnostics import fit_problems, logger
from .figures import fits as plot
from .figures import gof as gof_plot
from .result import HeadFit
from .summary import SUMMARY_COLUMNS, summary_rows

__all__ = [
    "write_report",
    "save_figure",
    "check_folder",
    "table_format",
    "Explanation",
    "LevelStats",
    "level_stats",
    "DPI",
    "TABLE_FORMATS",
    "PARQUET_MIN_CLASSES",
]

#: Figure resolution; 150 dpi keeps text sharp in a browser without multi-megabyte files.
DPI = 150
#: ``tables="auto"`` writes the node table as Parquet above this many classes (a CSV of an LLM head
#: of 150k classes and their nodes is gigabytes of text, slow to write and to read back).
PARQUET_MIN_CLASSES = 100_000
#: What ``write_report(tables=...)`` and ``fcinterp fit --tables`` take.
TABLE_FORMATS = ("auto", "csv", "parquet")
# The node table's file name in each format.
_NODE_TABLES = {"csv": "nodes.csv", "parquet": "nodes.parquet"}
# Full trees list nodes down to this level in the markdown (deeper ones are in the node table).
_FULL_TREE_TABLE_LEVELS = 3
# Figures a report draws for its chosen classes or explanation: one left by an earlier report that
# this one does not draw again would sit beside an index that does not link it, so it is removed.
_CHOSEN_FIGURES = re.compile(r"(split|nodes|qq)_\d+\.png|fits\.png|explain_.+\.png|null_comparison\.png")


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

    def __post_init__(self) -> None:
        # the page embeds it as a PNG, and the next run removes it as one of its own figures
        if _CHOSEN_FIGURES.fullmatch(self.filename) is None or not self.filename.startswith("explain_"):
            raise ValueError(f"an explanation's filename is explain_<name>.png, got {self.filename!r}")


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``figure`` to ``path`` (the format follows the suffix: .png, .pdf, .svg ...), creating
    its folder; returns the path. ``path`` is replaced whole or not at all."""
    path = Path(path)
    with _naming(path.parent, "cannot create the folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
    with _staging() as stage:
        stage(path, functools.partial(_savefig, figure, path.suffix, dpi))
    return path


def check_folder(out: str | os.PathLike) -> Path:
    """Create the folder ``out`` if needed and check that files can be written into it (a probe
    file is written and removed): run before a long computation whose results go there.

    Raises:
        OSError: naming ``out`` (e.g. a path below a file, a read-only file system).
    """
    out = Path(out)
    with _naming(out, "cannot write into the folder"):
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".fcinterp-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"probe")
        probe.unlink()
    return out


def table_format(tables: str, n_classes: int) -> str:
    """The node table's format, ``"csv"`` or ``"parquet"``, for a head of ``n_classes`` classes.

    ``"auto"`` is Parquet above ``PARQUET_MIN_CLASSES`` classes when pyarrow is installed (else
    CSV, logged as a warning); ``"parquet"`` without pyarrow raises ``MissingDependency``. Call it
    before a long fit, so that a missing package stops the run first.
    """
    if tables not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {tables!r}; choose one of {', '.join(map(repr, TABLE_FORMATS))}")
    if tables == "parquet":
        require("pyarrow.parquet", "writing the node table as Parquet", install="pyarrow")
    if tables != "auto":
        return tables
    if n_classes <= PARQUET_MIN_CLASSES:
        return "csv"
    try:
        require("pyarrow.parquet", "writing the node table as Parquet", install="pyarrow")
    except ImportError as error:
        logger.warning("%d classes: writing nodes.csv, since %s", n_classes, error)
        return "csv"
    return "parquet"


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
    tables: str = TABLE_FORMATS[0],
    progress: bool | None = None,
) -> Path:
    """Write the tables, figures, ``index.html`` and ``index.md`` of ``fit`` into the folder ``out``.

    Args:
        fit: a ``HeadFit``.
        out: folder (created if missing). The files of an earlier report there are replaced once
            every new file is written (see the module's docstring), and its per-class and
            explanation figures that this report does not draw are removed.
        classes: class indices or names to draw and list in detail.
        head: what was fitted, for the summary (e.g. ``"efficientnet_lite0 (bundled)"``).
        seconds: how long ``fit`` took, for the summary.
        explanation: an explanation figure to add (``fcinterp demo`` adds the paper's Fig. 5).
        tables: the node table's format, one of ``TABLE_FORMATS`` (see ``table_format``); a node
            table of the other format left by an earlier report is removed.
        progress: a bar while the node table is written (None: on a terminal, after a second).

    Returns:
        The path of ``index.html``.
    """
    out = Path(out)
    with _naming(out, "cannot create the folder"):
        out.mkdir(parents=True, exist_ok=True)
    table = _NODE_TABLES[table_format(tables, len(fit))]
    ks = list(dict.fromkeys(fit.class_index(c) for c in classes))  # unique, in the order given
    captions = {
        "r2_by_node.png": "R\u00b2 of Algorithm 1 over all classes, per node",
        "gof_summary.png": "goodness of fit of the ALD over all classes",
    }
    figures = {"r2_by_node.png": plot.plot_r2_summary(fit), "gof_summary.png": gof_plot.plot_gof_summary(fit)}
    if fit.null:
        figures["null_comparison.png"] = gof_plot.plot_null_comparison(fit)
        captions["null_comparison.png"] = "the trained head against its null heads"
    if ks:
        figures["fits.png"] = plot.plot_fits(fit, ks)
        captions["fits.png"] = "Algorithm 1 on the chosen classes (the paper's Fig. 1/2)"
    for k in ks:
        label = plot.class_label(fit, k)
        figures[f"split_{k}.png"] = plot.plot_split(fit, k)
        figures[f"nodes_{k}.png"] = plot.plot_node_fits(fit, k)
        figures[f"qq_{k}.png"] = gof_plot.plot_qq(fit, k)
        captions[f"split_{k}.png"] = f"{label}: the split tree"
        captions[f"nodes_{k}.png"] = f"{label}: Algorithm 1 on every node"
        captions[f"qq_{k}.png"] = f"{label}: QQ plot against its fitted ALD"
    if explanation is not None:
        figures[explanation.filename] = explanation.figure
        captions[explanation.filename] = f"{explanation.class_name}: Smooth Grad-CAM++ per node"
    summary = summary_rows(fit)
    markdown = _markdown(fit, ks, head, seconds, explanation, table, summary)
    index, index_md = out / "index.html", out / "index.md"
    logger.info("writing %s: %d classes, %d nodes", out / table, len(fit), int((fit.count > 0).sum()))
    pngs: dict[str, bytes] = {}
    with _staging() as stage:
        if table == "nodes.csv":
            stage(out / table, functools.partial(fit.to_csv, progress=progress))
        else:
            stage(out / table, functools.partial(fit.to_parquet, progress=progress))
        stage(out / "ald.csv", lambda path: _write_ald_csv(fit, path))
        stage(out / "gof.csv", lambda path: _write_gof_csv(fit, path))
        stage(out / "summary.csv", lambda path: _write_summary_csv(summary, path))
        for name, figure in figures.items():
            stage(out / name, functools.partial(_savefig_keeping, figure, name, pngs))
        page = _page(fit, ks, head, seconds, explanation, summary, pngs, captions, table)
        for old in (index, index_md):  # from here until the new index, visibly incomplete
            with _naming(old, "cannot remove"):
                old.unlink(missing_ok=True)
    stale_tables = set(_NODE_TABLES.values()) - {table}
    for path in out.iterdir():
        stale = _CHOSEN_FIGURES.fullmatch(path.name) and path.name not in figures or path.name in stale_tables
        if stale and path.is_file():
            with _naming(path, "cannot remove"):
                path.unlink()
    with _staging() as stage:
        stage(index_md, lambda path: path.write_text(markdown))
    with _staging() as stage:
        stage(index, lambda path: path.write_text(page, encoding="utf-8"))
    return index


#: The tables a report links, and what each holds.
_TABLES = (
    ("nodes", "every class and present node: count, mean (split threshold), min, max, slope, intercept, "
     "R\u00b2, the derived k_est, lam_est, mean_est, and the class's ALD fit"),
    ("ald.csv", "the ALD maximum likelihood fit of every class (scipy's laplace_asymmetric parameters; "
     "ald_lambda = 1 / scale)"),
    ("gof.csv", "the goodness of fit of every class: log-likelihoods of the ALD, Laplace and normal, "
     "lr_asym, p_asym, daic_normal, daic_laplace, ks, ks_p"),
    ("summary.csv", "per node and head (trained, each null): median and quartiles of R\u00b2, slope, depth, "
     "kappa, KS, AIC differences, and the share of classes where the ALD wins"),
)  # fmt: skip


def _tables(node_table: str) -> list[tuple[str, str]]:
    """``(file name, what it holds)`` of the report's tables, the node table being ``node_table``
    (nodes.csv or nodes.parquet): one list for index.html and index.md."""
    return [(node_table if name == "nodes" else name, what) for name, what in _TABLES]


def _savefig_keeping(figure: Figure, name: str, pngs: dict[str, bytes], path: Path) -> None:
    """Save ``figure`` to ``path`` (a temporary name for ``name``) and keep its bytes for the page."""
    _savefig(figure, Path(name).suffix, DPI, path)
    pngs[name] = path.read_bytes()


def _page(
    fit: HeadFit,
    ks: list[int],
    head: str,
    seconds: float | None,
    explanation: Explanation | None,
    summary: list[dict],
    pngs: dict[str, bytes],
    captions: dict[str, str],
    table: str,
) -> str:
    def figure(name: str) -> report_html.PageFigure:
        return report_html.PageFigure(pngs[name], name, captions[name])

    overview = [figure(n) for n in ("gof_summary.png", "null_comparison.png", "r2_by_node.png") if n in pngs]
    panels = [report_html.ClassPanel(k, [figure(f"{kind}_{k}.png") for kind in ("split", "qq", "nodes")]) for k in ks]
    explained = None
    if explanation is not None:
        explained = (figure(explanation.filename), _explanation_sentence(explanation))
    files = [
        *_tables(table),
        *((name, captions[name]) for name in pngs),
        ("index.md", "this report in short, as markdown"),
    ]
    return report_html.render_page(
        fit,
        head=head,
        seconds=seconds,
        summary=summary,
        overview=overview,
        panels=panels,
        fits_figure=figure("fits.png") if "fits.png" in pngs else None,
        explanation=explained,
        files=files,
    )


@contextlib.contextmanager
def _staging() -> Iterator[Callable[[Path, Callable[[Path], object]], None]]:
    """``stage(path, write)``: ``write`` a file under a temporary name beside ``path``. When the
    block ends without an error, every staged file is renamed onto its path (each is then the old
    file or the new one, whole); on any error or interrupt the temporary files are removed."""
    staged: dict[Path, Path] = {}

    def stage(path: Path, write: Callable[[Path], object]) -> None:
        staged[path] = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
        with _naming(path, "cannot write"):
            write(staged[path])

    try:
        yield stage
        for path, temporary in list(staged.items()):
            with _naming(path, "cannot write"):
                os.replace(temporary, path)
            del staged[path]
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(path: Path, doing: str) -> Iterator[None]:
    """Restate an ``OSError`` as "``doing`` ``path``: reason" (same errno and class): an error while
    writing an open file (a full disk) names no file, and a temporary name would be the wrong one."""
    try:
        yield
    except OSError as error:
        message = f"{doing} {path}: {error.strerror or error}"
        raise (OSError(error.errno, message) if error.errno is not None else OSError(message)) from error


def _savefig(figure: Figure, suffix: str, dpi: int, path: Path) -> None:
    """Save ``figure`` to ``path`` (a temporary name) in the format of ``suffix``, the final name's
    (matplotlib's default format without one)."""
    figure.savefig(path, format=suffix[1:] or matplotlib.rcParams["savefig.format"], dpi=dpi, bbox_inches="tight")


def _write_ald_csv(fit: HeadFit, path: Path) -> None:
    ald = fit.ald
    columns = [t.cpu().tolist() for t in (ald.loc, ald.scale, ald.kappa, ald.lam, ald.loglik)]
    names = fit.class_names or [""] * len(fit)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "class_name", "ald_loc", "ald_scale", "ald_kappa", "ald_lambda", "ald_loglik"])
        writer.writerows(zip(range(len(fit)), names, *columns, strict=True))


def _write_gof_csv(fit: HeadFit, path: Path) -> None:
    columns = fit.gof.columns()
    names = fit.class_names or [""] * len(fit)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "class_name", *columns])
        writer.writerows(zip(range(len(fit)), names, *(c.tolist() for c in columns.values()), strict=True))


def _write_summary_csv(summary: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        writer.writerows(summary)


def _gof_sentences(summary: list[dict]) -> str:
    """Two sentences on the goodness of fit of the trained head (markdown)."""
    trained = {(r["quantity"], r["node"]): r for r in summary if r["head"] == "trained"}
    normal, laplace = trained[("daic_normal", "")], trained[("daic_laplace", "")]
    text = (
        f"By AIC the ALD fits the rows better than a normal in {100 * normal['share']:.1f}% of the "
        f"{normal['classes']} classes and better than a symmetric Laplace in {100 * laplace['share']:.1f}%; "
        f"median kappa {trained[('kappa', '')]['median']:.3g}, median KS distance of a row to its ALD "
        f"{trained[('ks', '')]['median']:.3g}."
    )
    nulls = [r for r in summary if r["quantity"] == "r2" and r["node"] == "+" and r["head"] != "trained"]
    if nulls and ("r2", "+") in trained:
        text += f" Median R^2 of `+`: trained {trained[('r2', '+')]['median']:.3f}, " + ", ".join(
            f"{r['head']} {r['median']:.3f}" for r in nulls
        )
        text += "."
    return text


# ----------------------------------------------------------------------------------- markdown
def _markdown(
    fit: HeadFit,
    ks: list[int],
    head: str,
    seconds: float | None,
    explanation: Explanation | None,
    table: str,
    summary: list[dict],
) -> str:
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
        *[f"- **Warning**: {problem}." for problem in [fit_problems(fit)] if problem],
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
    lines += [
        "",
        "![R^2 by node](r2_by_node.png)",
        "",
        "## Goodness of fit",
        "",
        _gof_sentences(summary),
        "",
        "The whole report, with every class searchable and sortable: [index.html](index.html).",
        "",
    ]
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
        *(f"- [{name}]({name}): {what}." for name, what in _tables(table)),
        "- [r2_by_node.png](r2_by_node.png), [gof_summary.png](gof_summary.png)"
        + (", [null_comparison.png](null_comparison.png)" if fit.null else "")
        + "".join(
            f", [split_{k}.png](split_{k}.png), [nodes_{k}.png](nodes_{k}.png), [qq_{k}.png](qq_{k}.png)" for k in ks
        )
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
        lines += ["", f"Levels below {deepest} are in the node table (`nodes.csv` or `nodes.parquet`)."]
    lines += ["", f"![split of class {k}](split_{k}.png)", "", f"![node fits of class {k}](nodes_{k}.png)", ""]
    return lines


def _explanation_sentence(e: Explanation) -> str:
    """What the explanation figure shows, for the HTML page."""
    import html

    return html.escape(
        f"{e.options.describe()}, noise seed {e.seed}, of {e.class_name} on {e.image.replace('`', '')}: the map "
        f"through only the neurons of each level of the + chain (most discriminative) and the - chain (most "
        f"confusing), the paper's Fig. 5."
    )


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
