"""``index.html`` of a report: one self-contained page (``report.write_report`` writes it).

The page makes no network request: figures are inline PNGs (``data:`` URIs), the style sheet and
the script are inline, and a Content-Security-Policy meta tag allows exactly those (the script and
the style sheet by their SHA-256 hashes, images from ``data:``) and nothing else. Links to the
report's CSV tables and figure files are relative. The class table's data travels as JSON in a
``<script type="application/json">`` block; a small vanilla script builds the table from it, filters
its rows by the text typed in the search box (class index or name) and sorts it by the column
whose header is clicked (again: the other way; NaN last either way).

This module only builds text; ``report`` writes the files.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import math
from collections.abc import Sequence

from ._version import __version__
from .figures.fits import class_label, pretty_node
from .result import HeadFit
from .summary import heads_of

__all__ = ["PageFigure", "ClassPanel", "render_page", "class_table", "SEARCH_ID", "TABLE_ID"]

#: Element ids the browser tests (and users' own scripts) rely on.
SEARCH_ID, TABLE_ID, DATA_ID = "class-search", "class-table", "class-data"
# Chain levels (full trees: levels) whose R^2 gets a column in the class table.
_TABLE_LEVELS = {"chain": 4, "full": 2}
# Chain levels of the summary table.
_SUMMARY_LEVELS = 3

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 1.2em 3em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 0.2em 0.55em; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#class-table th { cursor: pointer; position: sticky; top: 0; background: #f6f6f6; user-select: none; }
#class-table th[aria-sort=ascending]::after { content: " \\25B2"; }
#class-table th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { max-height: 34em; overflow: auto; border: 1px solid #ddd; }
img { max-width: 100%; height: auto; }
dl.options { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; }
dl.options dt { font-weight: 600; } dl.options dd { margin: 0; }
.panel { border-top: 1px solid #ddd; margin-top: 1.5em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures figure { margin: 0; max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
input[type=search] { font-size: 1em; padding: 0.3em 0.5em; width: 22em; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("class-data").textContent);
  var table = document.getElementById("class-table");
  var body = table.tBodies[0];
  var search = document.getElementById("class-search");
  var shown = document.getElementById("class-count");
  var headers = table.tHead.rows[0].cells;
  function text(value, column) {
    if (value === null) { return "NaN"; }
    if (column.digits === undefined) { return String(value); }
    return Number(value).toPrecision(column.digits).replace(/\\.?0+(e|$)/, "$1");
  }
  var rows = data.rows.map(function (values) {
    var tr = document.createElement("tr");
    values.forEach(function (value, i) {
      var td = document.createElement("td");
      td.textContent = text(value, data.columns[i]);
      if (data.columns[i].digits !== undefined || data.columns[i].integer) { td.className = "num"; }
      tr.appendChild(td);
    });
    tr.dataset.search = (values[0] + " " + values[1]).toLowerCase();
    return { tr: tr, values: values };
  });
  function filter() {
    var query = search.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      row.tr.hidden = query !== "" && row.tr.dataset.search.indexOf(query) < 0;
      if (!row.tr.hidden) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " classes";
  }
  function sortBy(i, ascending) {
    var sign = ascending ? 1 : -1;
    var order = rows.slice().sort(function (a, b) {
      var x = a.values[i], y = b.values[i];
      if (x === null || y === null) { return (x === null) - (y === null); }
      if (typeof x === "string") { return sign * x.localeCompare(y); }
      return sign * (x - y);
    });
    for (var h = 0; h < headers.length; h++) { headers[h].removeAttribute("aria-sort"); }
    headers[i].setAttribute("aria-sort", ascending ? "ascending" : "descending");
    order.forEach(function (row) { body.appendChild(row.tr); });
  }
  Array.prototype.forEach.call(headers, function (th, i) {
    th.addEventListener("click", function () {
      sortBy(i, th.getAttribute("aria-sort") !== "ascending");
    });
  });
  rows.forEach(function (row) { body.appendChild(row.tr); });
  search.addEventListener("input", filter);
  filter();
})();
"""


@dataclasses.dataclass
class PageFigure:
    """A figure of the page: its PNG bytes (inlined), file name (linked) and caption."""

    png: bytes
    filename: str
    caption: str


