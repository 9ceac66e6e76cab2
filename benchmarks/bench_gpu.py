"""GPU benchmark of ``backend="triton"``.

For each head it times, on the same GPU and in the same run:

* ``triton``: ``triton_fit.fit_rows`` on the whole head (one launch, results allocated),
* ``torch``: ``torch_vec.fit_rows`` on the row block ``fit`` would give it (default memory
  budget); heads larger than one block are timed on their first block and scaled by the number
  of blocks (``extrapolated: true``),
* ``torch.sort``: a bare ``torch.sort(W, dim=1)`` of the same matrix,
* ``hbm_read``: the time to read the head once at the device-to-device copy bandwidth measured
  in this run (bytes read + written per second of ``dst.copy_(src)``).

The L2 cache is flushed before every timed call. One JSON row per measurement goes to
``<out>/gpu-results.json`` (rewritten after every measurement, so a run stopped by its time limit
keeps what it measured) and a table to ``<out>/gpu-results.md``.

Usage::

    python benchmarks/bench_gpu.py --out benchmarks/results --budget 150
    python benchmarks/bench_gpu.py --compile-only --jobs 8 --precompile 6x16384:float32
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --dry-run --out /tmp/bench   # CPU plumbing check
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fcinterp_fast._triton import interpreting
from fcinterp_fast.config import DEFAULT_MAX_MEMORY, FitConfig
from fcinterp_fast.backends import registry, torch_vec, triton_fit
from fcinterp_fast.bench import device_name, git_state, sync

#: (K, D, dtype): classifier heads (ImageNet-1k, -21k) and LLM vocabulary heads.
HEADS = [
    (1000, 512, torch.float32),
    (1000, 2048, torch.float32),
    (21843, 1024, torch.float32),
    (32000, 4096, torch.bfloat16),
    (152064, 8192, torch.bfloat16),
]
#: The same kinds of head, tiny, for ``--dry-run`` on the CPU interpreter.
DRY_HEADS = [(3, 40, torch.float32), (2, 70, torch.bfloat16)]
TARGETS = {"1000x2048": ("torch / triton", ">=", 20.0), "152064x8192": ("triton / hbm_read", "<=", 10.0)}
_FLUSH_BYTES = 256 * 2**20  # larger than the L2 cache of current GPUs


def laplace_head(K: int, D: int, dtype: torch.dtype, device: str, seed: int = 0) -> torch.Tensor:
    """A (K, D) head of Laplace(0, 0.02) weights (the shape the paper finds in trained heads)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(K, D, dtype=dtype, device=device)
    for start in range(0, K, 8192):  # bounded float32 temporaries
        u = torch.rand(min(8192, K - start), D, generator=g, device=device) - 0.5
        out[start : start + u.shape[0]] = (-0.02 * u.sign() * torch.log1p(-2 * u.abs())).to(dtype)
    return out


