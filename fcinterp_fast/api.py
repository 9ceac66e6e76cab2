"""``fit()``: validate, open the head, pick a backend, fit in row blocks, assemble a ``HeadFit``."""
from __future__ import annotations

import os
import sys

import torch

from ._config import FitConfig
from .backends import registry
from .backends.registry import RowFit
from .result import HeadFit
from .source import HeadSource, check_block

__all__ = ["fit", "DEFAULT_MAX_MEMORY"]

#: Working-memory budget of one row block when ``max_memory`` is not given (bytes).
DEFAULT_MAX_MEMORY = 512 * 2**20


def fit(
    W,
    *,
    backend: str = "auto",
    tree: str = "chain",
    root: str = "zero",
    min_size: int = 20,
    depth: int | None = None,
    grid: str = "paper",
    name: str | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> HeadFit:
    """Fit the ALD model and the split tree of every class row of a classifier head.

    Args:
        W: the head: a (K, D) or (K, D, 1, 1) tensor or numpy array (float16, bfloat16, float32 or
            float64, any device, any strides), an ``nn.Linear`` / conv 1x1 module, a model (its head
            is found by ``head_weight``), or a ``.safetensors`` / ``.pth`` path.
        backend: ``"auto"`` (fastest available for W's device), ``"reference"``, ``"torch"``,
            ``"cpu"`` or ``"triton"``.
        tree: ``"chain"`` (only ``+ -> ++ -> ...`` and ``- -> -- -> ...``) or ``"full"``.
        root: ``"zero"`` (split at 0, Algorithm 1) or ``"mean"`` (split at the row mean).
        min_size: split a node only when it has at least this many members.
        depth: deepest level (None: no limit for chains, up to 64; required, <= 10, for full trees).
        grid: ``"paper"`` (x_i = i / L) or ``"linspace"`` (x_i = i / (L - 1)).
        name: which tensor or submodule holds the head (files and models; see ``head_weight``).
        max_memory: working-memory budget in bytes for one block of rows (default 512 MiB).
        progress: show a progress bar (None: only on a terminal for heads of 10M+ weights).

    Returns:
        HeadFit with (K, N) node statistics, the per-class ALD fit, masks and tables. Tensors are
        on W's device. W itself is never modified.

    Example:
        >>> import torch, fcinterp_fast
        >>> fit = fcinterp_fast.fit(torch.randn(10, 64), tree="full", depth=2)
        >>> fit.nodes
        ['+', '-', '++', '+-', '-+', '--']
    """
    cfg = FitConfig(tree=tree, root=root, grid=grid, min_size=min_size, depth=depth)
    if max_memory is not None and (not isinstance(max_memory, int) or max_memory <= 0):
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    source, class_names = _open(W, name)
    chosen = registry.resolve(backend, source.device)
    K, D = source.shape
    block_rows = _block_rows(D, chosen.bytes_per_element, max_memory or DEFAULT_MAX_MEMORY)

    parts = []
    with _progress_bar(K, D, progress) as bar:
        for start in range(0, K, block_rows):
            stop = min(start + block_rows, K)
            block = source.rows(start, stop)
            check_block(block, start)
            part = settle_ambiguous(block, chosen.fit_rows(block, cfg), cfg)
            parts.append(part.keep_columns(_used_columns(part, cfg)))
            bar.update(stop - start)
    rows = RowFit.cat(parts)
    nodes = cfg.nodes[: rows.columns]
    return HeadFit(rows, nodes, cfg, source, backend=chosen.name, class_names=class_names)


def settle_ambiguous(block: torch.Tensor, part: RowFit, cfg: FitConfig) -> RowFit:
    """Recompute with the exact reference the rows a fast backend could not decide (SPEC 2)."""
    rows = part.ambiguous.nonzero().flatten()
    if rows.numel():
        from .backends import reference

        exact = reference.fit_rows(block[rows.to(block.device)], cfg)
        part.assign_rows(rows, exact.pad_columns(part.columns).keep_columns(part.columns))
    return part


def _used_columns(part: RowFit, cfg: FitConfig) -> int:
    """Chains without a depth keep the levels some row reached, each level whole (its "+" and
    "-" node, so that every node of a kept level can be named); otherwise every column."""
    if cfg.tree == "chain" and cfg.depth is None:
        levels = max(1, -(-part.deepest_column() // 2))  # at least the root split "+", "-"
        return 2 * levels
    return cfg.n_columns


def _block_rows(D: int, bytes_per_element: int, max_memory: int) -> int:
    return max(1, max_memory // (D * bytes_per_element))


def _open(W, name: str | None) -> tuple[HeadSource, list[str] | None]:
    from .heads import open_head

    return open_head(W, name=name)


class _NoBar:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress_bar(K: int, D: int, progress: bool | None):
    if progress is None:
        progress = K * D >= 10_000_000 and sys.stderr.isatty() and not os.environ.get("CI")
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=K, unit="rows", desc="fit", unit_scale=True, leave=False)