@dataclasses.dataclass
class ClassPanel:
    """What the page shows for one chosen class: its index and figures (fits, split tree, QQ)."""

    k: int
    figures: list[PageFigure]


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float, digits: int = 4) -> str:
    return "NaN" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _json_number(value: float) -> float | None:
    return None if not math.isfinite(value) else value


def _table_nodes(fit: HeadFit) -> list[str]:
    deepest = _TABLE_LEVELS[fit.config.tree]
    return [n for n in fit.nodes if len(n) <= deepest]


def class_table(fit: HeadFit) -> dict:
    """The class table's data: ``{"columns": [{"key", "label", "digits"|"integer"}], "rows": [[...]]}``:
    class, name, counts of ``+`` and ``-``, R^2 of the first levels' nodes, the ALD's kappa and
    scale, and the goodness of fit (NaN as null)."""
    nodes = _table_nodes(fit)
    columns: list[dict] = [
        {"key": "class", "label": "class", "integer": True},
        {"key": "name", "label": "name"},
        {"key": "count+", "label": "n " + pretty_node("+"), "integer": True},
        {"key": "count-", "label": "n " + pretty_node("-"), "integer": True},
        *({"key": f"r2{n}", "label": f"R\u00b2 {pretty_node(n)}", "digits": 4} for n in nodes),
        {"key": "kappa", "label": "\u03ba", "digits": 4},
        {"key": "scale", "label": "scale", "digits": 4},
        {"key": "daic_normal", "label": "\u0394AIC normal", "digits": 4},
        {"key": "daic_laplace", "label": "\u0394AIC Laplace", "digits": 4},
        {"key": "ks", "label": "KS", "digits": 3},
        {"key": "ks_p", "label": "KS p", "digits": 3},
    ]
    K = len(fit)
    names = list(fit.class_names) if fit.class_names else [""] * K  # every synonym: all are searched
    count = fit.count.cpu()
    r2 = fit.r2.cpu()
    plus, minus = fit.nodes.index("+"), fit.nodes.index("-")
    gof = fit.gof.columns()
    per_class = [
        count[:, plus].tolist(),
        count[:, minus].tolist(),
        *(r2[:, fit.nodes.index(n)].tolist() for n in nodes),
        fit.ald.kappa.cpu().tolist(),
        fit.ald.scale.cpu().tolist(),
        gof["daic_normal"].tolist(),
        gof["daic_laplace"].tolist(),
        gof["ks"].tolist(),
        gof["ks_p"].tolist(),
    ]
    rows = []
    for k in range(K):
        values = [column[k] for column in per_class]
        rows.append([k, names[k], *(v if isinstance(v, int) else _json_number(v) for v in values)])
    return {"columns": columns, "rows": rows}


def _img(figure: PageFigure) -> str:
    data = base64.b64encode(figure.png).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(figure.caption)}">'
        f'<figcaption>{_esc(figure.caption)} (<a href="{_esc(figure.filename)}">{_esc(figure.filename)}</a>)'
        f"</figcaption></figure>"
    )


