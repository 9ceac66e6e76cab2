"""Fit one head across the processes of a ``torchrun`` job: rows sharded, one ``HeadFit`` on rank 0.

Rank r fits the contiguous rows ``shard(K, r, world)`` of the head with the same block loop as
``fit`` (every rank opens the same file or receives the same tensor), then rank 0 gathers the
per-row statistics with ``torch.distributed.gather`` (NCCL on GPUs, gloo on CPUs). Rows are fitted
independently, so the gathered ``HeadFit`` equals a single-process ``fit`` exactly. Chains without
a depth keep only the levels some row reached; ranks agree on the global deepest level first and
pad their columns to it.

No rank waits forever for another: ``process_group(timeout=...)`` (``fcinterp fit --timeout``,
default ``DEFAULT_TIMEOUT``) bounds joining the job and every collective, and once its shard is
fitted each rank passes a monitored barrier (gloo's ``monitored_barrier``; with NCCL, which has
none, on a gloo side group) that fails after the timeout with a ``RuntimeError`` naming the ranks
that did not arrive: stopped (SIGSTOP), hung, or slower than the timeout allows.

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
import dataclasses
import datetime
import math
import os
import re
from collections.abc import Callable
from typing import cast

import torch
import torch.distributed as dist

from .api import plan_fit
from .config import check_choice
from .heads.fingerprint import FileFingerprint
from .heads.source import HeadSource
from .result import HeadFit, RowFit

__all__ = [
    "fit_sharded",
    "on_rank_zero",
    "process_group",
    "shard",
    "NotLaunchedByTorchrun",
    "DIST_BACKENDS",
    "DEFAULT_TIMEOUT",
]

#: ``process_group(backend=...)``: NCCL when CUDA is available (``"auto"``), NCCL, or gloo.
DIST_BACKENDS = ("auto", "nccl", "gloo")
#: Seconds a rank waits for the others (``process_group(timeout=...)``, ``fcinterp fit --timeout``):
#: to join the job, and, once its own shard is fitted, for the last rank to finish its shard.
DEFAULT_TIMEOUT = 300.0


class NotLaunchedByTorchrun(RuntimeError):
    """``process_group`` was entered in a process that ``torchrun`` did not start."""


# Variables ``torchrun`` sets for every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class _Job:
    """The process group ``process_group`` initialised: its timeout in seconds, and the gloo group
    whose monitored barrier names the ranks that do not answer (None: the job's own, with gloo; a
    gloo side group with NCCL)."""

    timeout: float
    monitor: dist.ProcessGroup | None


# While ``process_group`` is entered (and owns the default group), that job; None otherwise.
_job: _Job | None = None


def shard(rows: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous rows ``start, stop`` of ``rank``: sizes differ by at most one, in rank order."""
    return rank * rows // world, (rank + 1) * rows // world


def fit_sharded(
    W,
    *,
    group: dist.ProcessGroup | None = None,
    timeout: float | None = None,
    progress: bool | None = None,
    **options,
) -> HeadFit | None:
    """``fcinterp_fast.fit`` with the rows of the head shared out over the ranks of ``group``.

    Every rank of the (initialised) process group must call it with the same arguments.

    Args:
        W: the head, as for ``fit``: usually a ``.safetensors`` / ``.pth`` path every rank can read.
        group: the process group (None: the default group of ``process_group()``/torchrun). With
            NCCL each rank's current CUDA device must be its own GPU (``process_group`` sets it).
        timeout: seconds each rank waits, once its shard is fitted, for every other rank to finish
            its own (None: the timeout given to ``process_group``, or ``DEFAULT_TIMEOUT`` for a
            gloo group it did not create; an NCCL group it did not create has only its own timeout).
        progress: rank 0's progress bar, counting its own shard (other ranks show none).
        **options: the other keywords of ``fit`` (``backend``, ``tree``, ``root``, ``min_size``,
            ``depth``, ``grid``, ``name``, ``max_memory``, ``device``). ``device`` defaults to
            this rank's current GPU with NCCL and to the CPU with gloo.

    Returns:
        On rank 0 the ``HeadFit`` of all K rows, identical to a single-process ``fit``; elsewhere
        None.

    Raises:
        RuntimeError: no process group; a rank that did not finish its shard within ``timeout``
            (named on rank 0; the other ranks say that rank 0 did not confirm); or another rank
            failed (its message is repeated here, so every rank stops instead of waiting). The
            failing rank raises its own error (e.g. ``ValueError`` naming the first non-finite row
            by its index in the whole head).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "fit_sharded needs an initialised torch.distributed process group: launch with "
            "`torchrun --nproc-per-node N ...` and call it inside fcinterp_fast.distributed.process_group()"
        )
    if timeout is not None:
        timeout = _check_timeout(timeout)
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
    _raise_if_any_failed(error, rank, world, group, timeout)
    comm_device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    _gather_row_checksums(plan.source, comm_device, group)
    gathered = _gather_rows(rows, plan.source.shape[0], plan.source.device, comm_device, group)
    return plan.head_fit(gathered) if gathered is not None else None  # None on ranks other than 0


def on_rank_zero(fn: Callable[..., object], *args, group: dist.ProcessGroup | None = None) -> None:
    """``fn(*args)`` on rank 0 of ``group`` alone (e.g. checking the folder it will write into);
    every rank must call this. If it raises, every rank raises: rank 0 its own error, the others a
    RuntimeError quoting it, so that no rank starts work that rank 0 has already given up on. A
    rank that does not arrive within the timeout is named as in ``fit_sharded``."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    error = None
    if rank == 0:
        try:
            fn(*args)
        except Exception as exc:
            error = exc
    _raise_if_any_failed(error, rank, world, group)


