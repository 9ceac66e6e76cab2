"""``backend="triton"``: docs/spec.md sections 2-4 and 7 in fused Triton kernels, for CUDA tensors.

Rows of up to ``MAX_SINGLE_PASS`` (16384) elements are loaded, sorted, fitted and written in one
kernel launch per block of rows (``_triton_kernels._fit_rows_kernel``: every class and every
split level, several rows per program when rows are short). Longer rows are sorted with
``torch.sort`` and fitted by ``_fit_sorted_kernel``, which walks each node's run of the row in
chunks. Both write ``RowFit`` directly (columns laid out as in ``_config``) and flag the rows whose
split thresholds their float64 sums cannot decide (``fit`` recomputes those exactly).

float16 and bfloat16 heads can instead be fitted without any sort by counting their bit patterns
(``_triton_count``). That kernel is tested under the interpreter and compiles for sm_90, but has
not been measured on a GPU, so it is off by default: ``FCINTERP_TRITON_COUNTING=1`` (or
``fit_rows(..., counting=True)``) turns it on.

With ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors through Triton's interpreter
(slow: for tests on small shapes); the backend then also accepts CPU tensors but is never
chosen by ``backend="auto"``.
"""

from __future__ import annotations

import os

import torch

from .._triton import interpreting, unavailable
from ..config import FitConfig
from ..gof import gof_rows
from ..heads.source import FLOAT_DTYPES
from ..result import RowFit
from .registry import Backend, register_backend

__all__ = ["fit_rows", "COUNTING_ENV", "counting_enabled"]

#: Environment variable that switches the counting kernel on for 16-bit heads ("1"); unmeasured on a
#: GPU so far, so the sort kernels fit them unless it is set.
COUNTING_ENV = "FCINTERP_TRITON_COUNTING"

#: Scratch memory (bytes) of one launch of the long-row path; longer blocks are split.
_SORTED_PATH_BYTES = 256 * 2**20
#: Elements per step of the long-row kernel's loops over a node.
_CHUNK = 2048
#: Significand bits (with the implicit one) of each input dtype: every value is a multiple of
#: 2^(exponent + 1 - bits), which lets the kernels prove a node's float64 sum exact.
_MANTISSA = {torch.float16: 11, torch.bfloat16: 8, torch.float32: 24, torch.float64: 53}


def _devices() -> frozenset:
    return frozenset({"cuda", "cpu"}) if interpreting() else frozenset({"cuda"})


def _check_input(W: torch.Tensor) -> None:
    if not isinstance(W, torch.Tensor):
        raise TypeError(f"backend 'triton' fits a torch.Tensor, got {type(W).__name__}")
    if W.dim() != 2:
        raise ValueError(f"backend 'triton' fits a (rows, D) matrix, got shape {tuple(W.shape)}")
    if W.dtype not in FLOAT_DTYPES:
        raise TypeError(f"backend 'triton' reads float16, bfloat16, float32 or float64, got {W.dtype}")
    if W.shape[1] == 0:
        raise ValueError("backend 'triton' needs rows of at least one element (D >= 1)")
    if W.device.type not in _devices():
        allowed = " or ".join(sorted(_devices()))
        raise ValueError(
            f"backend 'triton' runs on {allowed} tensors, got a {W.device.type} tensor; move it with "
            f".cuda() (or set TRITON_INTERPRET=1 before importing triton to use the CPU interpreter)"
        )


def counting_enabled() -> bool:
    """Whether ``FCINTERP_TRITON_COUNTING`` asks for the counting kernel on 16-bit heads."""
    return os.environ.get(COUNTING_ENV, "0") not in ("", "0")


