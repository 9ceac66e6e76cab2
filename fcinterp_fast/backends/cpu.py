"""``backend="cpu"``: docs/spec.md sections 2-4 in C++ (``csrc/``), rows in parallel with OpenMP.

The extension ``fcinterp_fast._cpu`` reads the head in place (float16, bfloat16, float32 or float64,
any strides: no upcast copy), and per row sorts the keys of its bit patterns (rows of up to 16 KiB by a
bitonic sorting network on AVX2 and better, others by a radix sort; long
float16 / bfloat16 rows are counted instead: docs/spec.md, "Counting fits of 16-bit heads"), walks the
whole split tree, fits the ALD and sweeps the sorted row for its goodness of fit (docs/spec.md
section 7, ``csrc/gof.h``) in one pass over per-thread scratch, with the GIL released. Split
thresholds are decided exactly (an exact sum is taken whenever the fast sum's error bound could
change a side), so ``RowFit.ambiguous`` is always False. See ``csrc/fit.h`` for the algorithm.

The extension is optional: if it was not built or cannot be imported, this backend reports why
(``fcinterp_fast.backends()``) and ``backend="auto"`` falls back to ``torch``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import FitConfig
from ..gof import GOF_FIELDS
from ..result import ALD_FIELDS, NODE_FIELDS, RowFit
from .registry import Backend, register_backend

try:
    from .. import _cpu
except ImportError as error:  # not built (no compiler, optional build failed) or broken
    # mypy has no "module or None" type (python/mypy#1297); _require_extension() guards every use
    _cpu = None  # type: ignore[assignment]
    _IMPORT_ERROR: str | None = (
        f"the C++ extension fcinterp_fast._cpu is not importable ({error}); build it with "
        f"`pip install -e .` or `python setup.py build_ext --inplace` (needs a C++17 compiler and pybind11)"
    )
else:
    _IMPORT_ERROR = None

__all__ = ["fit_rows", "fit_rows_profiled", "ald_only", "build_info", "PHASES"]

#: Phases of the row kernel that ``fit_rows_profiled`` times, in the order they run.
PHASES = ("sort", "logs", "tree", "ald", "gof")

# Chains without a depth may go 64 levels deep but rarely pass ~10; the outputs are first sized for
# this many levels and the block is refitted at full width only when some row went deeper.
_FIRST_CHAIN_LEVELS = 16

# Names the extension uses for the element type; bfloat16 travels as its int16 bit pattern.
_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}


def unavailable() -> str | None:
    return _IMPORT_ERROR


def _require_extension() -> None:
    if _cpu is None:
        raise RuntimeError(f"backend 'cpu' is not available: {_IMPORT_ERROR}")


def build_info() -> dict:
    """How the extension was built (flags, OpenMP, SIMD level picked on this CPU)."""
    _require_extension()
    return dict(_cpu.build_info())


def head_array(W: torch.Tensor):
    """A numpy view of the CPU tensor ``W`` (no copy) and the dtype name for the extension."""
    if W.dtype == torch.bfloat16:  # numpy has no bfloat16: pass the bits
        return W.view(torch.int16).numpy(), "bfloat16"
    return W.numpy(), _DTYPE_NAMES[W.dtype]


def fit_rows(W: torch.Tensor, cfg: FitConfig, gof: bool = True) -> RowFit:
    """Fit every row of ``W`` (R, D) float16 / bfloat16 / float32 / float64 on the CPU, any strides.

    ``gof=False`` skips the goodness-of-fit sweep (its fields stay NaN): for timing it alone
    (``benchmarks/bench_gof.py``); ``fit`` always computes it.

    Returns:
        RowFit on the CPU with ``cfg.n_columns`` node columns, except for chains without a depth:
        there the first 16 levels when no row goes deeper (the rest would be absent; ``fit`` trims
        unused levels anyway). ``ambiguous`` is all False.
    """
    return _fit_rows(W, cfg, None, gof=gof)


def fit_rows_profiled(
    W: torch.Tensor, cfg: FitConfig, *, threads: int | None = None
) -> tuple[RowFit, dict[str, float]]:
    """``fit_rows``, also returning the seconds each phase of the row kernel took (``PHASES``: sort =
    load, sort and decode; logs = ln|x|; tree = the split walk and node statistics; ald = prefix sums
    and the search; gof = the goodness-of-fit sweep), summed over rows and threads. ``threads``
    defaults to ``torch.get_num_threads()``. Reading the clock costs a few calls per row: time the
    plain ``fit_rows`` for totals."""
    phases: dict[str, float] = {}
    fit = _fit_rows(W, cfg, phases, threads)
    return fit, phases


def _fit_rows(
    W: torch.Tensor,
    cfg: FitConfig,
    phases: dict[str, float] | None,
    threads: int | None = None,
    counting_from: int = 0,
    gof: bool = True,
) -> RowFit:
    """``fit_rows`` with the phase times written into ``phases`` (unless None); ``counting_from`` is the
    extension's test hook (16-bit rows of at least that many values take the counting fit; 0: the
    default lengths); ``gof`` as for ``fit_rows``."""
    _require_extension()
    if not isinstance(W, torch.Tensor) or W.dim() != 2 or W.device.type != "cpu":
        raise ValueError(f"backend 'cpu' fits a 2-D CPU tensor, got {_describe(W)}")
    if W.dtype not in _DTYPE_NAMES:
        raise TypeError(f"backend 'cpu' takes float16, bfloat16, float32 or float64, got {W.dtype}")
    rows, D = W.shape
    if rows == 0:
        return RowFit.empty(0, cfg.n_columns)
    if D == 0:
        raise ValueError("cannot fit rows of length 0")
    head, dtype = head_array(W.detach())
    columns = cfg.n_columns
    if cfg.tree == "chain" and cfg.depth is None:
        columns = min(columns, 2 * _FIRST_CHAIN_LEVELS)
    threads = torch.get_num_threads() if threads is None else threads
    hook = _counting_hook(counting_from)
    stats = {name: torch.full((rows,), float("nan"), dtype=torch.float64) for name in GOF_FIELDS}
    while True:
        out = _allocate(rows, columns)
        keywords: dict[str, Any] = {name: t.numpy() for name, t in out.items()} | {"threads": threads} | hook
        if gof:
            keywords |= {name: t.numpy() for name, t in stats.items()}
        tree, root, grid, min_size, levels = cfg.tree, cfg.root, cfg.grid, cfg.min_size, cfg.levels
        if phases is None:
            needed = _cpu.fit_rows(head, dtype, tree, root, grid, min_size, levels, **keywords)
        else:
            needed, times = _cpu._fit_rows_profiled(head, dtype, tree, root, grid, min_size, levels, **keywords)
            phases.clear()
            phases.update(times)
        if needed <= columns:
            break
        columns = cfg.n_columns
    return RowFit(**out, **stats, ambiguous=torch.zeros(rows, dtype=torch.bool))


def ald_only(
    W: torch.Tensor, *, counting_from: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ALD part alone (sort + docs/spec.md section 4 for every row, no split tree), for timing it against
    ``scipy.stats.laplace_asymmetric.fit``. Returns loc, scale, kappa, loglik: (R,) float64.
    ``counting_from``: as for ``_fit_rows`` (a test hook)."""
    _require_extension()
    loc, scale, kappa, loglik = (torch.empty(W.shape[0], dtype=torch.float64) for _ in ALD_FIELDS)
    head, dtype = head_array(W.detach())
    _cpu._ald_rows(
        head,
        dtype,
        loc.numpy(),
        scale.numpy(),
        kappa.numpy(),
        loglik.numpy(),
        threads=torch.get_num_threads(),
        **_counting_hook(counting_from),
    )
    return loc, scale, kappa, loglik


def _counting_hook(counting_from: int) -> dict[str, int]:
    """The extension's test hook as keyword arguments, left out at its default (0) so that this
    module still runs on an extension built before the hook existed."""
    return {"counting_from": counting_from} if counting_from else {}


def _allocate(rows: int, columns: int) -> dict[str, torch.Tensor]:
    """Uninitialised outputs for the extension (it writes every entry)."""
    out = {name: torch.empty(rows, columns, dtype=torch.float64) for name in NODE_FIELDS[1:]}
    out["count"] = torch.empty(rows, columns, dtype=torch.int64)
    out.update({name: torch.empty(rows, dtype=torch.float64) for name in ALD_FIELDS})
    return out


def _describe(W) -> str:
    if isinstance(W, torch.Tensor):
        return f"a {W.dim()}-D {W.device.type} tensor of shape {tuple(W.shape)}"
    return f"a {type(W).__name__}"


register_backend(
    Backend(
        name="cpu",
        fit_rows=fit_rows,
        devices=frozenset({"cpu"}),
        # Working memory is per thread and O(D); this sizes blocks by their (R, N) float64 outputs.
        bytes_per_element=16,
        unavailable=unavailable,
        auto_rank=5,
        exact=True,
    )
)
