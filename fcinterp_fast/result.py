"""``HeadFit``: everything ``fit`` computes for a head, with masks and tables (SPEC section 6)."""
from __future__ import annotations

import csv
import dataclasses
import operator
import os
import re
from typing import Iterator, Sequence

import numpy as np
import torch

from ._config import FitConfig
from .backends.registry import RowFit
from .source import HeadSource

__all__ = ["HeadFit", "AldFit", "derived_columns", "resolve_class"]

# Rows of the head read at a time when building masks or tables.
_BLOCK_ROWS = 4096


@dataclasses.dataclass
class AldFit:
    """Per-class ALD maximum likelihood fit, scipy's ``laplace_asymmetric`` parametrisation.

    Attributes:
        loc, scale, kappa, loglik: (K,) float64.
    """

    loc: torch.Tensor
    scale: torch.Tensor
    kappa: torch.Tensor
    loglik: torch.Tensor

    @property
    def lam(self) -> torch.Tensor:
        """The paper's lambda = 1 / scale, (K,) float64."""
        return 1 / self.scale


def resolve_class(cls: int | str, n_classes: int, class_names: Sequence[str] | None = None) -> int:
    """Index in ``range(n_classes)`` of a class given by index (any integer: int, numpy or 0-d
    tensor; negative counts from the end) or by (case-insensitive) name; unknown names raise
    ``ValueError`` with the closest names."""
    if isinstance(cls, str):
        if class_names is None:
            raise ValueError(f"class {cls!r} given by name, but this head has no class names; pass its index")
        from .models import find_class

        return find_class(class_names, cls)
    try:
        if isinstance(cls, bool):  # an int to Python, never meant as a class
            raise TypeError
        k = operator.index(cls)
    except TypeError:
        raise TypeError(f"a class is an int index or a name, got {cls!r}") from None
    if not -n_classes <= k < n_classes:
        raise IndexError(f"class index {k} out of range for a head of {n_classes} classes")
    return k % n_classes


def class_from_text(text: str) -> int | str:
    """A class typed on a command line: ``"-3"`` -> -3 (an index), anything else stays a name."""
    return int(text) if re.fullmatch(r"\s*-?\d+\s*", text) else text


def derived_columns(slope: torch.Tensor, intercept: torch.Tensor) -> dict[str, torch.Tensor]:
    """The author's ``fit_exp`` estimates from a line fit (a = slope, b = intercept), NaN where undefined.

    k_est = sqrt(e^b / (a - e^b)), lam_est = a * k_est, mean_est = (1 - k_est^2) / (lam_est * k_est).
    """
    eb = torch.exp(intercept)
    ratio = eb / (slope - eb)
    k_est = torch.where(ratio > 0, torch.sqrt(ratio.clamp(min=0)), float("nan"))
    k_est = torch.where(torch.isfinite(k_est), k_est, float("nan"))
    lam_est = slope * k_est
    denom = lam_est * k_est
    mean_est = torch.where(denom != 0, (1 - k_est**2) / denom, float("nan"))
    return {"k_est": k_est, "lam_est": lam_est, "mean_est": mean_est}