class Timer:
    """Median time of a callable (ms), L2 flushed before each call; CUDA events on the GPU."""

    def __init__(self, device: str):
        self.device = device
        self.flush = torch.empty(_FLUSH_BYTES // 4 if device == "cuda" else 1, dtype=torch.float32, device=device)

    def __call__(self, fn, budget_s: float, max_reps: int = 10) -> tuple[float, int]:
        fn()  # warm-up (compiles Triton kernels on first use)
        sync(self.device)
        t0 = time.perf_counter()
        fn()
        sync(self.device)
        first = time.perf_counter() - t0
        reps = int(max(1, min(max_reps, budget_s // max(first, 1e-6))))
        times = []
        for _ in range(reps):
            self.flush.zero_()
            if self.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times), reps


def copy_bandwidth(timer: Timer, device: str, nbytes: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    ms, _ = timer(lambda: dst.copy_(src), budget_s=1.0)
    return 2 * nbytes / (ms / 1e3)


def environment(device: str) -> dict:
    import triton

    git = git_state()
    return {
        "device_name": device_name(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "git_sha": git["sha"] if git else "unknown",
        "interpreter": interpreting(),
    }


class Results:
    """Measurement rows, written to JSON and markdown after every row."""

    def __init__(self, out: str, env: dict):
        self.out, self.env, self.rows = out, env, []
        os.makedirs(out, exist_ok=True)

    def add(self, **row):
        self.rows.append({**self.env, **row})
        shown = {k: v for k, v in row.items() if k not in ("K", "D")}
        print(json.dumps(shown), flush=True)
        with open(os.path.join(self.out, "gpu-results.json"), "w") as f:
            json.dump(self.rows, f, indent=1)
        with open(os.path.join(self.out, "gpu-results.md"), "w") as f:
            f.write(self.markdown())

    def markdown(self) -> str:
        env = self.env
        lines = [
            f"# backend='triton' on {env['device_name']}",
            "",
            f"{env['date']} - torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
            f"git {env['git_sha']}" + (" - Triton interpreter (dry run)" if env["interpreter"] else ""),
            "",
            "| head | dtype | triton ms | torch ms | torch / triton | torch.sort ms | triton / sort "
            "| HBM read ms | triton / hbm_read | ambiguous rows |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        heads = {}
        for row in self.rows:
            heads.setdefault((row["head"], row["dtype"]), {})[row["what"]] = row
        for (head, dtype), m in heads.items():
            ms = {what: m[what]["ms"] for what in m if m[what].get("ms") is not None}
            cell = lambda what: (
                (f"{ms[what]:.3f}" + ("*" if m[what].get("extrapolated") else "")) if what in ms else "-"
            )  # noqa: E731
            ratio = lambda a, b: f"{ms[a] / ms[b]:.2f}" if a in ms and b in ms else "-"  # noqa: E731
            ambiguous = m.get("triton", {}).get("ambiguous_rows", "-")
            lines.append(
                f"| {head} | {dtype} | {cell('triton')} | {cell('torch')} | {ratio('torch', 'triton')} "
                f"| {cell('torch.sort')} | {ratio('triton', 'torch.sort')} | {cell('hbm_read')} "
                f"| {ratio('triton', 'hbm_read')} | {ambiguous} |"
            )
        lines += ["", "\\* extrapolated from the first row block of the torch backend.", ""]
        for head, (what, op, bound) in TARGETS.items():
            m = {w: r["ms"] for (h, _), rows in heads.items() if h == head for w, r in rows.items() if r.get("ms")}
            a, b = what.split(" / ")
            if a in m and b in m:
                value = m[a] / m[b]
                ok = value >= bound if op == ">=" else value <= bound
                lines.append(f"- target {head}: {what} = {value:.2f} ({op} {bound}: {'met' if ok else 'NOT met'})")
        skipped = [r for r in self.rows if r.get("skipped")]
        lines += [f"- skipped {r['head']} {r['what']}: {r['skipped']}" for r in skipped]
        return "\n".join(lines) + "\n"


#: What ``bench_head`` measures of each head, in order.
STEPS = ("hbm_read", "triton", "torch.sort", "torch")


def head_fields(K: int, D: int, dtype: torch.dtype) -> dict:
    """The fields naming a head in every result row (``Results.markdown`` groups rows by them)."""
    return dict(head=f"{K}x{D}", K=K, D=D, dtype=str(dtype).replace("torch.", ""))


def bench_head(
    K: int, D: int, dtype: torch.dtype, device: str, timer: Timer, results: Results, bandwidth: float, deadline: float
) -> None:
    common = head_fields(K, D, dtype)
    cfg = FitConfig()
    W = laplace_head(K, D, dtype, device)
    nbytes = W.numel() * W.element_size()
    results.add(**common, what="hbm_read", ms=1e3 * nbytes / bandwidth, bytes=nbytes, bandwidth_GBps=bandwidth / 1e9)

    def left() -> float:
        return deadline - time.perf_counter()

    ms, reps = timer(lambda: triton_fit.fit_rows(W, cfg), budget_s=min(10, left() / 4))
    ambiguous = int(triton_fit.fit_rows(W, cfg).ambiguous.sum())
    results.add(**common, what="triton", ms=ms, reps=reps, ambiguous_rows=ambiguous)

    if left() > 5:
        ms, reps = timer(lambda: torch.sort(W, dim=1), budget_s=min(5, left() / 4))
        results.add(**common, what="torch.sort", ms=ms, reps=reps)
    else:
        results.add(**common, what="torch.sort", ms=None, skipped="time budget")

    block = min(K, max(1, DEFAULT_MAX_MEMORY // (D * registry.get_backend("torch").bytes_per_element)))
    if left() > 10:
        ms, reps = timer(lambda: torch_vec.fit_rows(W[:block], cfg), budget_s=min(10, left() / 4), max_reps=3)
        blocks = -(-K // block)
        results.add(**common, what="torch", ms=ms * blocks, reps=reps, rows_timed=block, extrapolated=blocks > 1)
    else:
        results.add(**common, what="torch", ms=None, skipped="time budget")
    del W
    if device == "cuda":
        torch.cuda.empty_cache()


def parse_shape(text: str) -> tuple[int, int, torch.dtype]:
    """``"6x16384:float32"`` -> (6, 16384, torch.float32)."""
    shape, _, dtype = text.partition(":")
    K, D = (int(v) for v in shape.lower().split("x"))
    return K, D, getattr(torch, dtype or "float32")


def _compile_one(K: int, D: int, dtype_name: str) -> str:
    """Run the triton backend once on a small block of this head's shape (in a fresh process),
    which compiles its kernel into Triton's on-disk cache."""
    t0 = time.perf_counter()
    W = torch.randn(min(K, 64), D, device="cuda").to(getattr(torch, dtype_name))
    triton_fit.fit_rows(W, FitConfig())
    torch.cuda.synchronize()
    return f"compiled {K}x{D} {dtype_name} in {time.perf_counter() - t0:.1f} s"


def compile_all(shapes, jobs: int) -> None:
    context = multiprocessing.get_context("spawn")
    # longest rows first: they take longest to compile
    shapes = sorted(shapes, key=lambda s: -s[1])
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_compile_one, K, D, head_fields(K, D, dtype)["dtype"]) for K, D, dtype in shapes]
        for future in concurrent.futures.as_completed(futures):
            try:
                print(future.result(), flush=True)
            except Exception as err:  # report and go on: one broken shape must not hide the others
                print(f"compile failed: {err!r}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for all measurements")
    parser.add_argument("--heads", nargs="*", type=parse_shape, help="KxD:dtype (default: the standard heads)")
    parser.add_argument("--dry-run", action="store_true", help="tiny heads on the CPU (needs TRITON_INTERPRET=1)")
    parser.add_argument("--compile-only", action="store_true", help="only compile the kernels, in parallel")
    parser.add_argument("--precompile", nargs="*", type=parse_shape, default=[], help="more KxD:dtype to compile")
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args(argv)

    if args.dry_run:
        if not interpreting():
            parser.error("--dry-run runs the kernels on the CPU interpreter: set TRITON_INTERPRET=1")
        device, heads = "cpu", args.heads or DRY_HEADS
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device; use --dry-run with TRITON_INTERPRET=1 to check the script on CPU")
        device, heads = "cuda", args.heads or HEADS
    if args.compile_only:
        compile_all(list(heads) + list(args.precompile), args.jobs)
        return 0

    deadline = time.perf_counter() + args.budget
    timer = Timer(device)
    results = Results(args.out, environment(device))
    bandwidth = copy_bandwidth(timer, device, 2**30 if device == "cuda" else 2**20)
    for K, D, dtype in heads:
        common = head_fields(K, D, dtype)
        if time.perf_counter() > deadline:
            results.add(**common, what="triton", ms=None, skipped="time budget")
            continue
        try:
            bench_head(K, D, dtype, device, timer, results, bandwidth, deadline)
        except torch.cuda.OutOfMemoryError as err:  # record it against the step that ran out, go on
            done = {r["what"] for r in results.rows if all(r.get(k) == v for k, v in common.items())}
            results.add(**common, what=next(s for s in STEPS if s not in done), ms=None, skipped=f"OOM: {err}")
    print(results.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
