"""GPU benchmark of ``backend="triton"``.

For each head it times, on the same GPU and in the same run:

* ``triton``: ``triton_fit.fit_rows`` on the whole head (one launch, results allocated) with the
  sort kernels,
* ``triton-count`` (float16 / bfloat16 heads): the same with the counting kernel
  (``fit_rows(..., counting=True)``, ``_triton_count``); its record also holds the memory it needs
  beyond the head and its results (``scratch_mib``, from ``torch.cuda.max_memory_allocated`` of a
  separate call, against the target of 10% of the head) and whether every row that neither kernel
  flags has the sort kernels' memberships (``memberships_equal``),
* ``torch``: ``torch_vec.fit_rows`` on the row block ``fit`` would give it (default memory
  budget); heads larger than one block are timed on their first block and scaled by the number
  of blocks (``extrapolated: true``),
* ``torch.sort``: a bare ``torch.sort(W, dim=1)`` of the same matrix,
* ``hbm_read``: the time to read the head once at the device-to-device copy bandwidth measured
  in this run (bytes read + written per second of ``dst.copy_(src)``).

Every time is the median of up to 10 calls (3 for ``torch``), fewer where the time budget asks,
each with the L2 cache flushed first (``fcinterp_fast.bench.time_call(..., flush_l2=True)``);
``peak_mib`` is the CUDA memory the first call allocated above what was held before it. The records
go through ``fcinterp_fast.bench.write_results`` to ``<out>/gpu-results.json`` (the common layout:
schema, benchmark, environment, config, records), rewritten after every measurement so that a run
stopped by its time limit keeps what it measured, with the table beside it in ``<out>/gpu-results.md``.

Usage::

    python benchmarks/bench_gpu.py --out benchmarks/results --budget 150
    python benchmarks/bench_gpu.py --compile-only --jobs 8 --precompile 6x16384:float32
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --dry-run --out /tmp/bench   # CPU plumbing check
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fcinterp_fast import bench
from fcinterp_fast._triton import interpreting
from fcinterp_fast.backends import registry, torch_vec, triton_fit
from fcinterp_fast.config import DEFAULT_MAX_MEMORY, FitConfig
from fcinterp_fast.result import RowFit

Head = tuple[int, int, torch.dtype]
#: (K, D, dtype): classifier heads (ImageNet-1k, -21k) and LLM vocabulary heads.
HEADS: list[Head] = [
    (1000, 512, torch.float32),
    (1000, 2048, torch.float32),
    (21843, 1024, torch.float32),
    (32000, 4096, torch.bfloat16),
    (152064, 8192, torch.bfloat16),
]
#: The same kinds of head, tiny, for ``--dry-run`` on the CPU interpreter.
DRY_HEADS: list[Head] = [(3, 40, torch.float32), (2, 70, torch.bfloat16), (2, 50, torch.float16)]
#: (head, ratio, comparison, bound): the speed goals of issues 1 and 15, checked in the table.
TARGETS = [
    ("1000x2048", "torch / triton", ">=", 20.0),
    ("152064x8192", "triton / hbm_read", "<=", 10.0),
    ("152064x8192", "triton-count / hbm_read", "<=", 20.0),
    ("32000x4096", "triton-count / hbm_read", "<=", 20.0),
]
#: Most memory the counting kernel may hold besides the head and its results, as a fraction of the head.
SCRATCH_TARGET = 0.10
#: The file ``write_results`` rewrites after every measurement (``gpu_check.sh`` collects it).
RESULTS_FILE = "gpu-results.json"
#: What ``bench_head`` measures of each head, in order.
STEPS = ("hbm_read", "triton", "triton-count", "torch.sort", "torch")


def laplace_head(K: int, D: int, dtype: torch.dtype, device: str, seed: int = 0) -> torch.Tensor:
    """A (K, D) head of Laplace(0, 0.02) weights (the shape the paper finds in trained heads)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(K, D, dtype=dtype, device=device)
    for start in range(0, K, 8192):  # bounded float32 temporaries
        u = torch.rand(min(8192, K - start), D, generator=g, device=device) - 0.5
        out[start : start + u.shape[0]] = (-0.02 * u.sign() * torch.log1p(-2 * u.abs())).to(dtype)
    return out


