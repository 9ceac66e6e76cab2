"""Fitting a large head streamed from disk: wall time, rows/s and peak resident memory (RSS).

Generates a K x D bf16 ``.safetensors`` head (default 131072 x 4096 = 1 GiB; kept under ``--dir``
for later runs), then runs each configuration in a fresh process that reports its own peak RSS
(``fcinterp_fast.bench.peak_rss_bytes``: the high-water mark of its own address space, ``VmHWM``;
not ``ru_maxrss``, which Linux carries over from the parent through fork and exec) and the RSS it
started from after importing torch (``bench.rss_bytes``; a CUDA build of torch alone maps ~0.5 GB):

* ``stream``: ``fit(path)`` with the default ``max_memory`` (the measurement of record; target:
  peak RSS under 1.5 GB for the 1 GiB head);
* ``stream-256MiB``: the same with ``max_memory=256 MiB`` (peak memory follows the budget);
* ``in-memory``: the whole head loaded (``safetensors.torch.load_file``), then ``fit(W)``;
* ``read-file`` / ``read-mmap``: every block read and nothing fitted, through ``FileSource`` (plain
  file reads, what ``fit`` uses) and through safetensors' memory-mapped ``get_slice`` (whose pages
  stay resident once read: the reason ``fit`` does not use it);
* ``stream-cuda`` / ``in-memory-cuda``: ``fit(path, device="cuda")`` (pinned buffers, a reader
  thread and a copy stream overlapping the fit) against the head already on the GPU.

Each configuration runs once, timed by ``bench.time_call`` (``wall_s``; ``peak_mib`` is the peak of
the timed run alone above what was held before it). In-memory heads are loaded before the clock
starts (their memory still counts in the peak RSS), so ``stream`` / ``in-memory`` is the cost of
streaming. Fits must agree on every membership (a digest of the node names, counts, lo and hi is
compared). Prints a markdown table and writes it with one record per configuration through
``bench.write_results("stream", ...)`` under ``--out``.

    python benchmarks/bench_stream.py [--rows 131072] [--cols 4096] [--backend torch]
        [--configs read-file,read-mmap,stream,in-memory] [--max-memory BYTES] [--dir /tmp/fcinterp-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import fcinterp_fast
from fcinterp_fast import bench
from fcinterp_fast.api import plan_fit
from fcinterp_fast.result import HeadFit

NAME = "lm_head.weight"
CONFIGS = ("stream", "stream-256MiB", "in-memory", "read-file", "read-mmap", "stream-cuda", "in-memory-cuda")
DEFAULT_CONFIGS = ("read-file", "read-mmap", "stream", "in-memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=131072, help="K, classes of the generated head")
    parser.add_argument("--cols", type=int, default=4096, help="D, features of the generated head")
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}"
    )
    parser.add_argument("--max-memory", type=int, help="max_memory of the fits (default: the library's)")
    parser.add_argument("--dir", default="/tmp/fcinterp-bench", help="where the generated head is kept")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one configuration
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_config(args.child, Path(args.path), args.backend, args.max_memory)))
        return 0

    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    path = generate_head(Path(args.dir), args.rows, args.cols)
    records = []
    for config in configs:
        command = [sys.executable, __file__, "--child", config, "--path", str(path), "--backend", args.backend]
        command += ["--max-memory", str(args.max_memory)] if args.max_memory else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{config}: done in {records[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)

    digests = {r["digest"] for r in records if r["digest"]}
    assert len(digests) <= 1, f"fits disagree: {[(r['config'], r['digest']) for r in records]}"
    device = "cuda" if any(r["device"] == "cuda" for r in records) else "cpu"
    head = {"rows": args.rows, "cols": args.cols, "dtype": "bfloat16", "file_bytes": path.stat().st_size}
    table = markdown(records, head, args.backend)
    print("\n" + table)
    config = {"head": head, "backend": args.backend, "configs": configs, "max_memory": args.max_memory}
    written = bench.write_results("stream", records, out=args.out, config=config, device=device, markdown=table)
    print(f"\nwrote {written}")
    return 0


def generate_head(directory: Path, K: int, D: int) -> Path:
    """A K x D bf16 safetensors head of N(0, 0.02^2) weights (deterministic), made once."""
    from safetensors.torch import save_file

    path = directory / f"head-{K}x{D}-bf16.safetensors"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        W = torch.empty(K, D, dtype=torch.bfloat16)
        g = torch.Generator().manual_seed(0)
        for start in range(0, K, 8192):
            W[start : start + 8192] = torch.randn(min(8192, K - start), D, generator=g) * 0.02
        save_file({"embed.weight": torch.zeros(16, D, dtype=torch.bfloat16), NAME: W}, str(path) + ".part")
        os.replace(str(path) + ".part", path)
    return path


def run_config(config: str, path: Path, backend: str, max_memory: int | None) -> dict[str, Any]:
    """One configuration in this (fresh) process: its record (time, rows/s, start and peak RSS, digest)."""
    device = "cuda" if config.endswith("-cuda") else "cpu"
    if device == "cuda":
        torch.zeros(1, device=device)  # the CUDA context belongs to the start, not to the fit
    budget = 256 * 2**20 if config == "stream-256MiB" else max_memory
    plan = plan_fit(path, name=NAME, backend=backend, device=device, max_memory=budget)
    K, D = plan.source.shape
    start_rss = bench.rss_bytes()
    head: Path | torch.Tensor = path
    if config.startswith("in-memory"):
        from safetensors.torch import load_file

        head = load_file(str(path))[NAME].to(device)
        plan = plan_fit(head, backend=backend, max_memory=budget)  # no read-ahead buffers
    fitted: list[HeadFit] = []

    def work() -> None:
        if not config.startswith("read"):
            fitted.append(
                fcinterp_fast.fit(head, name=NAME, backend=backend, max_memory=budget, device=device, progress=False)
            )
            return
        # every block copied into one buffer, as the fit's read-ahead does
        buffer, step = torch.empty(plan.block_rows, D, dtype=plan.source.dtype), plan.block_rows
        if config == "read-file":
            for a in range(0, K, step):
                plan.source.read_into(a, min(a + step, K), buffer[: min(step, K - a)])
        else:  # read-mmap: safetensors' slices are views of the map until their data is touched
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                rows = f.get_slice(NAME)
                for a in range(0, K, step):
                    buffer[: min(step, K - a)].copy_(rows[a : a + step])

    peak_before = bench.peak_rss_bytes()  # time_call resets the high-water mark: keep the one of the start
    timing = bench.time_call(work, device, repeat=1, warmup=0)
    peak = max(peak_before, bench.peak_rss_bytes())
    return {
        "config": config,
        "device": device,
        "rows": K,
        "cols": D,
        "block_rows": plan.block_rows,
        "wall_s": timing.best,
        "rows_per_s": K / timing.best,
        "start_rss_mb": None if start_rss is None else start_rss / 1e6,
        "peak_rss_mb": peak / 1e6,
        "peak_mib": timing.peak_mib,
        "digest": _digest(fitted[0]) if fitted else None,
    }


def _digest(result: HeadFit) -> str:
    """Of the memberships, which every device must reproduce exactly (docs/spec.md section 2)."""
    h = hashlib.sha256(repr(result.nodes).encode())
    for t in (result.count, result.lo, result.hi):
        h.update(t.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def markdown(records: list[dict], head: dict[str, Any], backend: str) -> str:
    """The table of one run, under a line naming the head and the machine."""
    gpu = bench.device_name("cuda") if torch.cuda.is_available() else "no GPU"
    lines = [
        f"{head['rows']} x {head['cols']} bf16 head ({head['file_bytes'] / 1e9:.2f} GB file), "
        f"backend {backend!r}, {os.cpu_count()} CPUs, {gpu}",
        "",
        "| config | device | block rows | wall s | rows/s | RSS at start MB | peak RSS MB | peak - start MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        start = "-" if r["start_rss_mb"] is None else f"{r['start_rss_mb']:.0f}"
        above = "-" if r["start_rss_mb"] is None else f"{r['peak_rss_mb'] - r['start_rss_mb']:.0f}"
        lines.append(
            f"| {r['config']} | {r['device']} | {r['block_rows']} | {r['wall_s']:.1f} | {r['rows_per_s']:.0f} | "
            f"{start} | {r['peak_rss_mb']:.0f} | {above} |"
        )
    fits = [r for r in records if r["digest"]]
    if len(fits) > 1:
        lines += ["", f"all {len(fits)} fits have the same memberships (digest {fits[0]['digest']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
