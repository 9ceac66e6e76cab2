"""Time fit() on every backend against the author's numpy loop and scipy; see fcinterp_fast/bench.py.

    python benchmarks/run.py            # the full table (minutes on 2 cores)
    python benchmarks/run.py --quick    # a smoke run on tiny heads

Same options as ``fcinterp bench``. Prints a markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys

from fcinterp_fast import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark fcinterp_fast.fit backends and baselines.")
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