def timed(fn: Callable[[], object], device: str, budget_s: float, max_reps: int = 10) -> dict[str, Any]:
    """The record fields of ``fn``'s median time (``ms``), the timed calls (``reps``) and ``peak_mib``."""
    timing = bench.time_call(fn, device, repeat=max_reps, budget_s=budget_s, flush_l2=True)
    return {"ms": 1e3 * timing.median, "reps": len(timing.times_s), "peak_mib": timing.peak_mib}


def copy_bandwidth(device: str, nbytes: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    timing = bench.time_call(lambda: dst.copy_(src), device, repeat=10, budget_s=1.0, flush_l2=True)
    return 2 * nbytes / timing.median


def markdown(records: list[dict], env: dict[str, Any]) -> str:
    """The table of one run: a row per head, ratios of the steps, the targets met or not, what was skipped."""
    git = env["git"]["sha"] if env["git"] else "unknown"
    lines = [
        f"# backend='triton' on {env['device']}",
        "",
        f"{env['timestamp']} - torch {env['versions']['torch']}, triton {env['versions'].get('triton')}, "
        f"python {env['python']}, git {git}" + (" - Triton interpreter (dry run)" if env["triton_interpreter"] else ""),
        "",
        "| head | dtype | triton ms | torch ms | torch / triton | torch.sort ms | triton / sort "
        "| HBM read ms | triton / hbm_read | ambiguous rows | count ms | count / hbm_read | count scratch / head |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    heads: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        heads.setdefault((record["head"], record["dtype"]), {})[record["what"]] = record
    for (head, dtype), steps in heads.items():
        ms = {what: r["ms"] for what, r in steps.items() if r.get("ms") is not None}

        def cell(what: str, steps: dict[str, dict] = steps, ms: dict[str, float] = ms) -> str:
            return f"{ms[what]:.3f}" + ("*" if steps[what].get("extrapolated") else "") if what in ms else "-"

        def ratio(a: str, b: str, ms: dict[str, float] = ms) -> str:
            return f"{ms[a] / ms[b]:.2f}" if a in ms and b in ms else "-"

        ambiguous = steps.get("triton", {}).get("ambiguous_rows", "-")
        scratch = steps.get("triton-count", {}).get("scratch_fraction")
        lines.append(
            f"| {head} | {dtype} | {cell('triton')} | {cell('torch')} | {ratio('torch', 'triton')} "
            f"| {cell('torch.sort')} | {ratio('triton', 'torch.sort')} | {cell('hbm_read')} "
            f"| {ratio('triton', 'hbm_read')} | {ambiguous} | {cell('triton-count')} "
            f"| {ratio('triton-count', 'hbm_read')} | {'-' if scratch is None else f'{scratch:.3f}'} |"
        )
    lines += ["", "\\* extrapolated from the first row block of the torch backend.", ""]
    for head, what, op, bound in TARGETS:
        m = {w: r["ms"] for (h, _), steps in heads.items() if h == head for w, r in steps.items() if r.get("ms")}
        a, b = what.split(" / ")
        if a in m and b in m:
            value = m[a] / m[b]
            ok = value >= bound if op == ">=" else value <= bound
            lines.append(f"- target {head}: {what} = {value:.2f} ({op} {bound}: {'met' if ok else 'NOT met'})")
    for (head, _), steps in heads.items():
        count = steps.get("triton-count", {})
        if count.get("scratch_fraction") is not None:
            ok = count["scratch_fraction"] <= SCRATCH_TARGET
            lines.append(
                f"- target {head}: counting scratch = {count['scratch_mib']:.1f} MiB = "
                f"{count['scratch_fraction']:.3f} of the head (<= {SCRATCH_TARGET}: {'met' if ok else 'NOT met'}); "
                f"peak allocated {count['peak_total_mib']:.1f} MiB = head {count['head_mib']:.1f} + results "
                f"{count['output_mib']:.1f} + scratch; memberships equal to the sort kernels': "
                f"{count['memberships_equal']}"
            )
    lines += [f"- skipped {r['head']} {r['what']}: {r['skipped']}" for r in records if r.get("skipped")]
    return "\n".join(lines) + "\n"


class Results:
    """The records of this run, written through ``bench.write_results`` (JSON and the markdown table)
    after every one of them, so that a run stopped by its time limit keeps what it measured."""

    def __init__(self, out: str, device: str, config: dict):
        self.out, self.device, self.config = out, device, config
        self.env = bench.environment(device)  # for the table's heading: where and when the run began
        self.records: list[dict] = []

    def add(self, **record: Any) -> None:
        self.records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k not in ("K", "D")}), flush=True)
        bench.write_results(
            "gpu",
            self.records,
            out=self.out,
            config=self.config,
            device=self.device,
            markdown=self.markdown(),
            filename=RESULTS_FILE,
        )

    def markdown(self) -> str:
        return markdown(self.records, self.env)


