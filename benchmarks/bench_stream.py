"""Fitting a large head streamed from disk: wall time, rows/s and peak resident memory (RSS).

Generates a K x D bf16 ``.safetensors`` head (default 131072 x 4096 = 1 GiB; kept under ``--dir``
for later runs), then runs each configuration in a fresh process that reports its own peak RSS
(the high-water mark of its own address space, ``VmHWM``; not ``ru_maxrss``, which Linux carries over
from the parent through fork and exec) and the RSS it started from after importing torch (a CUDA build of torch alone
maps ~0.5 GB):

* ``stream``: ``fit(path)`` with the default ``max_memory`` (the measurement of record; target:
  peak RSS under 1.5 GB for the 1 GiB head);
* ``stream-256MiB``: the same with ``max_memory=256 MiB`` (peak memory follows the budget);
* ``in-memory``: the whole head loaded (``safetensors.torch.load_file``), then ``fit(W)``;
* ``read-file`` / ``read-mmap``: every block read and nothing fitted, through ``FileSource`` (plain
  file reads, what ``fit`` uses) and through safetensors' memory-mapped ``get_slice`` (whose pages
  stay resident once read: the reason ``fit`` does not use it);
* ``stream-cuda`` / ``in-memory-cuda``: ``fit(path, device="cuda")`` (pinned buffers, a reader
  thread and a copy stream overlapping the fit) against the head already on the GPU.

In-memory heads are loaded before the clock starts (their memory still counts in the peak), so
``stream`` / ``in-memory`` is the cost of streaming. Fits must agree on every membership (a digest
of the node names, counts, lo and hi is compared). Prints a markdown table and writes JSON under
``benchmarks/results/``.

    python benchmarks/bench_stream.py [--rows 131072] [--cols 4096] [--backend torch]
        [--configs read-file,read-mmap,stream,in-memory] [--max-memory BYTES] [--dir /tmp/fcinterp-bench]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
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
    rows = []
    for config in configs:
        command = [sys.executable, __file__, "--child", config, "--path", str(path), "--backend", args.backend]
        command += ["--max-memory", str(args.max_memory)] if args.max_memory else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{config}: done in {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)

    digests = {r["digest"] for r in rows if r["digest"]}
    assert len(digests) <= 1, f"fits disagree: {[(r['config'], r['digest']) for r in rows]}"
    print_table(rows, path, args)
    write_json(rows, path, args)
    return 0


def generate_head(directory: Path, K: int, D: int) -> Path:
    """A K x D bf16 safetensors head of N(0, 0.02^2) weights (deterministic), made once."""
    import torch
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


def run_config(config: str, path: Path, backend: str, max_memory: int | None) -> dict:
    """One configuration in this (fresh) process: time, rows/s, start and peak RSS."""
    import psutil
    import torch

    import fcinterp_fast
    from fcinterp_fast.api import plan_fit
    from fcinterp_fast.bench import peak_rss_bytes, sync

    device = "cuda" if config.endswith("-cuda") else "cpu"
    if device == "cuda":
        torch.zeros(1, device=device)  # the CUDA context belongs to the start, not to the fit
    budget = 256 * 2**20 if config == "stream-256MiB" else max_memory
    plan = plan_fit(path, name=NAME, backend=backend, device=device, max_memory=budget)
    K, D = plan.source.shape
    start_rss = psutil.Process().memory_info().rss
    head, digest = path, None
    if config.startswith("in-memory"):
        from safetensors.torch import load_file

        head = load_file(str(path))[NAME].to(device)
        plan = plan_fit(head, backend=backend, max_memory=budget)  # no read-ahead buffers
    sync(device)
    begin = time.perf_counter()
    if not config.startswith("read"):
        result = fcinterp_fast.fit(head, name=NAME, backend=backend, max_memory=budget, device=device, progress=False)
        sync(device)
        digest = _digest(result)
    else:  # every block copied into one buffer, as the fit's read-ahead does
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
    wall = time.perf_counter() - begin
    peak = peak_rss_bytes()
    return {
        "config": config,
        "device": device,
        "rows": K,
        "cols": D,
        "block_rows": plan.block_rows,
        "wall_s": wall,
        "rows_per_s": K / wall,
        "start_rss_mb": start_rss / 1e6,
        "peak_rss_mb": peak / 1e6,
        "digest": digest,
    }


def _digest(result) -> str:
    """Of the memberships, which every device must reproduce exactly (docs/spec.md section 2)."""
    h = hashlib.sha256(repr(result.nodes).encode())
    for t in (result.count, result.lo, result.hi):
        h.update(t.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def print_table(rows: list[dict], path: Path, args) -> None:
    size = path.stat().st_size / 1e9
    print(
        f"\n{args.rows} x {args.cols} bf16 head ({size:.2f} GB file), backend {args.backend!r}, {os.cpu_count()} CPUs, {_gpu_name()}\n"
    )
    print("| config | device | block rows | wall s | rows/s | RSS at start MB | peak RSS MB | peak - start MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['config']} | {r['device']} | {r['block_rows']} | {r['wall_s']:.1f} | {r['rows_per_s']:.0f} | "
            f"{r['start_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['start_rss_mb']:.0f} |"
        )
    fits = [r for r in rows if r["digest"]]
    if len(fits) > 1:
        print(f"\nall {len(fits)} fits have the same memberships (digest {fits[0]['digest']})")


def write_json(rows: list[dict], path: Path, args) -> None:
    import torch

    import fcinterp_fast
    from fcinterp_fast.bench import git_state

    git = git_state()
    sha = git["sha"] if git else ""
    stamp = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "benchmark": "stream",
        "time": stamp.isoformat(timespec="seconds"),
        "git_sha": sha,
        "fcinterp_fast": fcinterp_fast.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": _gpu_name(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "head": {"rows": args.rows, "cols": args.cols, "dtype": "bfloat16", "file_bytes": path.stat().st_size},
        "backend": args.backend,
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"bench_stream-{stamp.strftime('%Y%m%dT%H%M%S')}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target}")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"


if __name__ == "__main__":
    sys.exit(main())
