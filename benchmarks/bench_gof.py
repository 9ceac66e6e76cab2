"""What the goodness of fit and a null head add to the ``cpu`` fit of a head (docs/spec.md section 7).

Times, on one head (default: the bundled 1000x1280 EfficientNet-Lite0 classifier, float32), the
calls below taking turns over ``--repeat`` rounds after one warm-up call each (best round of each,
in wall time and in the process's CPU time, which a shared machine disturbs less):

* ``cpu-no-gof``: the ``cpu`` backend's kernel on the whole head with the goodness-of-fit sweep
  switched off (``cpu.fit_rows(W, cfg, gof=False)``): the fit as it was before section 7;
* ``cpu``: the same with the sweep (``cpu.fit_rows(W, cfg)``, what ``fit`` runs);
* ``fit``: ``fcinterp_fast.fit(W, backend="cpu")`` (checks, blocks, ``HeadFit``);
* ``fit+null-normal``: ``fcinterp_fast.fit(W, backend="cpu", null="normal")``;
* ``null_head-normal``: drawing the normal null head alone (``fcinterp_fast.null_head``).

Ratios from the one run, per clock: ``gof_overhead`` = cpu / cpu-no-gof - 1, ``null_overhead`` =
fit+null-normal / fit - 1, and ``gof_null_overhead`` = fit+null-normal / (fit with the kernel's time
replaced by cpu-no-gof's) - 1: what the goodness of fit and one null head add to the fit without
them. A null head is a second head to fit, so that last ratio is at least about 100% by nature.
Prints a markdown table and writes JSON through ``bench.write_results("gof", ...)`` under ``--out``.

    python benchmarks/bench_gof.py [--repeat 7] [--threads N] [--out benchmarks/results]
    python benchmarks/bench_gof.py --quick      # a smoke run on a small synthetic head
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import fcinterp_fast
from fcinterp_fast import bench
from fcinterp_fast.backends import cpu
from fcinterp_fast.config import FitConfig

QUICK_SHAPE = (64, 256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per measurement (best is kept)")
    parser.add_argument("--threads", type=int, help="torch / OpenMP threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run on a {QUICK_SHAPE} synthetic head")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if cpu.unavailable() is not None:
        parser.error(f"the cpu backend is not available: {cpu.unavailable()}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shape = QUICK_SHAPE if args.quick else bench.BUNDLED_SHAPE
    head = bench.make_head(shape, seed=0)
    repeat = 1 if args.quick else args.repeat
    cfg = FitConfig()
    calls = {
        "cpu-no-gof": lambda: cpu.fit_rows(head, cfg, gof=False),
        "cpu": lambda: cpu.fit_rows(head, cfg),
        "fit": lambda: fcinterp_fast.fit(head, backend="cpu"),
        "fit+null-normal": lambda: fcinterp_fast.fit(head, backend="cpu", null="normal"),
        "null_head-normal": lambda: fcinterp_fast.null_head(head, "normal", generator=torch.Generator().manual_seed(0)),
    }
    for call in calls.values():  # warm-up: lazy imports, first touch
        call()
    # The calls take turns over the rounds (the machine may be shared: each keeps its best round),
    # timed in wall time and in CPU time of the process (all threads).
    wall = {name: float("inf") for name in calls}
    cpu_time = dict(wall)
    for _ in range(repeat):
        for name, call in calls.items():
            start_cpu = time.process_time()
            timing = bench.time_call(call, repeat=1, warmup=0)
            cpu_time[name] = min(cpu_time[name], time.process_time() - start_cpu)
            wall[name] = min(wall[name], timing.best)
    ratios = {}
    for clock, seconds in (("wall", wall), ("cpu", cpu_time)):
        without = seconds["fit"] - seconds["cpu"] + seconds["cpu-no-gof"]  # fit() as it was before section 7
        ratios[clock] = {
            "gof_overhead": seconds["cpu"] / seconds["cpu-no-gof"] - 1,
            "null_overhead": seconds["fit+null-normal"] / seconds["fit"] - 1,
            "gof_null_overhead": seconds["fit+null-normal"] / without - 1,
        }
    records = [
        {
            "what": name,
            "shape": list(shape),
            "dtype": "float32",
            "threads": torch.get_num_threads(),
            "best_wall_s": wall[name],
            "best_cpu_s": cpu_time[name],
        }
        for name in calls
    ]
    records.append({"what": "ratios", **ratios})
    lines = [
        f"head {shape[0]}x{shape[1]} float32, {torch.get_num_threads()} threads, best of {repeat} rounds",
        "",
        "| what | best wall ms | best CPU ms |",
        "|---|---:|---:|",
        *(f"| {name} | {1e3 * wall[name]:.2f} | {1e3 * cpu_time[name]:.2f} |" for name in calls),
        "",
        *(
            f"{clock} time: goodness of fit adds {100 * r['gof_overhead']:.1f}% to the cpu kernel; one null head "
            f"adds {100 * r['null_overhead']:.1f}% to fit(); both add {100 * r['gof_null_overhead']:.1f}% to "
            f"fit() without them"
            for clock, r in ratios.items()
        ),
    ]
    markdown = "\n".join(lines)
    print(markdown)
    config = {"shape": list(shape), "repeat": repeat, "quick": args.quick, "threads": torch.get_num_threads()}
    path = bench.write_results("gof", records, out=args.out, config=config, markdown=markdown)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