def _summary_table(fit: HeadFit, rows: list[dict]) -> str:
    heads = [head for head, _ in heads_of(fit)]
    shown = [n for n in fit.nodes if len(n) <= (_SUMMARY_LEVELS if fit.config.tree == "chain" else 1)]
    wanted = [("r2", n) for n in shown] + [("slope", n) for n in shown]
    wanted += [("depth", "+"), ("depth", "-"), ("kappa", ""), ("ks", ""), ("daic_normal", ""), ("daic_laplace", "")]
    wanted += [("lr_asym", "")]
    index = {(r["quantity"], r["node"], r["head"]): r for r in rows}
    labels = {
        "r2": "R\u00b2",
        "slope": "slope",
        "depth": "depth reached",
        "kappa": "ALD \u03ba",
        "ks": "KS distance to the ALD",
        "daic_normal": "\u0394AIC normal \u2212 ALD (share ALD wins)",
        "daic_laplace": "\u0394AIC Laplace \u2212 ALD (share ALD wins)",
        "lr_asym": "LR asymmetry (share p < 0.05)",
    }
    out = ['<table id="summary-table"><thead><tr><th>quantity</th><th>node</th>']
    out += [f'<th class="num">{_esc(h)}: median [IQR]</th>' for h in heads]
    out.append("</tr></thead><tbody>")
    for quantity, node in wanted:
        cells = []
        for head in heads:
            r = index.get((quantity, node, head))
            if r is None:
                cells.append('<td class="num">\u2013</td>')
                continue
            share = "" if math.isnan(r["share"]) else f" ({100 * r['share']:.1f}%)"
            cells.append(
                f'<td class="num">{_number(r["median"])} [{_number(r["q25"], 3)}, {_number(r["q75"], 3)}]{share}</td>'
            )
        out.append(f"<tr><td>{_esc(labels[quantity])}</td><td>{_esc(pretty_node(node))}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _verdict(fit: HeadFit, rows: list[dict]) -> str:
    index = {(r["quantity"], r["node"], r["head"]): r for r in rows}
    normal, laplace = index[("daic_normal", "", "trained")], index[("daic_laplace", "", "trained")]
    kappa, ks = index[("kappa", "", "trained")], index[("ks", "", "trained")]
    text = (
        f"By AIC the ALD fits the rows better than a normal in <b>{100 * normal['share']:.1f}%</b> of the "
        f"{normal['classes']} classes and better than a symmetric Laplace in <b>{100 * laplace['share']:.1f}%</b>. "
        f"Median \u03ba {_number(kappa['median'], 3)} (1 is symmetric), median KS distance of a row to its "
        f"fitted ALD {_number(ks['median'], 3)}."
    )
    heads = [head for head, _ in heads_of(fit)]
    plus = {head: index[("r2", "+", head)]["median"] for head in heads if ("r2", "+", head) in index}
    if len(plus) > 1:
        text += " Median R\u00b2 of the <code>+</code> node: "
        text += ", ".join(f"{_esc(head)} {_number(median, 3)}" for head, median in plus.items()) + "."
    elif len(heads) == 1:
        text += " Fit null heads (<code>--null normal,ald</code>) to compare Algorithm 1 with noise."
    return f"<p>{text}</p>"


def _options(fit: HeadFit, head: str, seconds: float | None) -> str:
    K, D = fit.shape
    c = fit.config
    items = [
        ("source", head),
        ("head", f"{K} classes \u00d7 {D} features, {str(fit.source.dtype).replace('torch.', '')}"),
        ("fit options", f"tree={c.tree}, root={c.root}, grid={c.grid}, min_size={c.min_size}, depth={c.depth}"),
        ("backend", fit.backend + (f", {seconds:.2f} s" if seconds is not None else "")),
        (
            "null heads",
            (", ".join(fit.null) + f" (seed {fit.null_seed}, same options)") if fit.null else "none",
        ),
        ("fcinterp_fast", __version__),
    ]
    return '<dl class="options">' + "".join(f"<dt>{_esc(a)}</dt><dd>{_esc(b)}</dd>" for a, b in items) + "</dl>"


def _class_panel(fit: HeadFit, panel: ClassPanel) -> str:
    k = panel.k
    ald, gof = fit.ald, fit.gof
    name = f" \u2014 {_esc(fit.class_names[k])}" if fit.class_names else ""
    numbers = (
        f"ALD: \u03ba {_number(float(ald.kappa[k]))}, scale {_number(float(ald.scale[k]))}, "
        f"loc {_number(float(ald.loc[k]))}, log-likelihood {_number(float(ald.loglik[k]), 6)}. "
        f"\u0394AIC vs normal {_number(float(gof.daic_normal[k]))}, vs Laplace "
        f"{_number(float(gof.daic_laplace[k]))}; KS {_number(float(gof.ks[k]), 3)} "
        f"(p {_number(float(gof.ks_p[k]), 3)})."
    )
    rows = []
    for j, node in enumerate(fit.nodes):
        count = int(fit.count[k, j])
        if count and len(node) <= 6:
            values = (float(t[k, j]) for t in (fit.mean, fit.lo, fit.hi, fit.slope, fit.intercept, fit.r2))
            rows.append(
                f"<tr><td>{_esc(pretty_node(node))}</td><td class=num>{count}</td>"
                + "".join(f"<td class=num>{_number(v)}</td>" for v in values)
                + "</tr>"
            )
    table = (
        "<table><thead><tr><th>node</th><th class=num>size</th><th class=num>mean (threshold)</th>"
        "<th class=num>min</th><th class=num>max</th><th class=num>slope</th><th class=num>intercept</th>"
        "<th class=num>R\u00b2</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    figures = "".join(_img(f) for f in panel.figures)
    return (
        f'<section class="panel" id="class-{k}"><h3>{_esc(class_label(fit, k))}{name}</h3>'
        f"<p>{numbers}</p>{table}<div class=figures>{figures}</div></section>"
    )


def render_page(
    fit: HeadFit,
    *,
    head: str,
    seconds: float | None,
    summary: list[dict],
    overview: Sequence[PageFigure],
    panels: Sequence[ClassPanel],
    fits_figure: PageFigure | None,
    explanation: tuple[PageFigure, str] | None,
    files: Sequence[tuple[str, str]],
) -> str:
    """The whole page as text.

    Args:
        fit: the fit (its nulls are compared in the summary).
        head: what was fitted (the source); seconds: how long the fit took.
        summary: ``summary.summary_rows(fit)``.
        overview: figures over all classes; panels: one per chosen class; fits_figure: the paper's
            Fig. 1/2 of the chosen classes; explanation: its figure and a sentence (HTML) saying what it shows.
        files: ``(file name, what it holds)`` of the tables to link.
    """
    table = class_table(fit)
    # Inside <script> the HTML parser still looks for "</script" and "<!--": no "<", ">" or "&" may
    # appear raw (a class name is any text); JSON strings read the \\u escapes back.
    data = json.dumps(table, allow_nan=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    csp = (
        f"default-src 'none'; img-src data:; style-src '{_sha256(_STYLE)}'; script-src '{_sha256(_SCRIPT)}'; "
        "base-uri 'none'; form-action 'none'"
    )
    K, _ = fit.shape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>fcinterp report: {_esc(head)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>fcinterp report: {_esc(head)}</h1>",
        _options(fit, head, seconds),
        "<h2>Is the head ALD-like?</h2>",
        _verdict(fit, summary),
        '<p class="note">Per class row (all weights, signed): \u0394AIC = AIC of the normal (or the '
        "symmetric Laplace) minus AIC of the ALD, positive where the ALD is preferred; KS: Kolmogorov-Smirnov "
        "distance of the row to its fitted ALD (its p-value is conservative: the parameters come from the "
        "same row). Null heads draw every row from that row's own normal, Laplace or fitted ALD and are "
        "fitted with the same options: Algorithm 1's R\u00b2 means something only where it differs from "
        "theirs.</p>",
        _summary_table(fit, summary),
        '<div class="figures">' + "".join(_img(f) for f in overview) + "</div>",
        "<h2>Every class</h2>",
        f'<input type="search" id="{SEARCH_ID}" placeholder="search by class name or index" '
        f'aria-label="search classes"> <span id="class-count">{K} classes</span>',
        '<p class="note">Click a column header to sort by it (again: the other way).</p>',
        f'<div class="scroll"><table id="{TABLE_ID}"><thead><tr>'
        + "".join(f"<th>{_esc(c['label'])}</th>" for c in table["columns"])
        + "</tr></thead><tbody></tbody></table></div>",
    ]
    if panels:
        parts.append("<h2>Chosen classes</h2>")
        if fits_figure is not None:
            parts.append('<div class="figures">' + _img(fits_figure) + "</div>")
        parts += [_class_panel(fit, p) for p in panels]
    if explanation is not None:
        figure, sentence = explanation
        parts += ["<h2>What the neurons of each node see</h2>", f"<p>{sentence}</p>", _img(figure)]
    parts.append("<h2>Files</h2><ul>")
    parts += [f'<li><a href="{_esc(name)}">{_esc(name)}</a>: {_esc(what)}</li>' for name, what in files]
    parts.append("</ul>")
    parts.append(f'<script type="application/json" id="{DATA_ID}">{data}</script>')
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)