def _raise_if_any_failed(error: Exception | None, rank: int, world: int, group, timeout: float | None = None) -> None:
    _wait_for_every_rank(group, timeout)
    messages: list[str | None] = [None] * world
    dist.all_gather_object(messages, None if error is None else f"{type(error).__name__}: {error}", group=group)
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, message = failed[0]
        raise RuntimeError(f"the distributed fit failed on rank {r}: {message}")


def _wait_for_every_rank(group, timeout: float | None) -> None:
    """A barrier that fails after ``timeout`` seconds naming the ranks that did not reach it (see
    ``fit_sharded``); without a gloo group to watch (a caller's NCCL group) it does nothing."""
    if group is None and _job is not None:
        monitor, seconds = _job.monitor, _job.timeout
    elif dist.get_backend(group) == "gloo":
        monitor, seconds = group, DEFAULT_TIMEOUT
    else:  # NCCL has no monitored barrier: the group's own timeout ends a stuck collective
        return
    seconds = seconds if timeout is None else timeout
    try:
        dist.monitored_barrier(monitor, timeout=datetime.timedelta(seconds=seconds), wait_all_ranks=True)
    except RuntimeError as error:
        # gloo's rank 0 says "Ranks 1, 3 failed to pass monitoredBarrier in 3000 ms"; the other
        # ranks only learn that rank 0 did not answer them
        missing = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(error))
        if dist.get_rank(monitor) == 0 and missing:
            ranks = [int(r) for r in missing[1].replace(",", " ").split()]
            raise RuntimeError(
                f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} did not answer within "
                f"{seconds:g} s of rank 0 finishing its shard (stopped, hung, or slower than the timeout "
                f"allows: a longer --timeout / timeout= gives slow ranks more time); the distributed fit stops"
            ) from error
        raise RuntimeError(
            f"rank 0 did not confirm within {seconds:g} s that every rank finished its shard: rank 0 did "
            f"not answer, or found ranks that did not (its own error names them); the distributed fit stops"
        ) from error


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)


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
def process_group(backend: str = "auto", timeout: float = DEFAULT_TIMEOUT):
    """Join the ``torchrun`` job this process belongs to, and leave it on exit.

    Args:
        backend: ``"nccl"`` (one GPU per process: ``LOCAL_RANK`` picks it), ``"gloo"`` (CPUs), or
            ``"auto"``: NCCL when CUDA is available, else gloo.
        timeout: seconds any rank waits for the others, to join the job, in a collective, and in
            ``fit_sharded`` for the last rank to finish its shard; then it fails, naming the ranks
            that did not answer (instead of torch's default of 30 minutes).

    Does nothing when a process group is already initialised (the caller owns it, and its timeout).
    """
    global _job
    check_choice("distributed backend", backend, DIST_BACKENDS)
    timeout = _check_timeout(timeout)
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
    delta = datetime.timedelta(seconds=timeout)
    dist.init_process_group(backend, timeout=delta)
    try:
        # NCCL has no monitored barrier: a gloo group of the same ranks has one (made here, where
        # every rank is, as new_group requires; it holds every rank, so it is never NON_GROUP_MEMBER)
        monitor = cast(dist.ProcessGroup, dist.new_group(backend="gloo", timeout=delta)) if backend == "nccl" else None
        _job = _Job(timeout, monitor)
        yield
    finally:
        _job = None
        dist.destroy_process_group()