def fit_rows(W: torch.Tensor, cfg: FitConfig, *, counting: bool | None = None) -> RowFit:
    """Fit every row of ``W`` (R, D), float16/bfloat16/float32/float64, any strides, on CUDA.

    Rows must be finite (``fit`` checks every block before it gets here). ``counting``: fit a
    float16/bfloat16 head with the counting kernel (``_triton_count``) instead of sorting it;
    None: as ``FCINTERP_TRITON_COUNTING`` says (off unless set to 1). Returns a ``RowFit`` on W's
    device with ``cfg.n_columns`` node columns.
    """
    _check_input(W)
    from . import _triton_count
    from . import _triton_kernels as kernels

    out = RowFit.empty(W.shape[0], cfg.n_columns, device=W.device)
    if W.shape[0] == 0:
        return out
    if counting is None:
        counting = counting_enabled()
    if counting and _triton_count.fits(W):
        _triton_count.fit_rows(W, cfg, out)
        # The counting kernel never holds the sorted row: the goodness of fit (docs/spec.md section
        # 7) comes from the vectorised torch code on the device.
        xs = torch.sort(W.detach(), dim=1).values.to(torch.float64)
        out.loglik_laplace, out.loglik_normal, out.ks = gof_rows(xs, out.loc, out.scale, out.kappa)
    elif W.shape[1] <= kernels.MAX_SINGLE_PASS:
        _single_pass(W, cfg, out, kernels)
    else:
        _sorted_path(W, cfg, out, kernels)
    return out


def _outputs(out: RowFit) -> list[torch.Tensor]:
    return [out.count, out.mean, out.lo, out.hi, out.slope, out.intercept, out.r2,
            out.loc, out.scale, out.kappa, out.loglik, out.loglik_laplace, out.loglik_normal, out.ks,
            out.ambiguous]  # fmt: skip


def _options(cfg: FitConfig) -> tuple[int, int, int]:
    return cfg.min_size, cfg.levels, int(cfg.grid == "linspace")


def _single_pass(W: torch.Tensor, cfg: FitConfig, out: RowFit, kernels) -> None:
    import triton
    import triton.language as tl

    R, D = W.shape
    block, rows, num_warps = kernels.single_pass_config(D, heavy=cfg.tree == "full" or cfg.root == "mean")
    grid = (triton.cdiv(R, rows),)
    kernels._fit_rows_kernel[grid](
        W, *_outputs(out),
        R, D, W.stride(0), W.stride(1), cfg.n_columns, *_options(cfg),
        BLOCK=block, ROWS=rows,
        FULL=cfg.tree == "full", ROOT_MEAN=cfg.root == "mean",
        SORT_DTYPE=tl.float64 if W.dtype == torch.float64 else tl.float32, MANTISSA=_MANTISSA[W.dtype],
        num_warps=num_warps,
    )  # fmt: skip


def _sorted_path(W: torch.Tensor, cfg: FitConfig, out: RowFit, kernels) -> None:
    """Rows longer than the single-pass limit: torch.sort, then one program per row."""
    R, D = W.shape
    root_mean = cfg.root == "mean"
    sort_dtype = torch.float64 if W.dtype == torch.float64 else torch.float32
    sort_size = torch.finfo(sort_dtype).bits // 8
    # the upcast input (16-bit heads) or a packed copy (transposed heads), the sorted values and
    # torch.sort's int64 indices, float64 suffix sums, int64 mirror positions (root="mean")
    per_row = D * (2 * sort_size + 8 + 8 + (8 if root_mean else 0))
    block = max(1, _SORTED_PATH_BYTES // per_row)
    for start in range(0, R, block):
        stop = min(start + block, R)
        # contiguous: torch.sort keeps a transposed head's strides, the kernel reads rows packed
        xs = torch.sort(W[start:stop].to(sort_dtype), dim=1).values.contiguous()
        mirror = torch.searchsorted(xs, -xs, right=True) if root_mean else xs.new_zeros(1, dtype=torch.int64)
        above = torch.empty_like(xs, dtype=torch.float64)
        start_table = torch.zeros(stop - start, cfg.n_columns, dtype=torch.int32, device=W.device)
        stop_table = torch.zeros_like(start_table)
        part = [t[start:stop] for t in _outputs(out)]
        kernels._fit_sorted_kernel[(stop - start,)](
            xs, mirror, above, start_table, stop_table, *part,
            D, cfg.n_columns, *_options(cfg),
            CHUNK=_CHUNK, FULL=cfg.tree == "full", ROOT_MEAN=root_mean, MANTISSA=_MANTISSA[W.dtype],
            num_warps=8,
        )  # fmt: skip


register_backend(
    Backend(
        name="triton",
        fit_rows=fit_rows,
        devices=_devices(),
        # the long-row path's sorted copy, suffix sums and mirror positions (the single-pass
        # kernel needs no memory besides the results)
        bytes_per_element=24,
        unavailable=unavailable,
        auto_rank=None if interpreting() else 0,
    )
)
