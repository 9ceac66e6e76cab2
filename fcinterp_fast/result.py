"""What a fit returns: ``RowFit`` (one block of rows, from a backend) and ``HeadFit`` (a whole head,
with masks and tables; docs/spec.md section 6)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ._deps import require
from ._version import __version__
from .classes import resolve_class
from .config import FitConfig
from .diagnostics import logger
from .gof import GOF_FIELDS, GofFit
from .heads.find import open_head
from .heads.saved import DetachedSource, VerifiedSource, row_crc32
from .heads.source import HeadSource
from .progress import progress_bar

__all__ = ["RowFit", "NODE_FIELDS", "ALD_FIELDS", "GOF_FIELDS", "HeadFit", "AldFit", "derived_columns", "SAVE_FORMAT"]

# Rows of the head read at a time when building masks or tables.
_BLOCK_ROWS = 4096
#: Version of the file layout ``HeadFit.save`` writes; ``HeadFit.load`` refuses later ones.
SAVE_FORMAT = 1


NODE_FIELDS = ("count", "mean", "lo", "hi", "slope", "intercept", "r2")
ALD_FIELDS = ("loc", "scale", "kappa", "loglik")


@dataclasses.dataclass
class RowFit:
    """Statistics of a block of R rows over the ``N = cfg.n_columns`` node columns.

    Attributes:
        count: (R, N) int64, members of each node (0 where the node is absent).
        mean, lo, hi: (R, N) float64, the node's mean (its split threshold), min and max value.
        slope, intercept, r2: (R, N) float64, the Algorithm 1 line fit of the node (docs/spec.md section 3).
        loc, scale, kappa, loglik: (R,) float64, the row's ALD maximum likelihood fit (docs/spec.md section 4).
        loglik_laplace, loglik_normal, ks: (R,) float64, the row's goodness of fit (``gof.GOF_FIELDS``,
            docs/spec.md section 7), computed in the same pass.
        ambiguous: (R,) bool, rows where some element lies so close to a split threshold that the
            float64 rounding bound of a fast summation cannot decide its side. ``fit`` recomputes
            those rows with ``exact_backend()`` (``cpu`` when built, else ``reference``), so every
            backend agrees on every membership. Backends that decide exactly leave it all False.
    """

    count: torch.Tensor
    mean: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    slope: torch.Tensor
    intercept: torch.Tensor
    r2: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    kappa: torch.Tensor
    loglik: torch.Tensor
    loglik_laplace: torch.Tensor
    loglik_normal: torch.Tensor
    ks: torch.Tensor
    ambiguous: torch.Tensor

    @classmethod
    def empty(cls, rows: int, columns: int, device=None) -> RowFit:
        """Every node absent (count 0, statistics NaN), ALD and goodness of fit NaN, nothing ambiguous."""
        nan = dict(dtype=torch.float64, device=device)
        return cls(
            count=torch.zeros(rows, columns, dtype=torch.int64, device=device),
            **{f: torch.full((rows, columns), float("nan"), **nan) for f in NODE_FIELDS[1:]},
            **{f: torch.full((rows,), float("nan"), **nan) for f in (*ALD_FIELDS, *GOF_FIELDS)},
            ambiguous=torch.zeros(rows, dtype=torch.bool, device=device),
        )

    @property
    def rows(self) -> int:
        return self.count.shape[0]

    @property
    def columns(self) -> int:
        return self.count.shape[1]

    def fields(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> RowFit:
        return RowFit(**{name: fn(name, t) for name, t in self.fields().items()})

    def to(self, device) -> RowFit:
        return self.map(lambda _, t: t.to(device))

    def keep_columns(self, columns: int) -> RowFit:
        """The first ``columns`` node columns; the rest must be absent (count 0)."""
        return self.map(lambda name, t: t[:, :columns] if name in NODE_FIELDS else t)

    def pad_columns(self, columns: int) -> RowFit:
        """Append absent node columns up to ``columns``."""
        extra = columns - self.columns
        if extra <= 0:
            return self
        pad = RowFit.empty(self.rows, extra, self.count.device)
        return self.map(lambda name, t: torch.cat([t, getattr(pad, name)], dim=1) if name in NODE_FIELDS else t)

    def deepest_column(self) -> int:
        """Number of leading columns holding any present node (for trimming chain levels)."""
        present = (self.count > 0).any(dim=0).nonzero()
        return int(present.max()) + 1 if present.numel() else 0

    def assign_rows(self, rows: torch.Tensor, other: RowFit) -> None:
        """Overwrite ``rows`` (LongTensor) with ``other``'s rows, in place."""
        for name, t in self.fields().items():
            t[rows] = getattr(other, name).to(t.device)

    def put_rows(self, first: int, part: RowFit) -> None:
        """Copy ``part`` into rows ``first:first + part.rows``, in place. Node columns beyond
        ``part``'s stay as they are (absent); a ``part`` with more columns widens this fit first,
        one field at a time (so widening holds one field twice, never the whole fit)."""
        if part.columns > self.columns:
            extra = part.columns - self.columns
            pad = RowFit.empty(1, extra, self.count.device)
            for name in NODE_FIELDS:
                old = getattr(self, name)
                wide = torch.empty((old.shape[0], part.columns), dtype=old.dtype, device=old.device)
                wide[:, : old.shape[1]] = old
                wide[:, old.shape[1] :] = getattr(pad, name)
                del old
                setattr(self, name, wide)
        rows = slice(first, first + part.rows)
        for name, values in part.fields().items():
            target = getattr(self, name)[rows]
            (target[:, : part.columns] if name in NODE_FIELDS else target).copy_(values)


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
        gof: per-class goodness of fit of the ALD against the Laplace and the normal (``GofFit``,
            docs/spec.md section 7).
        null: ``{kind: HeadFit}``, fits of null heads with the same options (``fit(null=...)``;
            empty unless asked for).
        config: the ``FitConfig`` used; ``backend``: the backend that ran.
        class_names: optional list of K names, used by tables and class lookup (where they come
            from: ``fcinterp_fast.classes``).
        source: the head, read again by ``mask`` / ``members``; ``source_description`` says what
            it was (kind, shape, dtype, file and tensor name).

    ``save(path)`` writes the fit to one ``.npz`` file and ``HeadFit.load(path, head=...)`` reads
    it back, every array bit for bit.

    Membership of node n in class k is exactly ``lo[k, n] <= W[k, j] <= hi[k, n]`` (docs/spec.md section 2).
    ``mask`` and ``members`` rebuild it from the head's rows, read again from ``source``; a head
    changed since the fit (modified in place, a file replaced or deleted) raises instead of giving
    other neurons than the fit found: the source checks its fingerprint, and the node sizes rebuilt
    must equal ``count``.

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
        source.check_unchanged()  # the head did not change while it was being fitted
        self.nodes = list(nodes)
        self.config = config
        self.backend = backend
        self.source = source
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names is not None and len(self.class_names) != source.shape[0]:
            raise ValueError(f"{len(self.class_names)} class names for a head of {source.shape[0]} rows (classes)")
        self.count, self.mean, self.lo, self.hi = rows.count, rows.mean, rows.lo, rows.hi
        self.slope, self.intercept, self.r2 = rows.slope, rows.intercept, rows.r2
        self.ald = AldFit(loc=rows.loc, scale=rows.scale, kappa=rows.kappa, loglik=rows.loglik)
        self.gof = GofFit.from_rows(
            source.shape[1], rows.loglik, rows.scale, rows.kappa, rows.loglik_laplace, rows.loglik_normal, rows.ks
        )
        self.null: dict[str, HeadFit] = {}
        self.null_seed: int | None = None  # the base seed of ``null`` (set by ``fit``)
        self._source_description: dict | None = None  # a loaded fit's, as saved

    # ----------------------------------------------------------------------------- shape
    @property
    def shape(self) -> tuple[int, int]:
        """(K, D) of the head."""
        K, D = self.source.shape
        return K, D

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
        mask = torch.cat(blocks)
        self._check_sizes(node, mask.sum(dim=1), self.count.gather(1, columns[:, None])[:, 0])
        return mask

    def members(self, k: int | str, node: str) -> torch.Tensor:
        """Indices j of the weights of class ``k`` in ``node`` (LongTensor, ascending)."""
        k = self.class_index(k)
        j = self.column(node, k) if node in ("+*", "-*") else self.column(node)
        row = self.source.rows(k, k + 1)[0].to(self.lo.device, torch.float64)
        inside = (row >= self.lo[k, j]) & (row <= self.hi[k, j])
        members = inside.nonzero().flatten()
        self._check_sizes(node, torch.tensor([members.numel()]), self.count[k, j].reshape(1), first_class=k)
        return members

    def _check_sizes(self, node: str, found: torch.Tensor, fitted: torch.Tensor, first_class: int = 0) -> None:
        """Raise if membership rebuilt from the rows read now does not have the fit's node sizes.

        ``found`` and ``fitted``: (R,) sizes of ``node`` in classes ``first_class`` .. + R. The
        source's fingerprint misses changes made behind the tensor's version counter (``W.data``);
        any change that moves a weight across a node's bounds shows up here.
        """
        differ = (found.to(fitted.device) != fitted).nonzero()
        if differ.numel():
            i = int(differ[0])
            raise ValueError(
                f"node {node!r} of class {first_class + i} has {int(found[i])} members in the head as read "
                f"now, but had {int(fitted[i])} when it was fitted: the head changed after the fit; fit it again"
            )

    # --------------------------------------------------------------------------- tables
    TABLE_COLUMNS = (
        "class",
        "class_name",
        "node",
        "level",
        "count",
        "mean",
        "lo",
        "hi",
        "slope",
        "intercept",
        "r2",
        "k_est",
        "lam_est",
        "mean_est",
        "ald_loc",
        "ald_scale",
        "ald_kappa",
        "ald_lambda",
        "ald_loglik",
    )

    def iter_table(self, block_rows: int = _BLOCK_ROWS) -> Iterator[dict[str, list]]:
        """Long-format table (one row per class and present node) in blocks of classes."""
        for block in self._table_blocks(block_rows):
            yield {
                name: values.tolist() if isinstance(values, np.ndarray) else values for name, values in block.items()
            }

    def _table_blocks(self, block_rows: int) -> Iterator[dict[str, np.ndarray | list]]:
        """``iter_table``'s blocks with numeric columns as numpy arrays (strings stay lists)."""
        if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
            raise ValueError(f"block_rows must be a positive int, got {block_rows!r}")
        ald = {
            "ald_loc": self.ald.loc,
            "ald_scale": self.ald.scale,
            "ald_kappa": self.ald.kappa,
            "ald_lambda": self.ald.lam,
            "ald_loglik": self.ald.loglik,
        }
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
        pd = require("pandas", "HeadFit.to_pandas")
        frames = [pd.DataFrame(block, columns=self.TABLE_COLUMNS) for block in self._table_blocks(_BLOCK_ROWS)]
        return pd.concat(frames, ignore_index=True)

    def summary(self):
        """The fit against its null heads (``fit(null=...)``) as a ``pandas.DataFrame``.

        One row per (quantity, node, head): the median and quartiles over classes of R^2 and slope
        per node, the depth reached per side, kappa, the KS distance and the AIC differences
        (with ``share``: the share of classes where the ALD beats the normal / the Laplace), for
        the trained head and each null head (see ``fcinterp_fast.summary`` for every column).

        Example:
            >>> fit = fcinterp_fast.fit(model, null=("normal", "ald"))             # doctest: +SKIP
            >>> s = fit.summary()                                                   # doctest: +SKIP
            >>> s[s.quantity == "r2"].pivot(index="node", columns="head", values="median")  # doctest: +SKIP
        """
        from .summary import SUMMARY_COLUMNS, summary_rows

        pd = require("pandas", "HeadFit.summary")
        return pd.DataFrame(summary_rows(self), columns=list(SUMMARY_COLUMNS))

    def to_csv(self, path: str | os.PathLike, progress: bool | None = None) -> None:
        """Write the long-format table to ``path``, one block of classes at a time.

        ``progress``: a bar counting classes (None: on a terminal, once writing takes a second).
        """
        counting = progress_bar(len(self), progress, f"write {Path(path).name}", "classes")
        with open(path, "w", newline="") as f, counting as bar:
            writer = csv.writer(f)
            writer.writerow(self.TABLE_COLUMNS)
            for start, block in zip(range(0, len(self), _BLOCK_ROWS), self.iter_table(_BLOCK_ROWS), strict=True):
                writer.writerows(zip(*(block[c] for c in self.TABLE_COLUMNS), strict=True))
                bar.update(min(_BLOCK_ROWS, len(self) - start))

    def to_parquet(self, path: str | os.PathLike, block_rows: int = _BLOCK_ROWS, progress: bool | None = None) -> None:
        """Write the long-format table to a Parquet file, one row group per block of classes.

        Only one block of the table exists at a time, so millions of classes are written without
        holding the table next to the fit. Needs ``pyarrow`` (``pip install fcinterp-fast[parquet]``).
        ``progress``: a bar counting classes (None: on a terminal, once writing takes a second).
        """
        pa = require("pyarrow", "HeadFit.to_parquet")
        pq = require("pyarrow.parquet", "HeadFit.to_parquet", install="pyarrow")
        types = {
            "class": pa.int64(),
            "class_name": pa.string(),
            "node": pa.string(),
            "level": pa.int64(),
            "count": pa.int64(),
        }
        schema = pa.schema([(name, types.get(name, pa.float64())) for name in self.TABLE_COLUMNS])
        counting = progress_bar(len(self), progress, f"write {Path(path).name}", "classes")
        with pq.ParquetWriter(path, schema) as writer, counting as bar:
            for start, block in zip(range(0, len(self), block_rows), self._table_blocks(block_rows), strict=True):
                writer.write_table(pa.table(block, schema=schema), row_group_size=max(1, len(block["node"])))
                bar.update(min(block_rows, len(self) - start))

    # ---------------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit to one ``.npz`` file that ``HeadFit.load`` reads back unchanged.

        The file holds every statistic (bit for bit; the goodness of fit too, not the null heads'
        fits), the options, the backend, the class names,
        a description of the head (shape, dtype, file and tensor name where it came from) and the
        crc32 of every row of the head, so that a loaded fit checks the head it is given back.
        Numbers only: no pickle, so loading runs no code. The file is written under a temporary
        name and renamed into place (``path`` is the old file or the new one, whole).

        Returns:
            ``path``.
        """
        path = Path(path)
        metadata = {
            "format": SAVE_FORMAT,
            "fcinterp_fast": __version__,
            "nodes": self.nodes,
            "config": dataclasses.asdict(self.config),
            "backend": self.backend,
            "class_names": self.class_names,
            "source": self.source_description,
        }
        arrays = {name: getattr(self, name).cpu().numpy() for name in NODE_FIELDS}
        arrays.update({f"ald_{name}": getattr(self.ald, name).cpu().numpy() for name in ALD_FIELDS})
        arrays.update({f"gof_{name}": getattr(self.gof, name).cpu().numpy() for name in GOF_FIELDS})
        arrays["row_crc32"] = row_crc32(self.source)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(temporary, "wb") as f:
                np.savez(f, metadata=np.array(json.dumps(metadata)), **arrays)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        logger.info("saved the fit of a %d x %d head to %s", *self.shape, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, head=None, *, name: str | None = None) -> HeadFit:
        """The fit that ``HeadFit.save`` wrote to ``path``, on the CPU.

        Args:
            path: the file.
            head: the head the fit was made on (anything ``fit`` takes), for ``mask`` / ``members``
                and the figures that read rows: each row read must have the crc32 saved with the
                fit. None: a fit of a file reopens that file if it is still there (checked the same
                way); otherwise reading rows raises, saying to pass ``head``.
            name: the tensor or submodule of ``head`` (default: the saved tensor name for files).

        Raises:
            ValueError: not a file of ``HeadFit.save``, one written in a later format (upgrade
                fcinterp_fast), or a ``head`` of another shape or dtype than the fitted one.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {key: data[key] for key in data.files}
        except (ValueError, zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path} is not a fit written by HeadFit.save: {error}") from None
        if "metadata" not in stored:
            raise ValueError(f"{path} is not a fit written by HeadFit.save (it has no metadata)")
        try:
            metadata = json.loads(str(stored["metadata"][()]))
            file_format = metadata["format"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a fit written by HeadFit.save (unreadable metadata: {error})") from None
        if not isinstance(file_format, int) or file_format > SAVE_FORMAT:
            raise ValueError(
                f"{path} was written by fcinterp_fast {metadata.get('fcinterp_fast', '?')} in HeadFit format "
                f"{file_format!r}; fcinterp_fast {__version__} reads formats up to {SAVE_FORMAT}: upgrade fcinterp_fast"
            )
        try:
            described = metadata["source"]
            shape = (int(described["shape"][0]), int(described["shape"][1]))
            nodes, crc32 = list(metadata["nodes"]), stored["row_crc32"]
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ValueError(f"{path} is not a fit written by HeadFit.save (missing {error})") from None
        fields = {name: torch.from_numpy(stored[name]) for name in NODE_FIELDS}
        fields.update({name: torch.from_numpy(stored[f"ald_{name}"]) for name in ALD_FIELDS})
        # goodness of fit (docs/spec.md section 7): NaN in files saved before it existed
        missing = np.full(shape[0], np.nan)
        fields.update({name: torch.from_numpy(stored.get(f"gof_{name}", missing)) for name in GOF_FIELDS})
        if (
            any(t.shape != (shape[0], len(nodes)) for n, t in fields.items() if n in NODE_FIELDS)
            or any(t.shape != (shape[0],) for n, t in fields.items() if n in (*ALD_FIELDS, *GOF_FIELDS))
            or crc32.shape != (shape[0],)
        ):
            raise ValueError(f"{path} is corrupt: its arrays do not have the shape of a {shape[0]}-class fit")
        rows = RowFit(**fields, ambiguous=torch.zeros(shape[0], dtype=torch.bool))
        source = _loaded_source(path, described, shape, crc32, head, name)
        fit = cls(
            rows,
            nodes,
            FitConfig(**metadata["config"]),
            source,
            backend=metadata["backend"],
            class_names=metadata["class_names"],
        )
        fit._source_description = described
        logger.info("loaded the fit of a %d x %d head from %s", *shape, path)
        return fit

    @property
    def source_description(self) -> dict:
        """What was fitted: ``{"kind", "shape", "dtype"}`` and, for heads read from a file,
        ``"path"`` and the tensor ``"name"`` (a loaded fit's: as saved)."""
        if self._source_description is not None:
            return dict(self._source_description)
        source = self.source
        described = {
            "kind": type(source).__name__,
            "shape": list(source.shape),
            "dtype": str(source.dtype).replace("torch.", ""),
        }
        for attribute in ("path", "name", "description"):
            value = getattr(source, attribute, None)
            if value is not None:
                described[attribute] = str(value)
        return described


def _loaded_source(path: Path, described: dict, shape: tuple[int, int], crc32: np.ndarray, head, name) -> HeadSource:
    """The head of a loaded fit: ``head`` (or the file it was fitted from) checked row by row
    against the saved checksums, or a ``DetachedSource`` saying how to give it."""
    dtype = getattr(torch, described["dtype"])
    if head is not None:
        if name is None and isinstance(head, (str, os.PathLike)):
            name = described.get("name")
        return _verified(head, name, shape, dtype, crc32, path)
    file = described.get("path")
    why = f"the fit loaded from {path} has thresholds, not weights; masks and members read the head"
    how = f"pass it as HeadFit.load({str(path)!r}, head=...)"
    if file is None:
        return DetachedSource(shape, dtype, crc32, f"{why}: {how}")
    try:
        return _verified(file, name if name is not None else described.get("name"), shape, dtype, crc32, path)
    except (OSError, ValueError, TypeError) as error:  # gone or changed: the tables still load
        return DetachedSource(shape, dtype, crc32, f"{why}, and its file cannot be opened again ({error}): {how}")


def _verified(head, name, shape: tuple[int, int], dtype: torch.dtype, crc32: np.ndarray, path: Path) -> HeadSource:
    opened, _ = open_head(head, name, with_names=False)
    if tuple(opened.shape) != shape or opened.dtype != dtype:
        raise ValueError(
            f"the head given to HeadFit.load is {tuple(opened.shape)} {opened.dtype}, but the fit in {path} "
            f"is of a {shape} {dtype} head"
        )
    return VerifiedSource(opened, crc32, str(path))