class HeadFit:
    """The fit of every class row of a head.

    Attributes:
        nodes: node names in column order: level by level, ``+`` side first.
        count: (K, N) int64, members of each node, 0 where the node is absent.
        mean, lo, hi: (K, N) float64, node mean (split threshold), min and max; NaN if absent.
        slope, intercept, r2: (K, N) float64, Algorithm 1 line fit of the node's log magnitudes.
        k_est, lam_est, mean_est: (K, N) float64, the author's derived estimates (computed on access).
        ald: per-class ALD maximum likelihood (``AldFit``).
        config: the ``FitConfig`` used; ``backend``: the backend that ran.
        class_names: optional list of K names, used by tables and class lookup.

    Membership of node n in class k is exactly ``lo[k, n] <= W[k, j] <= hi[k, n]`` (SPEC 2).

    Example:
        >>> fit = fcinterp_fast.fit(model)                  # doctest: +SKIP
        >>> fit.r2[:, fit.nodes.index("+")].median()        # doctest: +SKIP
        >>> fit.members(fit.class_index("tricycle"), "+++") # doctest: +SKIP
    """

    def __init__(
        self,
        rows: RowFit,
        nodes: list[str],
        config: FitConfig,
        source: HeadSource,
        backend: str,
        class_names: Sequence[str] | None = None,
    ):
        self.nodes = list(nodes)
        self.config = config
        self.backend = backend
        self.source = source
        self.class_names = list(class_names) if class_names is not None else None
        self.count, self.mean, self.lo, self.hi = rows.count, rows.mean, rows.lo, rows.hi
        self.slope, self.intercept, self.r2 = rows.slope, rows.intercept, rows.r2
        self.ald = AldFit(loc=rows.loc, scale=rows.scale, kappa=rows.kappa, loglik=rows.loglik)

    # ----------------------------------------------------------------------------- shape
    @property
    def shape(self) -> tuple[int, int]:
        """(K, D) of the head."""
        return tuple(self.source.shape)

    def __len__(self) -> int:
        return self.count.shape[0]

    def __repr__(self) -> str:
        K, D = self.shape
        return (
            f"HeadFit(K={K}, D={D}, tree={self.config.tree!r}, root={self.config.root!r}, "
            f"grid={self.config.grid!r}, nodes={len(self.nodes)}, backend={self.backend!r})"
        )

    # --------------------------------------------------------------------- derived values
    @property
    def k_est(self) -> torch.Tensor:
        return derived_columns(self.slope, self.intercept)["k_est"]

    @property
    def lam_est(self) -> torch.Tensor:
        return derived_columns(self.slope, self.intercept)["lam_est"]

    @property
    def mean_est(self) -> torch.Tensor:
        return derived_columns(self.slope, self.intercept)["mean_est"]

    # --------------------------------------------------------------------------- lookup
    def class_index(self, cls: int | str) -> int:
        """Index of a class given by index or (case-insensitive) name (see ``resolve_class``)."""
        return resolve_class(cls, len(self), self.class_names)

    def column(self, node: str, k: int | None = None):
        """Column of ``node``. ``"+*"`` / ``"-*"`` name the deepest node of that chain, which
        differs per class: then the result is a (K,) LongTensor (or an int for one class ``k``)."""
        if node in ("+*", "-*"):
            chain = [j for j, name in enumerate(self.nodes) if name == node[0] * len(name)]
            present = self.count[:, chain] > 0  # (K, levels)
            depth = present.to(torch.int64).cumprod(dim=1).sum(dim=1)  # levels present from the root
            columns = torch.tensor(chain, device=self.count.device)[(depth - 1).clamp(min=0)]
            return int(columns[k]) if k is not None else columns
        if node not in self.nodes:
            raise ValueError(
                f"unknown node {node!r}; this fit has nodes {', '.join(self.nodes[:8])}"
                f"{' ...' if len(self.nodes) > 8 else ''} (and '+*', '-*' for the deepest of a chain)"
            )
        return self.nodes.index(node)

    # ---------------------------------------------------------------------- membership
    def mask(self, node: str) -> torch.Tensor:
        """(K, D) bool: which weights of each class belong to ``node`` (False where absent)."""
        columns = self.column(node)
        if isinstance(columns, int):
            columns = torch.full((len(self),), columns, dtype=torch.int64, device=self.count.device)
        lo = self.lo.gather(1, columns[:, None])
        hi = self.hi.gather(1, columns[:, None])
        blocks = []
        for start in range(0, len(self), _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, len(self))
            rows = self.source.rows(start, stop).to(lo.device, torch.float64)
            blocks.append((rows >= lo[start:stop]) & (rows <= hi[start:stop]))
        return torch.cat(blocks)

    def members(self, k: int | str, node: str) -> torch.Tensor:
        """Indices j of the weights of class ``k`` in ``node`` (LongTensor, ascending)."""
        k = self.class_index(k)
        j = self.column(node, k) if node in ("+*", "-*") else self.column(node)
        row = self.source.rows(k, k + 1)[0].to(self.lo.device, torch.float64)
        inside = (row >= self.lo[k, j]) & (row <= self.hi[k, j])
        return inside.nonzero().flatten()

    # --------------------------------------------------------------------------- tables
    TABLE_COLUMNS = (
        "class", "class_name", "node", "level", "count", "mean", "lo", "hi", "slope", "intercept",
        "r2", "k_est", "lam_est", "mean_est", "ald_loc", "ald_scale", "ald_kappa", "ald_lambda",
        "ald_loglik",
    )  # fmt: skip

    def iter_table(self, block_rows: int = _BLOCK_ROWS) -> Iterator[dict[str, list]]:
        """Long-format table (one row per class and present node) in blocks of classes."""
        for block in self._table_blocks(block_rows):
            yield {name: values.tolist() if isinstance(values, np.ndarray) else values for name, values in block.items()}

    def _table_blocks(self, block_rows: int) -> Iterator[dict[str, np.ndarray | list]]:
        """``iter_table``'s blocks with numeric columns as numpy arrays (strings stay lists)."""
        if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
            raise ValueError(f"block_rows must be a positive int, got {block_rows!r}")
        ald = {
            "ald_loc": self.ald.loc, "ald_scale": self.ald.scale, "ald_kappa": self.ald.kappa,
            "ald_lambda": self.ald.lam, "ald_loglik": self.ald.loglik,
        }  # fmt: skip
        for start in range(0, len(self), block_rows):
            block = slice(start, min(start + block_rows, len(self)))
            fields = {
                name: getattr(self, name)[block].cpu()
                for name in ("count", "mean", "lo", "hi", "slope", "intercept", "r2")
            }
            fields.update(derived_columns(fields["slope"], fields["intercept"]))
            k_idx, n_idx = (fields["count"] > 0).nonzero(as_tuple=True)
            node_values = {name: t[k_idx, n_idx].numpy() for name, t in fields.items()}
            classes = (k_idx + start).numpy()
            names = [self.nodes[n] for n in n_idx.tolist()]
            yield {
                "class": classes,
                "class_name": [self.class_names[k] for k in classes] if self.class_names else [""] * len(classes),
                "node": names,
                "level": np.fromiter(map(len, names), dtype=np.int64, count=len(names)),
                **node_values,
                **{name: t[block].cpu()[k_idx].numpy() for name, t in ald.items()},
            }

    def to_pandas(self):
        """The long-format table as a ``pandas.DataFrame`` (columns ``TABLE_COLUMNS``)."""
        import pandas as pd

        frames = [pd.DataFrame(block, columns=self.TABLE_COLUMNS) for block in self._table_blocks(_BLOCK_ROWS)]
        return pd.concat(frames, ignore_index=True)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the long-format table to ``path``, one block of classes at a time."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.TABLE_COLUMNS)
            for block in self.iter_table():
                writer.writerows(zip(*(block[c] for c in self.TABLE_COLUMNS)))

    def to_parquet(self, path: str | os.PathLike, block_rows: int = _BLOCK_ROWS) -> None:
        """Write the long-format table to a Parquet file, one row group per block of classes.

        Only one block of the table exists at a time, so millions of classes are written without
        holding the table next to the fit. Needs ``pyarrow`` (``pip install fcinterp-fast[parquet]``).
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as error:
            raise ImportError("HeadFit.to_parquet needs pyarrow: pip install pyarrow (or fcinterp-fast[parquet])") from error
        types = {"class": pa.int64(), "class_name": pa.string(), "node": pa.string(), "level": pa.int64(), "count": pa.int64()}
        schema = pa.schema([(name, types.get(name, pa.float64())) for name in self.TABLE_COLUMNS])
        with pq.ParquetWriter(path, schema) as writer:
            for block in self._table_blocks(block_rows):
                writer.write_table(pa.table(block, schema=schema), row_group_size=max(1, len(block["node"])))
