"""benchmarks/bench_gof.py --quick: the goodness-of-fit benchmark runs and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import fcinterp_fast

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gof.py"


def test_quick_run_writes_its_ratios(tmp_path, capsys):
    if fcinterp_fast.available_backends()["cpu"] != "available":
        pytest.skip("the cpu backend is not built")
    spec = importlib.util.spec_from_file_location("bench_gof", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "goodness of fit adds" in printed
    (path,) = tmp_path.glob("gof-*.json")
    data = json.loads(path.read_text())
    assert data["benchmark"] == "gof" and data["config"]["quick"] is True
    names = [r["what"] for r in data["records"]]
    assert names == ["cpu-no-gof", "cpu", "fit", "fit+null-normal", "null_head-normal", "ratios"]
    assert all(r["best_wall_s"] > 0 and r["best_cpu_s"] >= 0 for r in data["records"][:-1])
    assert set(data["records"][-1]["wall"]) == {"gof_overhead", "null_overhead", "gof_null_overhead"}
    assert path.with_suffix(".md").exists()


def test_the_cpu_kernel_can_skip_the_sweep():
    import torch

    from fcinterp_fast.backends import cpu
    from fcinterp_fast.config import FitConfig

    if cpu.unavailable() is not None:
        pytest.skip("the cpu backend is not built")
    W = torch.randn(4, 50, dtype=torch.float64)
    with_gof, without = cpu.fit_rows(W, FitConfig()), cpu.fit_rows(W, FitConfig(), gof=False)
    assert torch.isfinite(with_gof.ks).all() and torch.isnan(without.ks).all()
    assert torch.equal(with_gof.r2.nan_to_num(), without.r2.nan_to_num())
