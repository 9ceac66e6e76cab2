"""Fit one head across the processes of a ``torchrun`` job: rows sharded, one ``HeadFit`` on rank 0.

Rank r fits the contiguous rows ``shard(K, r, world)`` of the head with the same block loop as
``fit`` (every rank opens the same file or receives the same tensor), then rank 0 gathers the
per-row statistics with ``torch.distributed.gather`` (NCCL on GPUs, gloo on CPUs). Rows are fitted
independently, so the gathered ``HeadFit`` equals a single-process ``fit`` exactly. Chains without
a depth keep only the levels some row reached; ranks agree on the global deepest level first and
pad their columns to it.

Example (4 GPUs, or 4 CPU processes with ``--dist-backend gloo``)::

    torchrun --standalone --nproc-per-node 4 -m fcinterp_fast.cli fit \\
        --weights model.safetensors --name lm_head.weight --distributed

From Python::

    with fcinterp_fast.distributed.process_group():
        result = fcinterp_fast.distributed.fit_sharded("model.safetensors", name="lm_head.weight")
    if result is not None:  # rank 0
        result.to_parquet("lm_head.parquet")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch
import torch.distributed as dist

from .api import plan_fit
from .config import check_choice
from .heads.fingerprint import FileFingerprint
from .heads.source import HeadSource
from .result import HeadFit, RowFit

__all__ = ["fit_sharded", "on_rank_zero", "process_group", "shard", "NotLaunchedByTorchrun", "DIST_BACKENDS"]

#: ``process_group(backend=...)``: NCCL when CUDA is available (``"auto"``), NCCL, or gloo.
DIST_BACKENDS = ("auto", "nccl", "gloo")


class NotLaunchedByTorchrun(RuntimeError):
    """``process_group`` was entered in a process that ``torchrun`` did not start."""


# Variables ``torchrun`` sets for every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def shard(rows: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous rows ``start, stop`` of ``rank``: sizes differ by at most one, in rank order."""
    return rank * rows // world, (rank + 1) * rows // world


def fit_sharded(
    W, *, group: dist.ProcessGroup | None = None, progress: bool | None = None, **options
) -> HeadFit | None:
    """``fcinterp_fast.fit`` with the rows of the head shared out over the ranks of ``group``.

    Every rank of the (initialised) process group must call it with the same arguments.

    Args:
        W: the head, as for ``fit``: usually a ``.safetensors`` / ``.pth`` path every rank can read.
        group: the process group (None: the default group of ``process_group()``/torchrun). With
            NCCL each rank's current CUDA device must be its own GPU (``process_group`` sets it).
        progress: rank 0's progress bar, counting its own shard (other ranks show none).
        **options: the other keywords of ``fit`` (``backend``, ``tree``, ``root``, ``min_size``,
            ``depth``, ``grid``, ``name``, ``max_memory``, ``device``). ``device`` defaults to
            this rank's current GPU with NCCL and to the CPU with gloo.

    Returns:
        On rank 0 the ``HeadFit`` of all K rows, identical to a single-process ``fit``; elsewhere
        None.

    Raises:
        RuntimeError: no process group; or another rank failed (its message is repeated here, so
            every rank stops instead of waiting forever). The failing rank raises its own error
            (e.g. ``ValueError`` naming the first non-finite row by its index in the whole head).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "fit_sharded needs an initialised torch.distributed process group: launch with "
            "`torchrun --nproc-per-node N ...` and call it inside fcinterp_fast.distributed.process_group()"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    nccl = dist.get_backend(group) == "nccl"
    if options.get("device") is None:  # gloo ranks have no GPU of their own: they fit on the CPU
        options["device"] = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    error = None
    try:  # plan and rows are bound whenever _raise_if_any_failed returns
        plan = plan_fit(W, **options)
        start, stop = shard(plan.source.shape[0], rank, world)
        rows = plan.fit_rows(start, stop, progress=progress if rank == 0 else False, desc=f"fit rank 0/{world}")
    except Exception as exc:  # every rank must learn of it before the next collective
        error = exc
    _raise_if_any_failed(error, rank, world, group)
    comm_device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    _gather_row_checksums(plan.source, comm_device, group)
    gathered = _gather_rows(rows, plan.source.shape[0], plan.source.device, comm_device, group)
    return plan.head_fit(gathered) if gathered is not None else None  # None on ranks other than 0


def on_rank_zero(fn: Callable[..., object], *args, group: dist.ProcessGroup | None = None) -> None:
    """``fn(*args)`` on rank 0 of ``group`` alone (e.g. checking the folder it will write into);
    every rank must call this. If it raises, every rank raises: rank 0 its own error, the others a
    RuntimeError quoting it, so that no rank starts work that rank 0 has already given up on."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    error = None
    if rank == 0:
        try:
            fn(*args)
        except Exception as exc:
            error = exc
    _raise_if_any_failed(error, rank, world, group)