def head_fields(K: int, D: int, dtype: torch.dtype) -> dict:
    """The fields naming a head in every record (``markdown`` groups records by them)."""
    return dict(head=f"{K}x{D}", K=K, D=D, dtype=str(dtype).replace("torch.", ""))


def bench_head(
    K: int, D: int, dtype: torch.dtype, device: str, results: Results, bandwidth: float, deadline: float
) -> None:
    common = head_fields(K, D, dtype)
    cfg = FitConfig()
    W = laplace_head(K, D, dtype, device)
    nbytes = W.numel() * W.element_size()
    results.add(**common, what="hbm_read", ms=1e3 * nbytes / bandwidth, bytes=nbytes, bandwidth_GBps=bandwidth / 1e9)

    def left() -> float:
        return deadline - time.perf_counter()

    measured = timed(lambda: triton_fit.fit_rows(W, cfg), device, budget_s=min(10, left() / 4))
    ambiguous = int(triton_fit.fit_rows(W, cfg).ambiguous.sum())
    results.add(**common, what="triton", **measured, ambiguous_rows=ambiguous)

    if dtype in (torch.float16, torch.bfloat16):
        if left() > 5:
            results.add(**common, what="triton-count", **counting_record(W, cfg, device, min(10, left() / 4)))
        else:
            results.add(**common, what="triton-count", ms=None, skipped="time budget")

    if left() > 5:
        results.add(**common, what="torch.sort", **timed(lambda: torch.sort(W, dim=1), device, min(5, left() / 4)))
    else:
        results.add(**common, what="torch.sort", ms=None, skipped="time budget")

    block = min(K, max(1, DEFAULT_MAX_MEMORY // (D * registry.get_backend("torch").bytes_per_element)))
    if left() > 10:
        measured = timed(lambda: torch_vec.fit_rows(W[:block], cfg), device, min(10, left() / 4), max_reps=3)
        blocks = -(-K // block)
        measured["ms"] *= blocks
        results.add(**common, what="torch", **measured, rows_timed=block, extrapolated=blocks > 1)
    else:
        results.add(**common, what="torch", ms=None, skipped="time budget")


def counting_record(W: torch.Tensor, cfg: FitConfig, device: str, budget_s: float) -> dict[str, Any]:
    """The ``triton-count`` record of a 16-bit head: time, ambiguous rows, memory beyond the head and
    the results, and whether its memberships equal the sort kernels' on every row neither flags."""

    def count() -> RowFit:
        return triton_fit.fit_rows(W, cfg, counting=True)

    record = timed(count, device, budget_s=budget_s)
    got = count()
    record["ambiguous_rows"] = int(got.ambiguous.sum())
    output_bytes = sum(t.numel() * t.element_size() for t in got.fields().values())
    sorted_fit = triton_fit.fit_rows(W, cfg, counting=False)
    decided = ~got.ambiguous & ~sorted_fit.ambiguous
    record["memberships_equal"] = all(
        bool(torch.equal(a, b) or ((a == b) | (a.isnan() & b.isnan())).all())  # absent nodes: NaN in both
        for a, b in ((getattr(got, n)[decided], getattr(sorted_fit, n)[decided]) for n in ("count", "lo", "hi"))
    )
    del got, sorted_fit, decided
    head_bytes = W.numel() * W.element_size()
    record.update(head_mib=head_bytes / 2**20, output_mib=output_bytes / 2**20)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
        result = count()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        del result
        scratch = peak - held - output_bytes
        record.update(
            peak_total_mib=peak / 2**20,
            held_before_mib=held / 2**20,
            scratch_mib=scratch / 2**20,
            scratch_fraction=scratch / head_bytes,
        )
    return record


def parse_head(text: str) -> Head:
    """``"6x16384:float32"`` -> (6, 16384, torch.float32); the dtype defaults to float32."""
    shape, _, dtype = text.partition(":")
    return (*bench.parse_shape(shape), getattr(torch, dtype or "float32"))


def _compile_one(K: int, D: int, dtype_name: str) -> str:
    """Run the triton backend once on a small block of this head's shape (in a fresh process),
    which compiles its kernel into Triton's on-disk cache."""
    t0 = time.perf_counter()
    W = torch.randn(min(K, 64), D, device="cuda").to(getattr(torch, dtype_name))
    triton_fit.fit_rows(W, FitConfig())
    if W.dtype in (torch.float16, torch.bfloat16):
        triton_fit.fit_rows(W, FitConfig(), counting=True)
    bench.sync("cuda")
    return f"compiled {K}x{D} {dtype_name} in {time.perf_counter() - t0:.1f} s"


def compile_all(shapes: Sequence[Head], jobs: int) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for all measurements")
    parser.add_argument("--heads", nargs="*", type=parse_head, help="KxD:dtype (default: the standard heads)")
    parser.add_argument("--dry-run", action="store_true", help="tiny heads on the CPU (needs TRITON_INTERPRET=1)")
    parser.add_argument("--compile-only", action="store_true", help="only compile the kernels, in parallel")
    parser.add_argument("--precompile", nargs="*", type=parse_head, default=[], help="more KxD:dtype to compile")
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
    config = {
        "budget_s": args.budget,
        "dry_run": args.dry_run,
        "heads": [f"{K}x{D}:{head_fields(K, D, dtype)['dtype']}" for K, D, dtype in heads],
        "steps": list(STEPS),
        "max_reps": {"default": 10, "torch": 3},
        "flush_l2": True,
        "targets": [" ".join(map(str, target)) for target in TARGETS],
        "counting_scratch_target": f"scratch_mib <= {SCRATCH_TARGET} * head_mib",
    }
    results = Results(args.out, device, config)
    bandwidth = copy_bandwidth(device, 2**30 if device == "cuda" else 2**20)
    for K, D, dtype in heads:
        common = head_fields(K, D, dtype)
        if time.perf_counter() > deadline:
            results.add(**common, what="triton", ms=None, skipped="time budget")
            continue
        try:
            bench_head(K, D, dtype, device, results, bandwidth, deadline)
        except torch.cuda.OutOfMemoryError as err:  # record it against the step that ran out, go on
            done = {r["what"] for r in results.records if all(r.get(k) == v for k, v in common.items())}
            results.add(**common, what=next(s for s in STEPS if s not in done), ms=None, skipped=f"OOM: {err}")
        if device == "cuda":
            torch.cuda.empty_cache()
    print(results.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
