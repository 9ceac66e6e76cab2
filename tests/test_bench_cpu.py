"""benchmarks/bench_cpu.py in its quick mode: it runs, prints its table and writes cpu_fit.json with
every measurement (speed goals live in the benchmark, never in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fcinterp_fast.backends import cpu

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(cpu.unavailable() is not None, reason=f"backend 'cpu' unavailable: {cpu.unavailable()}")
def test_quick_run_writes_table_and_json(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "cpu_fit.json").read_text())
    assert data["benchmark"] == "cpu_fit" and data["config"]["quick"] is True
    assert len(data["config"]["loadavg_before"]) == 3 and data["config"]["omp_wait_policy"]
    records = data["records"]
    fits = [r for r in records if r["measure"] == "fit"]
    assert {(r["head"], r["dtype"]) for r in fits} == {
        (h, d) for h in ("40x200", "24x600") for d in ("fp32", "bf16", "fp16")
    }
    for r in fits:
        assert r["ratio"] == pytest.approx(r["fit_s"] / r["np_sort_float32_s"])
        assert r["ratio_cpu"] == pytest.approx(r["fit_cpu_s"] / r["np_sort_float32_cpu_s"])
        assert set(r["phases_ns_per_element"]) == set(cpu.PHASES)
        assert all(v >= 0 for v in r["phases_ns_per_element"].values()) and r["threads"] == 1
        assert f"| {r['head']} | {r['dtype']} |" in done.stdout
    sorts = [r for r in records if r["measure"] == "sort"]
    if cpu.build_info()["sorting_network"]:
        assert {(r["head"].split("x")[1], r["dtype"]) for r in sorts} == {
            (n, d) for n in ("64", "600") for d in ("fp32", "bf16")
        }
        assert all(r["network_ns_per_key"] > 0 and r["radix_ns_per_key"] > 0 for r in sorts)
        assert all(r["picked"] == "network" for r in sorts)  # both lengths are within 16 KiB of keys
        assert "| sort: rows | dtype | network (ns/key) |" in done.stdout
    else:
        assert sorts == []
    others = {r["measure"]: r for r in records if r["measure"] not in ("fit", "sort")}
    assert set(others) == {"threads", "author-loop", "scipy-ald"}
    for r in others.values():
        assert r["ratio"] > 0
    assert (tmp_path / "cpu_fit.md").read_text().startswith("| head | dtype | cpu fit (ms)")
