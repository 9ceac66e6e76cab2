"""What ``HeadFit.summary()`` returns: a fit against its null heads, in numbers a person can read.

One row per (quantity, node, head); ``head`` is ``"trained"`` (the fit itself) or ``"null <kind>"``
for each null head fitted beside it (``fit(null=...)``). Quantities:

* ``r2``, ``slope``: Algorithm 1's R^2 and slope of each node, over the classes that have it;
* ``depth``: levels reached on each side (node ``"+"`` / ``"-"``): for chains the length of the
  chain, for full trees the deepest level holding a node of that side;
* ``kappa``: the ALD asymmetry of each class (node ``""``); ``ks``: its KS distance to the row;
* ``daic_normal``, ``daic_laplace``, ``lr_asym``: goodness of fit (docs/spec.md section 7);
  ``share`` is the share of classes where the ALD is preferred by AIC (daic > 0) or, for
  ``lr_asym``, where the Laplace is rejected at 5% (lr_asym > chi2(1) 95% quantile, 3.841).

Columns ``SUMMARY_COLUMNS``: the number of classes with a value (NaN left out), median, 25% and 75%
quantiles, and ``share`` (NaN where it means nothing). This module reads a ``HeadFit`` by its
attributes and imports nothing of the package above ``config`` (``result`` imports it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["SUMMARY_COLUMNS", "summary_rows", "heads_of", "depth_reached"]

SUMMARY_COLUMNS = ("quantity", "node", "head", "classes", "median", "q25", "q75", "share")

#: chi2(1) 95% quantile: lr_asym above it rejects the symmetric Laplace at 5%.
CHI2_1_95 = 3.841458820694124


def heads_of(fit) -> list[tuple[str, Any]]:
    """``[("trained", fit), ("null normal", fit.null["normal"]), ...]``."""
    return [("trained", fit), *((f"null {kind}", null) for kind, null in fit.null.items())]


def depth_reached(fit, side: str) -> torch.Tensor:
    """(K,) int64: levels of ``side`` (``"+"`` or ``"-"``) present in each class (0: none)."""
    count = fit.count.cpu()
    if fit.config.tree == "chain":  # the chain is contiguous from the root: its length
        chain = [j for j, node in enumerate(fit.nodes) if node == side * len(node)]
        return (count[:, chain] > 0).to(torch.int64).cumprod(dim=1).sum(dim=1)
    levels = torch.zeros(len(fit), dtype=torch.int64)  # a full tree: its deepest node present
    for j, node in enumerate(fit.nodes):
        if node[0] == side:
            present = count[:, j] > 0
            levels = torch.where(present, torch.clamp(levels, min=len(node)), levels)
    return levels


def _row(quantity: str, node: str, head: str, values, share: float = math.nan) -> dict:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size:
        q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    else:
        q25 = median = q75 = math.nan
    return dict(
        quantity=quantity,
        node=node,
        head=head,
        classes=int(values.size),
        median=float(median),
        q25=float(q25),
        q75=float(q75),
        share=share,
    )


def summary_rows(fit) -> list[dict]:
    """The rows of ``HeadFit.summary()`` as dicts with keys ``SUMMARY_COLUMNS``."""
    heads = heads_of(fit)
    nodes = list(dict.fromkeys(n for _, h in heads for n in h.nodes))
    nodes.sort(key=len)  # level by level; within a level the trained fit's order (stable sort)
    rows = []
    for quantity in ("r2", "slope"):
        for node in nodes:
            for head, h in heads:
                if node not in h.nodes:
                    continue
                j = h.nodes.index(node)
                present = h.count[:, j].cpu() > 0
                if bool(present.any()):
                    rows.append(_row(quantity, node, head, getattr(h, quantity)[:, j].cpu()[present].numpy()))
    for side in "+-":
        for head, h in heads:
            rows.append(_row("depth", side, head, depth_reached(h, side).numpy()))
    for head, h in heads:
        rows.append(_row("kappa", "", head, h.ald.kappa.cpu().numpy()))
        gof = h.gof.columns()
        rows.append(_row("ks", "", head, gof["ks"]))
        for name in ("daic_normal", "daic_laplace"):
            rows.append(_row(name, "", head, gof[name], share=_share(gof[name], 0.0)))
        rows.append(_row("lr_asym", "", head, gof["lr_asym"], share=_share(gof["lr_asym"], CHI2_1_95)))
    return rows


def _share(values: np.ndarray, above: float) -> float:
    """Share of the non-NaN ``values`` that are > ``above`` (NaN when there are none)."""
    values = values[~np.isnan(values)]
    return float((values > above).mean()) if values.size else math.nan
