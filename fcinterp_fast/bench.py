"""Benchmarks: one way to time a call and its peak memory, one description of the machine, one JSON
layout of results, and the fit benchmark of ``fcinterp bench``.

Shared by ``fcinterp bench`` (``fcinterp_fast.cli.bench``) and every script in ``benchmarks/``:

* ``time_call(fn, device)``: wall times of repeated calls (CUDA events on a GPU, optionally with the
  L2 cache flushed first, optionally fewer calls to stay within a time budget) and the peak memory of
  the first call above what was held before it (``PeakMemory``: resident memory on Linux, allocated
  memory on CUDA);
* ``rss_bytes()`` / ``peak_rss_bytes()``: this process's resident memory now / at its peak since it
  started (for benchmarks that run each measurement in a fresh process);
* ``environment(device)``: device, CPU, versions and git state of the run;
* ``write_results(name, records, ...)``: ``{"schema", "benchmark", "environment", "config",
  "records"}`` as JSON (one record per measurement), with a markdown table beside it if given.

The fit benchmark (``fit_records``) measures, on the same heads and in the same process: every
available backend through ``fcinterp_fast.fit`` (chain split tree + ALD, the defaults) on every
device it supports here, the cpu backend's ALD part alone (``cpu-ald``: sort + docs/spec.md section
4, no tree), the author-style per-class numpy loop (``baselines.author_fit``: chain line fits, no
ALD) and ``scipy.stats.laplace_asymmetric.fit`` per row (``baselines.scipy_ald``: the ALD alone).
Heads are ``KxD`` shapes filled with asymmetric-Laplace rows (a fixed seed), except 1000x1280, which
is the bundled EfficientNet-Lite0 classifier. Slow implementations run on evenly spaced sample rows
and are extrapolated per row (marked in the table). Times are the best of ``repeat`` runs;
ns/element divides by K * D; ns/element/core multiplies by the threads the implementation uses.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import baselines, models
from ._triton import interpreting
from ._version import __version__
from .api import fit
from .backends import cpu, registry
from .heads.find import head_weight
from .heads.stream import trim_heap

__all__ = [
    "SCHEMA",
    "Timing",
    "time_call",
    "PeakMemory",
    "rss_bytes",
    "peak_rss_bytes",
    "sync",
    "device_name",
    "environment",
    "git_state",
    "write_results",
    "Impl",
    "implementations",
    "make_head",
    "parse_shape",
    "sample_rows",
    "measure",
    "fit_records",
    "markdown_table",
    "DEFAULT_HEADS",
    "QUICK_HEADS",
    "BUNDLED_SHAPE",
    "DTYPES",
]

#: Version of the JSON layout ``write_results`` writes.
SCHEMA = "fcinterp-bench/1"
DEFAULT_HEADS = ("1000x512", "1000x1280", "1000x2048", "21843x1024", "32000x4096")
QUICK_HEADS = ("24x96", "40x200")
BUNDLED_SHAPE = (1000, 1280)  # the bundled EfficientNet-Lite0 classifier
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
_MIB = 2**20
_FLUSH_BYTES = 256 * 2**20  # larger than the L2 cache of current GPUs


# --------------------------------------------------------------------------- timing and memory
@dataclasses.dataclass
class Timing:
    """Times of the timed calls (seconds) and the peak memory of the first one (MiB above what was
    held before it; None where it cannot be read)."""

    times_s: list[float]
    peak_mib: float | None

    @property
    def best(self) -> float:
        return min(self.times_s)

    @property
    def median(self) -> float:
        return statistics.median(self.times_s)


def time_call(
    fn: Callable[[], object],
    device: str | torch.device = "cpu",
    *,
    repeat: int = 3,
    warmup: int = 1,
    budget_s: float | None = None,
    flush_l2: bool = False,
) -> Timing:
    """Time ``fn()`` on ``device``: ``warmup`` untimed calls, then ``repeat`` timed ones.

    Args:
        fn: the call to time; the work it queues on ``device`` is waited for.
        device: where ``fn`` works: CUDA calls are timed with CUDA events.
        repeat: most timed calls.
        warmup: untimed calls first (lazy imports, kernel compilation, first touch).
        budget_s: fewer timed calls (at least one) when the first would make them last longer.
        flush_l2: overwrite 256 MiB on the device before each timed call (cold L2 cache).
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    sync(device)
    flush = torch.empty(_FLUSH_BYTES // 4, device=device) if flush_l2 and device.type == "cuda" else None
    times: list[float] = []
    peak = None
    while len(times) < repeat:
        if flush is not None:
            flush.zero_()
        with PeakMemory(device) as memory:
            times.append(_one_call(fn, device))
        if len(times) == 1:
            peak = memory.mib
            if budget_s is not None:
                repeat = max(1, min(repeat, int(budget_s // max(times[0], 1e-9))))
    return Timing(times, peak)


def _one_call(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


class PeakMemory:
    """Peak memory of a block above what was held before it: resident memory of this process
    (Linux, through /proc/self/clear_refs), or allocated CUDA memory. ``mib`` is None if unknown."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.mib: float | None = None
        self.before: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            trim_heap()  # otherwise freed memory of earlier runs is reused and never shows
            self.before = _status_kib("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset VmHWM to the current resident size
            except OSError:
                self.before = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - (self.before or 0)) / _MIB
        elif self.before is not None:
            peak = _status_kib("VmHWM")
            self.mib = None if peak is None else max(peak - self.before, 0) / 1024


def rss_bytes() -> int | None:
    """This process's resident memory now, in bytes (``VmRSS`` of /proc/self/status; None where
    /proc is missing)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (exec'd), in bytes.

    Linux: ``VmHWM`` of /proc/self/status. Not ``ru_maxrss``, which Linux carries over from the
    parent through fork and exec (a parent that held a big tensor would show in every child); it is
    the fallback where /proc is missing.
    """
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sync(device: str | torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU), so that clocks read honestly."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------- the machine and results
def device_name(device: str | torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> dict | None:
    """The checkout's commit ``{"sha", "dirty"}``; ``GIT_SHA`` names it where the tree was copied
    without .git."""
    if os.environ.get("GIT_SHA"):
        return {"sha": os.environ["GIT_SHA"], "dirty": None}
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Where and with what a benchmark ran: time stamp, device, CPU, threads, versions, git state,
    and whether Triton kernels ran on the CPU interpreter (``TRITON_INTERPRET=1``: times are not the GPU's)."""
    versions: dict[str, str] = {
        "fcinterp_fast": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for distribution in ("scipy", "triton", "timm", "grad-cam", "safetensors"):  # installed ones, not imported
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    env: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": device_name(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": versions,
        "backends": registry.available(),
        "triton_interpreter": interpreting(),
        "git": git_state(),
    }
    if cpu.unavailable() is None:
        env["cpu_extension"] = cpu.build_info()
    return env


def write_results(
    name: str,
    records: list[dict],
    *,
    out: str | os.PathLike,
    config: dict,
    device: str | torch.device = "cpu",
    markdown: str | None = None,
    filename: str | None = None,
) -> Path:
    """Write one benchmark's results as JSON (and ``markdown`` beside it as ``.md``).

    Args:
        name: the benchmark (``"fit"``, ``"gpu"``, ``"stream"``, ``"explain"``).
        records: one dict per measurement.
        out: the folder (created if missing).
        config: the options of the run.
        device: the device measured, for ``environment``.
        markdown: the table printed for people, kept beside the JSON.
        filename: the JSON file's name; default ``<name>-<host>-<UTC time stamp>.json``.

    Returns:
        The JSON file's path.
    """
    env = environment(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = env["timestamp"].replace(":", "").replace("-", "").split("+")[0]
    path = out / (filename or f"{name}-{platform.node() or 'host'}-{stamp}.json")
    document = {"schema": SCHEMA, "benchmark": name, "environment": env, "config": config, "records": records}
    path.write_text(json.dumps(document, indent=2) + "\n")
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown.rstrip() + "\n")
    return path


# --------------------------------------------------------------------------- the fit benchmark
@dataclasses.dataclass(frozen=True)
class Impl:
    """One thing to time.

    Attributes:
        name: table name ("cpu", "torch", "torch@cuda", "cpu-ald", "numpy-loop", "scipy-ald").
        what: what it computes ("chain fit + ALD", "chain fit", "ALD").
        device: where its input lives.
        fit: runs it on a (R, D) block of rows.
        max_rows: rows it is timed on at most (None: all), the rest extrapolated per row.
        threads: cores it uses, for ns/element/core.
    """

    name: str
    what: str
    device: str
    fit: Callable[[torch.Tensor], object]
    max_rows: int | None
    threads: int


def implementations(slow_rows: int = 16, torch_rows: int = 1000) -> dict[str, Impl]:
    """Everything that can run here, by name; slow ones timed on ``slow_rows`` rows (``torch`` on the
    CPU on ``torch_rows``) and extrapolated."""
    impls = {}
    threads = torch.get_num_threads()
    for name, status in registry.available().items():
        if status != "available":
            continue
        for device in sorted(registry.get_backend(name).devices):
            if device == "cuda" and not torch.cuda.is_available():
                continue
            label = name if device == "cpu" else f"{name}@{device}"
            max_rows = {"reference": slow_rows, "torch": torch_rows}.get(name) if device == "cpu" else None
            impls[label] = Impl(
                label,
                "chain fit + ALD",
                device,
                functools.partial(fit, backend=name),
                max_rows,
                threads if device == "cpu" else 1,
            )
    if "cpu" in impls:
        impls["cpu-ald"] = Impl("cpu-ald", "ALD", "cpu", cpu.ald_only, None, threads)
    impls["numpy-loop"] = Impl(
        "numpy-loop", "chain fit", "cpu", lambda W: baselines.author_fit(W.float().numpy()), slow_rows, 1
    )
    if importlib.util.find_spec("scipy") is not None:
        impls["scipy-ald"] = Impl(
            "scipy-ald", "ALD", "cpu", lambda W: baselines.scipy_ald(W.float().numpy()), slow_rows, 1
        )
    return impls


def make_head(shape: tuple[int, int], seed: int, bundled: bool = True) -> torch.Tensor:
    """(K, D) float32: the bundled classifier for 1000x1280 (unless ``bundled`` is False), else
    asymmetric-Laplace rows with a scale and asymmetry per class (a trained head's look)."""
    if bundled and shape == BUNDLED_SHAPE:
        return head_weight(models.load()).detach().clone()
    K, D = shape
    generator = torch.Generator().manual_seed(seed)
    head = torch.empty(K, D)
    for start in range(0, K, 4096):
        block = head[start : start + 4096]
        rows = block.shape[0]
        scale = 0.02 + 0.05 * torch.rand(rows, 1, generator=generator)
        kappa = 0.8 + 0.5 * torch.rand(rows, 1, generator=generator)
        # ALD(0, scale, kappa): exponential on either side with rates kappa/scale and 1/(kappa scale).
        magnitude = torch.empty(rows, D).exponential_(generator=generator)
        upper = torch.rand(rows, D, generator=generator) < 1 / (1 + kappa**2)
        block.copy_(torch.where(upper, magnitude * scale / kappa, -magnitude * scale * kappa))
    return head


def parse_shape(text: str) -> tuple[int, int]:
    """``"1000x1280"`` -> (1000, 1280); ValueError for anything else."""
    try:
        K, D = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"head shape {text!r} is not KxD (e.g. 1000x1280)") from None
    if K < 1 or D < 1:
        raise ValueError(f"head shape {text!r} must have K, D >= 1")
    return K, D


def sample_rows(impl: Impl, head: torch.Tensor) -> torch.Tensor:
    """The rows of ``head`` (K, D) that ``impl`` is timed on, on its device: all of them, or
    ``impl.max_rows`` evenly spaced ones (first and last included) for slow implementations."""
    K = head.shape[0]
    rows = K if impl.max_rows is None else max(1, min(impl.max_rows, K))
    W = head if rows == K else head[torch.linspace(0, K - 1, rows).round().long()]
    return W.to(impl.device)


def measure(impl: Impl, head: torch.Tensor, repeat: int) -> dict:
    """Time ``impl`` on ``head`` (or on evenly spaced sample rows of it) and extrapolate."""
    K, D = head.shape
    W = sample_rows(impl, head)
    rows = W.shape[0]
    impl.fit(W[: min(rows, 2)])  # warm-up on two rows: lazy imports, kernels, first touch
    timing = time_call(lambda: impl.fit(W), impl.device, repeat=repeat if rows == K else 1, warmup=0)
    seconds = timing.best * K / rows
    ns_per_element = seconds * 1e9 / (K * D)
    return {
        "impl": impl.name,
        "what": impl.what,
        "device": impl.device,
        "rows_timed": rows,
        "extrapolated": rows < K,
        "times_s": timing.times_s,
        "seconds": seconds,
        "ns_per_element": ns_per_element,
        "ns_per_element_core": ns_per_element * impl.threads,
        "threads": impl.threads,
        "peak_mib": timing.peak_mib,
    }


def fit_records(
    shapes: Sequence[tuple[int, int]],
    dtypes: Sequence[torch.dtype],
    impls: Sequence[Impl],
    *,
    repeat: int = 3,
    seed: int = 0,
    bundled: bool = True,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[dict]:
    """Measure every implementation on every head and dtype; one record each, with ``cpu_speedup``."""
    records = []
    for shape in shapes:
        base = make_head(shape, seed, bundled=bundled)
        for dtype in dtypes:
            head = base.to(dtype)
            for impl in impls:
                record = measure(impl, head, repeat)
                record.update(
                    head=f"{shape[0]}x{shape[1]}", dtype=_dtype_name(dtype), bundled=shape == BUNDLED_SHAPE and bundled
                )
                records.append(record)
                log(f"  {record['head']} {record['dtype']} {impl.name}: {record['seconds']:.4g} s")
    _add_speedups(records)
    return records


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def _add_speedups(records: list[dict]) -> None:
    """``cpu_speedup``: this implementation's time over the cpu backend's for the same work on the
    same head and dtype (``cpu-ald`` for the ALD alone, ``cpu`` otherwise)."""
    times = {(r["head"], r["dtype"], r["impl"]): r["seconds"] for r in records}
    for r in records:
        own = "cpu-ald" if r["what"] == "ALD" else "cpu"
        reference = times.get((r["head"], r["dtype"], own))
        r["cpu_speedup"] = r["seconds"] / reference if reference and r["impl"] != own else None


def markdown_table(records: list[dict]) -> str:
    """One row per measurement; extrapolated times carry a footnote mark."""
    lines = [
        "| head | dtype | implementation | computes | time (s) | ns/element | ns/element/core | peak MiB "
        "| cpu is N x faster¹ |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        head = r["head"] + (" (bundled)" if r.get("bundled") else "")
        mark = "*" if r["extrapolated"] else ""
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        speedup = "" if r["cpu_speedup"] is None else f"{r['cpu_speedup']:.1f}"
        lines.append(
            f"| {head} | {r['dtype']} | {r['impl']} | {r['what']} | {r['seconds']:.4g}{mark} | "
            f"{r['ns_per_element']:.3g} | {r['ns_per_element_core']:.3g} | {peak} | {speedup} |"
        )
    lines.append("")
    lines.append(
        "¹ time over the cpu backend's for the same work: `cpu` (chain fit + ALD) for fits, `cpu-ald` "
        "for the ALD alone. The numpy loop fits the chain without the ALD."
    )
    sampled = sorted({(r["impl"], r["rows_timed"]) for r in records if r["extrapolated"]})
    if sampled:
        lines.append(
            "\\* extrapolated per row from a sample of evenly spaced rows: "
            + ", ".join(f"{impl} {rows} rows" for impl, rows in sampled)
            + "; its peak memory is the sample's."
        )
    return "\n".join(lines)
