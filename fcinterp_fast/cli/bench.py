"""``fcinterp bench``: time ``fit()`` on every backend against the author's numpy loop and scipy.

What is measured, and how, is described in ``fcinterp_fast.bench``. Prints a markdown table and
writes JSON (``bench.write_results``) under ``--out``:

    fcinterp bench --quick                         # a smoke run on tiny heads
    fcinterp bench --heads 1000x1280 --dtypes fp32,bf16 --impls cpu,numpy-loop --threads 1
"""

from __future__ import annotations

import argparse

import torch

from .. import bench
from . import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fcinterp bench``."""
    parser.add_argument(
        "--heads",
        default=",".join(bench.DEFAULT_HEADS),
        help="comma-separated KxD shapes; 1000x1280 is the bundled EfficientNet-Lite0 head "
        f"(default: {','.join(bench.DEFAULT_HEADS)})",
    )
    parser.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated, from {','.join(bench.DTYPES)}")
    parser.add_argument(
        "--impls", default=None, help="comma-separated implementations (default: all available; see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the implementations available here and exit")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the fast implementations (best kept)")
    parser.add_argument(
        "--slow-rows",
        type=int,
        default=16,
        help="rows timed for reference, numpy-loop and scipy-ald (extrapolated to the head)",
    )
    parser.add_argument(
        "--torch-rows",
        type=int,
        default=1000,
        help="most rows timed for backend 'torch' on the CPU (extrapolated beyond)",
    )
    parser.add_argument("--out", default="benchmarks/results", help="directory for the JSON results")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: heads {','.join(bench.QUICK_HEADS)}, fp32 only, 1 repeat, 2 slow rows",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic heads")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for torch and the cpu backend (default: torch's default)"
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="a synthetic 1000x1280 head instead of the bundled EfficientNet-Lite0 classifier",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table, write the JSON."""
    if args.quick:
        args.heads, args.dtypes, args.repeat, args.slow_rows = ",".join(bench.QUICK_HEADS), "fp32", 1, 2
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    impls = bench.implementations(args.slow_rows, args.torch_rows)
    if args.list:
        for impl in impls.values():
            print(f"{impl.name:12s} {impl.what} on {impl.device}")
        return 0
    try:
        dtypes = [bench.DTYPES[name] for name in args.dtypes.split(",") if name]
        chosen = [impls[name] for name in args.impls.split(",")] if args.impls else list(impls.values())
    except KeyError as error:
        raise UsageError(
            f"unknown {error}; implementations here: {', '.join(impls)}; dtypes: {', '.join(bench.DTYPES)}"
        ) from None
    shapes = [bench.parse_shape(text) for text in args.heads.split(",") if text]
    records = bench.fit_records(shapes, dtypes, chosen, repeat=args.repeat, seed=args.seed, bundled=not args.synthetic)
    table = bench.markdown_table(records)
    print(table)
    config = {key: value for key, value in vars(args).items() if not callable(value)}
    path = bench.write_results("fit", records, out=args.out, config=config, markdown=table)
    print(f"\nwrote {path}")
    return 0