def _raise_if_any_failed(error: Exception | None, rank: int, world: int, group) -> None:
    messages: list[str | None] = [None] * world
    dist.all_gather_object(messages, None if error is None else f"{type(error).__name__}: {error}", group=group)
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, message = failed[0]
        raise RuntimeError(f"the distributed fit failed on rank {r}: {message}")


def _gather_row_checksums(source: HeadSource, comm_device, group) -> None:
    """Give rank 0's file source the crc32 of the rows the other ranks read, so that its masks and
    members check every row they read again against what the fit saw (``heads.fingerprint``)."""
    if not isinstance(source.fingerprint, FileFingerprint):
        return
    crc32 = source.fingerprint.crc32.to(comm_device)  # -1 where this rank read nothing: max merges
    dist.reduce(crc32, dst=_global_rank_zero(group), op=dist.ReduceOp.MAX, group=group)
    if dist.get_rank(group) == 0:
        source.fingerprint.crc32.copy_(crc32)


def _gather_rows(rows: RowFit, K: int, result_device, comm_device, group) -> RowFit | None:
    """Concatenate every rank's ``RowFit`` on rank 0 (padded to the deepest level of any rank)."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    columns = torch.tensor([rows.columns], device=comm_device)
    dist.all_reduce(columns, op=dist.ReduceOp.MAX, group=group)
    rows = rows.pad_columns(int(columns))
    sizes = [shard(K, r, world) for r in range(world)]
    longest = max(stop - start for start, stop in sizes)
    dst = _global_rank_zero(group)
    fields = {}
    for name, values in rows.fields().items():  # one field at a time bounds rank 0's extra memory
        # gather needs equal shapes (pad to the longest shard) and dtypes every backend sends (bool -> uint8)
        send = torch.zeros((longest, *values.shape[1:]), dtype=_wire(values.dtype), device=comm_device)
        send[: values.shape[0]] = values.to(comm_device, send.dtype)
        received = [torch.empty_like(send) for _ in range(world)] if rank == 0 else None
        dist.gather(send, received, dst=dst, group=group)
        if received is not None:  # rank 0
            pieces = [t[: stop - start] for t, (start, stop) in zip(received, sizes, strict=True)]
            fields[name] = torch.cat(pieces).to(result_device, values.dtype)
    return RowFit(**fields) if rank == 0 else None


def _global_rank_zero(group) -> int:
    """The global rank of ``group``'s rank 0 (what ``gather`` and ``reduce`` take as ``dst``)."""
    return dist.get_global_rank(group, 0) if group is not None else 0


def _wire(dtype: torch.dtype) -> torch.dtype:
    return torch.uint8 if dtype == torch.bool else dtype


@contextlib.contextmanager
def process_group(backend: str = "auto"):
    """Join the ``torchrun`` job this process belongs to, and leave it on exit.

    Args:
        backend: ``"nccl"`` (one GPU per process: ``LOCAL_RANK`` picks it), ``"gloo"`` (CPUs), or
            ``"auto"``: NCCL when CUDA is available, else gloo.

    Does nothing when a process group is already initialised (the caller owns it).
    """
    check_choice("distributed backend", backend, DIST_BACKENDS)
    if dist.is_available() and dist.is_initialized():
        yield
        return
    missing = [v for v in _TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise NotLaunchedByTorchrun(
            f"a distributed fit runs under torchrun, which sets {', '.join(_TORCHRUN_VARIABLES)} "
            f"({', '.join(missing)} missing here): launch with `torchrun --nproc-per-node N ...`"
        )
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"NCCL needs one GPU per process, but LOCAL_RANK={local_rank} and this machine has "
                f"{torch.cuda.device_count()} GPUs; start fewer processes or use the gloo backend"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()
