"""``fit()``: validate, open the head, pick a backend, fit in row blocks, assemble a ``HeadFit``."""

from __future__ import annotations

import dataclasses
import os

import torch

from .backends import registry
from .classes import config_class_names, resolve_class_names
from .config import DEFAULT_BACKEND, DEFAULT_MAX_MEMORY, DEFAULT_NULL_SEED, FitConfig, check_int
from .devices import parse_device
from .diagnostics import check_fit, check_orientation, logger
from .heads.find import open_head
from .heads.names import is_embedding_name
from .heads.source import HeadSource, check_block
from .heads.stream import iter_blocks, staging_bytes_per_element
from .nulls import NullSource, check_null_kinds
from .progress import progress_bar
from .result import HeadFit, RowFit

__all__ = ["fit", "plan_fit", "FitPlan", "settle_ambiguous"]


def fit(
    W,
    *,
    backend: str = DEFAULT_BACKEND,
    tree: str = FitConfig.tree,
    root: str = FitConfig.root,
    min_size: int = FitConfig.min_size,
    depth: int | None = FitConfig.depth,
    grid: str = FitConfig.grid,
    name: str | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
    device: str | torch.device | None = None,
    class_names=None,
    null: str | tuple[str, ...] | list[str] | None = None,
    null_seed: int = DEFAULT_NULL_SEED,
) -> HeadFit:
    """Fit the ALD model and the split tree of every class row of a classifier head.

    Args:
        W: the head: a (K, D) or (K, D, 1, 1) tensor or numpy array (float16, bfloat16, float32 or
            float64, any device, any strides), an ``nn.Linear`` / conv 1x1 module, a model (its head
            is found by ``head_weight``), or a ``.safetensors`` / ``.pth`` / ``.npy`` path, a
            Hugging Face folder or a sharded checkpoint's ``*.index.json`` (read a block of rows at
            a time: memory stays within ``max_memory`` whatever the size of the file).
        backend: ``"auto"`` (fastest available for the fitting device), ``"reference"``,
            ``"torch"``, ``"cpu"`` or ``"triton"``.
        tree: ``"chain"`` (only ``+ -> ++ -> ...`` and ``- -> -- -> ...``) or ``"full"``.
        root: ``"zero"`` (split at 0, Algorithm 1) or ``"mean"`` (split at the row mean).
        min_size: split a node only when it has at least this many members.
        depth: deepest level (None: no limit for chains, up to 64; required, <= 10, for full trees).
        grid: ``"paper"`` (x_i = i / L) or ``"linspace"`` (x_i = i / (L - 1)).
        name: which tensor or submodule holds the head (files and models; see ``head_weight``).
        max_memory: bytes of working memory for one block of rows, the backend's scratch space
            and the read-ahead buffers together (default ``config.DEFAULT_MAX_MEMORY``, 512 MiB);
            less than one row needs raises ``ValueError`` giving the smallest that works.
        progress: show a progress bar in rows/s (None: on a terminal, for fits lasting over a
            second; True: always; False: never).
        device: where the blocks are fitted (beyond the signature in docs/spec.md section 6). None: on the head's own
            device for tensors and modules; for files (which have no device), on the current CUDA
            device when CUDA is available and the backend runs there, else on the CPU. Results stay
            on the head's device (the CPU for files) either way.
        class_names: the K class names (``fit.class_names``, used by tables, reports and lookups
            by name): a list of str, a ``{index: name}`` mapping, a text file with one name a line,
            an ImageNet subset name (``"imagenet-1k"``) or torchvision weights (see
            ``classes.resolve_class_names``). None: the names the head carries (a Hugging Face
            ``id2label``, torchvision's or timm's ImageNet names; ``fcinterp_fast.classes``).
        null: null heads to fit beside the head with the same options (docs/spec.md section 7):
            None, or kinds among ``"normal"``, ``"laplace"``, ``"ald"`` (see ``null_head``). Each is
            drawn block by block as the head is read (a file head's nulls are streamed too).
        null_seed: base seed of the null heads (an int >= 0); the same seed gives the same nulls
            whatever the block size or device.

    Returns:
        HeadFit with (K, N) node statistics, the per-class ALD fit and goodness of fit, masks and
        tables; ``fit.null[kind]`` holds the HeadFit of each null head. W itself is never modified.

    Example:
        >>> import torch, fcinterp_fast
        >>> fit = fcinterp_fast.fit(torch.randn(10, 64), tree="full", depth=2)
        >>> fit.nodes
        ['+', '-', '++', '+-', '-+', '--']
        >>> big = fcinterp_fast.fit("model.safetensors", name="lm_head.weight",
        ...                         max_memory=2**30, device="cuda")  # doctest: +SKIP
    """
    kinds = check_null_kinds(null)
    null_seed = check_int("null_seed", null_seed, 0, 2**63 - 1)
    plan = plan_fit(
        W,
        backend=backend,
        tree=tree,
        root=root,
        min_size=min_size,
        depth=depth,
        grid=grid,
        name=name,
        max_memory=max_memory,
        device=device,
        class_names=class_names,
    )
    result = plan.head_fit(plan.fit_rows(0, plan.source.shape[0], progress=progress))
    for kind in kinds:
        null_plan = dataclasses.replace(plan, source=NullSource(plan.source, kind, null_seed))
        rows = null_plan.fit_rows(0, plan.source.shape[0], progress=progress, desc=f"null {kind} head")
        result.null[kind] = null_plan.head_fit(rows, check=False)
    if kinds:
        result.null_seed = null_seed
    return result


