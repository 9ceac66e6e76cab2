"""``fcinterp bench``: time ``fit()`` on every backend against the author's numpy loop and scipy.

One run measures, on the same heads and in the same process: every available backend through
``fcinterp_fast.fit`` (chain split tree + ALD, the defaults) on every device it supports here, the
cpu backend's ALD part alone (``cpu-ald``: sort + SPEC 4, no tree), the author-style per-class
numpy loop (``baselines.author_fit``: chain line fits, no ALD) and
``scipy.stats.laplace_asymmetric.fit`` per row (``baselines.scipy_ald``: the ALD alone). Heads are
``KxD`` shapes filled with asymmetric-Laplace rows (a fixed seed), except 1000x1280, which is the
bundled EfficientNet-Lite0 classifier; each in float32 and bfloat16.

Slow implementations run on evenly spaced sample rows and are extrapolated per row (marked in the
table). Times are the best of ``--repeat`` runs; ns/element divides by K * D; ns/element/core
multiplies by the threads the implementation uses (torch's thread count for backends on the CPU,
1 for the Python loops). Peak memory is the process's resident-memory high-water mark during the
first timed run above what it held before, with the C heap's free memory returned to the OS first
(Linux; CUDA: peak allocated on the device).

Results: a markdown table on stdout and a JSON file under ``--out`` with the device, CPU name,
time stamp, versions, git sha, configuration and one record per measurement.

The command line wires ``fcinterp bench`` to ``add_arguments`` and ``run``; ``benchmarks/run.py``
calls them too.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .stream import trim_heap

__all__ = ["add_arguments", "run", "make_head", "implementations", "Impl", "git_state", "peak_rss_bytes", "sync", "device_name"]

DEFAULT_HEADS = ("1000x512", "1000x1280", "1000x2048", "21843x1024", "32000x4096")
QUICK_HEADS = ("24x96", "40x200")
BUNDLED_SHAPE = (1000, 1280)  # the bundled EfficientNet-Lite0 classifier
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
_MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fcinterp bench``."""
    parser.add_argument("--heads", default=",".join(DEFAULT_HEADS),
                        help="comma-separated KxD shapes; 1000x1280 is the bundled EfficientNet-Lite0 head "
                             f"(default: {','.join(DEFAULT_HEADS)})")  # fmt: skip
    parser.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated, from {','.join(DTYPES)}")
    parser.add_argument("--impls", default=None,
                        help="comma-separated implementations (default: all available; see --list)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the implementations available here and exit")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the fast implementations (best kept)")
    parser.add_argument("--slow-rows", type=int, default=16,
                        help="rows timed for reference, numpy-loop and scipy-ald (extrapolated to the head)")
    parser.add_argument("--torch-rows", type=int, default=1000,
                        help="most rows timed for backend 'torch' on the CPU (extrapolated beyond)")
    parser.add_argument("--out", default="benchmarks/results", help="directory for the JSON results")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: heads {','.join(QUICK_HEADS)}, fp32 only, 1 repeat, 2 slow rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic heads")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and the cpu backend (default: torch's default)")
    parser.add_argument("--synthetic", action="store_true",
                        help="a synthetic 1000x1280 head instead of the bundled EfficientNet-Lite0 classifier")


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


def implementations(args: argparse.Namespace) -> dict[str, Impl]:
    """Everything that can run here, by name."""
    import fcinterp_fast
    from fcinterp_fast import baselines
    from fcinterp_fast.backends import registry

    impls = {}
    threads = torch.get_num_threads()
    for name, status in fcinterp_fast.backends().items():
        if status != "available":
            continue
        for device in sorted(registry.get_backend(name).devices):
            if device == "cuda" and not torch.cuda.is_available():
                continue
            label = name if device == "cpu" else f"{name}@{device}"
            max_rows = {"reference": args.slow_rows, "torch": args.torch_rows}.get(name) if device == "cpu" else None
            impls[label] = Impl(label, "chain fit + ALD", device,
                                lambda W, name=name: fcinterp_fast.fit(W, backend=name), max_rows,
                                threads if device == "cpu" else 1)  # fmt: skip
    if "cpu" in impls:
        from fcinterp_fast.backends import cpu

        impls["cpu-ald"] = Impl("cpu-ald", "ALD", "cpu", cpu.ald_only, None, threads)
    impls["numpy-loop"] = Impl("numpy-loop", "chain fit", "cpu",
                               lambda W: baselines.author_fit(W.float().numpy()), args.slow_rows, 1)  # fmt: skip
    if _importable("scipy"):
        impls["scipy-ald"] = Impl("scipy-ald", "ALD", "cpu", lambda W: baselines.scipy_ald(W.float().numpy()),
                                  args.slow_rows, 1)  # fmt: skip
    return impls


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def make_head(shape: tuple[int, int], seed: int, bundled: bool = True) -> torch.Tensor:
    """(K, D) float32: the bundled classifier for 1000x1280 (unless ``bundled`` is False), else
    asymmetric-Laplace rows with a scale and asymmetry per class (a trained head's look)."""
    if bundled and shape == BUNDLED_SHAPE:
        import fcinterp_fast

        return fcinterp_fast.head_weight(fcinterp_fast.models.load()).detach().clone()
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


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        K, D = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"head shape {text!r} is not KxD (e.g. 1000x1280)") from None
    if K < 1 or D < 1:
        raise ValueError(f"head shape {text!r} must have K, D >= 1")
    return K, D


