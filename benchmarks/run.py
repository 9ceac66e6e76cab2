"""Time fit() on every backend against the author's numpy loop and scipy; see fcinterp_fast/bench.py.

    python benchmarks/run.py            # the full table (minutes on 2 cores)
    python benchmarks/run.py --quick    # a smoke run on tiny heads

``fcinterp bench`` under another name: the same options (``--help``), a markdown table printed and
JSON in the common layout (``fcinterp_fast.bench.write_results``) written to ``--out``
(default benchmarks/results/).
"""

from __future__ import annotations

import sys

from fcinterp_fast import cli

if __name__ == "__main__":
    sys.exit(cli.main(["bench", *sys.argv[1:]]))