@dataclasses.dataclass
class FitPlan:
    """What ``fit`` settles before reading any weight; ``distributed.fit_sharded`` shares it.

    Attributes:
        source: the head, read in row blocks; class_names: K names or None.
        config: the validated options; backend: the registry entry that fits the blocks.
        device: where blocks are fitted; results are kept on ``source.device``.
        block_rows: rows per block, from the memory budget.
        row_bytes: working memory one row takes (the smallest ``max_memory`` that fits this head).
    """

    source: HeadSource
    class_names: list[str] | None
    config: FitConfig
    backend: registry.Backend
    device: torch.device
    block_rows: int
    row_bytes: int

    def fit_rows(self, start: int, stop: int, progress: bool | None = None, desc: str | None = None) -> RowFit:
        """Fit rows ``start:stop`` block by block; (stop - start) rows on ``source.device``.

        The results are allocated once, when the first block is fitted, and each block's are
        copied in: memory holds the results, one block and the read-ahead buffers, never a list of
        block results and their concatenation too.
        """
        cfg, results = self.config, None
        desc = desc or f"fit [{self.backend.name} on {self.device.type}]"
        with progress_bar(stop - start, progress, desc) as bar:
            for first, block in iter_blocks(self.source, start, stop, self.block_rows, self.device):
                check_block(block, first)
                part = _trim(settle_ambiguous(block, self.backend.fit_rows(block, cfg), cfg), cfg)
                if results is None:
                    results = RowFit.empty(stop - start, part.columns, self.source.device)
                results.put_rows(first - start, part)
                del part  # before the next block is fitted
                bar.update(block.shape[0])
        if results is None:  # an empty shard of a distributed fit
            return _trim(RowFit.empty(0, cfg.n_columns, self.source.device), cfg)
        return results

    def head_fit(self, rows: RowFit, check: bool = True) -> HeadFit:
        """The ``HeadFit`` of all K rows fitted under this plan; ``check``: warn about degenerate rows
        (``diagnostics.check_fit``; off for null heads, whose rows repeat the head's)."""
        nodes = self.config.nodes[: rows.columns]
        fit = HeadFit(rows, nodes, self.config, self.source, backend=self.backend.name, class_names=self.class_names)
        if check:
            check_fit(fit)
        return fit


def plan_fit(
    W,
    *,
    backend: str = DEFAULT_BACKEND,
    tree: str = FitConfig.tree,
    root: str = FitConfig.root,
    min_size: int = FitConfig.min_size,
    depth: int | None = FitConfig.depth,
    grid: str = FitConfig.grid,
    name: str | None = None,
    max_memory: int | None = None,
    device: str | torch.device | None = None,
    class_names=None,
) -> FitPlan:
    """Validate the options, open the head and choose backend, device and block size (see ``fit``)."""
    cfg = FitConfig(tree=tree, root=root, grid=grid, min_size=min_size, depth=depth)
    if max_memory is not None:
        max_memory = check_int("max_memory", max_memory, 1, None)
    names: list[str] | None
    source, found_names = open_head(W, name=name, with_names=class_names is None)
    K, D = source.shape
    if class_names is not None:
        names = resolve_class_names(class_names, K)
    elif isinstance(W, (str, os.PathLike)):
        names = config_class_names(W, K)
    else:
        names = found_names
    head_name: str | None = getattr(source, "name", None) or name
    check_orientation((K, D), head_name, head_name is not None and is_embedding_name(head_name))
    where = _fitting_device(device, source, backend)
    chosen = registry.resolve(backend, where)
    row_bytes = D * (chosen.bytes_per_element + staging_bytes_per_element(source, where))
    budget = max_memory or DEFAULT_MAX_MEMORY
    if row_bytes > budget:
        raise ValueError(
            f"max_memory={budget} bytes{' (the default)' if max_memory is None else ''} cannot hold one row of "
            f"this head: a row of {D} {source.dtype} weights needs {row_bytes} bytes on backend "
            f"{chosen.name!r} ({where.type}); pass max_memory={row_bytes} or more"
        )
    block_rows = budget // row_bytes
    logger.info(
        "fitting a %d x %d %s head (%s) with backend %s on %s, %d rows per block",
        K,
        D,
        str(source.dtype).replace("torch.", ""),
        getattr(source, "path", None) or type(source).__name__,
        chosen.name,
        where,
        block_rows,
    )
    return FitPlan(source, names, cfg, chosen, where, block_rows, row_bytes)


def settle_ambiguous(block: torch.Tensor, part: RowFit, cfg: FitConfig) -> RowFit:
    """Recompute on an exact CPU backend the rows a fast backend could not decide (docs/spec.md section 2)."""
    rows = part.ambiguous.nonzero().flatten()
    if rows.numel():
        exact = registry.exact_backend().fit_rows(block[rows.to(block.device)].cpu(), cfg)
        part.assign_rows(rows, exact.pad_columns(part.columns).keep_columns(part.columns))
    return part


def _trim(part: RowFit, cfg: FitConfig) -> RowFit:
    """Chains without a depth keep the levels some row reached, each level whole (its "+" and
    "-" node, so that every node of a kept level can be named); otherwise every column."""
    if cfg.tree == "chain" and cfg.depth is None:
        levels = max(1, -(-part.deepest_column() // 2))  # at least the root split "+", "-"
        kept = part.keep_columns(2 * levels)
        # Copy out of the views: a block's 128 chain columns (7 KB a row) must not outlive it.
        return kept.map(lambda _, t: t.contiguous())
    return part


def _fitting_device(device, source: HeadSource, backend: str) -> torch.device:
    if device is None:
        if not source.on_disk:
            return source.device
        # A file has no device of its own: use the GPU when there is one the backend can use.
        on_gpu = torch.cuda.is_available() and (backend == "auto" or "cuda" in registry.get_backend(backend).devices)
        device = "cuda" if on_gpu else "cpu"
    return parse_device(device)