# ------------------------------------------------------------------------------- measuring
class _PeakMemory:
    """Peak memory of a block above what was held before it: resident memory of this process
    (Linux, through /proc/self/clear_refs), or allocated CUDA memory. ``mib`` is None if unknown."""

    def __init__(self, device: str):
        self.device = device
        self.mib = None

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            trim_heap()  # otherwise freed memory of earlier runs is reused and never shows
            self.before = _status_kib("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset VmHWM to the current resident size
            except OSError:
                self.before = None
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.before) / _MIB
        elif self.before is not None:
            peak = _status_kib("VmHWM")
            self.mib = None if peak is None else max(peak - self.before, 0) / 1024
        return False


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


def measure(impl: Impl, head: torch.Tensor, repeat: int) -> dict:
    """Time ``impl`` on ``head`` (or on evenly spaced sample rows of it) and extrapolate."""
    K, D = head.shape
    rows = K if impl.max_rows is None else max(1, min(impl.max_rows, K))
    W = head if rows == K else head[torch.linspace(0, K - 1, rows).round().long()]
    W = W.to(impl.device)
    impl.fit(W[: min(rows, 2)])  # warm-up: lazy imports, kernels, first-touch
    runs = repeat if rows == K else 1
    times = []
    peak = None
    for i in range(runs):
        with _PeakMemory(impl.device) as memory:
            sync(impl.device)
            start = time.perf_counter()
            impl.fit(W)
            sync(impl.device)
            times.append(time.perf_counter() - start)
        if i == 0:
            peak = memory.mib
    seconds = min(times) * K / rows
    ns_per_element = seconds * 1e9 / (K * D)
    return {
        "impl": impl.name, "what": impl.what, "device": impl.device, "rows_timed": rows,
        "extrapolated": rows < K, "times_s": times, "seconds": seconds, "ns_per_element": ns_per_element,
        "ns_per_element_core": ns_per_element * impl.threads, "threads": impl.threads, "peak_mib": peak,
    }  # fmt: skip


# ------------------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table, write the JSON. Returns the process exit code."""
    if args.quick:
        args.heads, args.dtypes, args.repeat, args.slow_rows = ",".join(QUICK_HEADS), "fp32", 1, 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"fcinterp bench: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    impls = implementations(args)
    if args.list:
        for impl in impls.values():
            print(f"{impl.name:12s} {impl.what} on {impl.device}")
        return 0
    try:
        shapes = [_parse_shape(text) for text in args.heads.split(",") if text]
        dtypes = [DTYPES[name] for name in args.dtypes.split(",") if name]
        chosen = [impls[name] for name in args.impls.split(",")] if args.impls else list(impls.values())
    except KeyError as error:
        print(f"fcinterp bench: unknown {error}; implementations here: {', '.join(impls)}; "
              f"dtypes: {', '.join(DTYPES)}", file=sys.stderr)  # fmt: skip
        return 2
    except ValueError as error:
        print(f"fcinterp bench: {error}", file=sys.stderr)
        return 2

    records = []
    for shape in shapes:
        base = make_head(shape, args.seed, bundled=not args.synthetic)
        for dtype in dtypes:
            head = base.to(dtype)
            for impl in chosen:
                record = measure(impl, head, args.repeat)
                record.update(head=f"{shape[0]}x{shape[1]}", dtype=_dtype_name(dtype),
                              bundled=shape == BUNDLED_SHAPE and not args.synthetic)  # fmt: skip
                records.append(record)
                print(f"  {record['head']} {record['dtype']} {impl.name}: {record['seconds']:.4g} s", file=sys.stderr)
    _add_speedups(records)
    print(markdown_table(records))
    path = _write_json(records, args)
    print(f"\nwrote {path}")
    return 0


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
        "| head | dtype | implementation | computes | time (s) | ns/element | ns/element/core | peak MiB | cpu is N x faster¹ |",
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
    lines.append("¹ time over the cpu backend's for the same work: `cpu` (chain fit + ALD) for fits, `cpu-ald` "
                 "for the ALD alone. The numpy loop fits the chain without the ALD.")  # fmt: skip
    sampled = sorted({(r["impl"], r["rows_timed"]) for r in records if r["extrapolated"]})
    if sampled:
        lines.append("\\* extrapolated per row from a sample of evenly spaced rows: " +
                     ", ".join(f"{impl} {rows} rows" for impl, rows in sampled) +
                     "; its peak memory is the sample's.")  # fmt: skip
    return "\n".join(lines)


def environment() -> dict:
    """Device, CPU name, versions and git state of this run."""
    import fcinterp_fast

    env = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {"fcinterp_fast": fcinterp_fast.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},  # fmt: skip
        "backends": fcinterp_fast.backends(),
        "git": git_state(),
    }
    for module in ("scipy", "triton"):
        if _importable(module):
            env["versions"][module] = __import__(module).__version__
    from fcinterp_fast.backends import cpu

    if cpu.unavailable() is None:
        env["cpu_extension"] = cpu.build_info()
    return env


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
    """The checkout's commit ``{"sha", "dirty"}`` for benchmark records (every script here uses
    this one); ``GIT_SHA`` names it where the tree was copied without .git."""
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


def _write_json(records: list[dict], args: argparse.Namespace) -> Path:
    env = environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = env["timestamp"].replace(":", "").replace("-", "").split("+")[0]
    path = out / f"fit-{platform.node() or 'host'}-{stamp}.json"
    config = {key: value for key, value in vars(args).items() if not callable(value)}
    path.write_text(json.dumps({"environment": env, "config": config, "records": records}, indent=2) + "\n")
    return path
