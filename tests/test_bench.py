"""The benchmark harness (``fcinterp bench``) on tiny heads, and the fidelity of its baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import cam_oracle
import fcinterp_fast
from fcinterp_fast import baselines, bench, cli
from fcinterp_fast.cam import noisy_copies


def run_bench(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["bench", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_quick_run_writes_table_and_json(tmp_path, capsys):
    code, out, err = run_bench(capsys, "--quick", "--out", tmp_path)
    assert code == 0, err
    files = list(tmp_path.glob("fit-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["schema"] == bench.SCHEMA and data["benchmark"] == "fit"
    env = data["environment"]
    assert env["cpu"] and env["timestamp"] and env["versions"]["torch"] == torch.__version__
    assert "git" in env and data["config"]["quick"] is True
    assert files[0].with_suffix(".md").read_text().startswith("| head | dtype |")
    records = data["records"]
    impls = set(bench.implementations())
    assert {(r["head"], r["impl"]) for r in records} == {(h, i) for h in bench.QUICK_HEADS for i in impls}
    for r in records:
        K, D = (int(v) for v in r["head"].split("x"))
        assert r["seconds"] > 0 and r["ns_per_element"] == pytest.approx(r["seconds"] * 1e9 / (K * D))
        assert r["extrapolated"] == (r["rows_timed"] < K)
        assert f"| {r['head']} | fp32 | {r['impl']} |" in out
    assert all(r["extrapolated"] for r in records if r["impl"] in ("numpy-loop", "scipy-ald", "reference"))
    if "cpu" in impls:
        assert all(r["cpu_speedup"] is not None for r in records if r["impl"] not in ("cpu", "cpu-ald"))
    assert "extrapolated per row" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heads", "12by4"], "not KxD"),
        (["--impls", "nope"], "unknown 'nope'"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_options_exit_with_a_message(argv, message, tmp_path, capsys):
    code, _, err = run_bench(capsys, *argv, "--out", tmp_path)
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_author_loop_computes_the_chain_line_fits():
    """The numpy baseline is a faithful per-class version of fit()'s chain, not a strawman."""
    W = bench.make_head((6, 300), seed=3)
    fit = fcinterp_fast.fit(W, backend="reference")
    for k, nodes in enumerate(baselines.author_fit(W.numpy())):
        present = [n for n in fit.nodes if fit.count[k, fit.nodes.index(n)] > 0]
        assert sorted(nodes) == sorted(present)
        for name, (count, slope, intercept, r2) in nodes.items():
            j = fit.nodes.index(name)
            assert count == fit.count[k, j]
            np.testing.assert_allclose(
                [slope, intercept, r2], [fit.slope[k, j], fit.intercept[k, j], fit.r2[k, j]], rtol=1e-9, atol=1e-9
            )


def test_scipy_ald_is_scipys_fit_of_every_row():
    """The scipy baseline is ``laplace_asymmetric.fit`` row by row: its parameters are the MLE, so
    its log-likelihood matches the exact fit's (which scipy's may only approach from below)."""
    from scipy.stats import laplace_asymmetric

    W = bench.make_head((3, 50), seed=1).to(torch.float64)
    kappa_loc_scale = baselines.scipy_ald(W.numpy())
    assert kappa_loc_scale.shape == (3, 3)
    exact = fcinterp_fast.fit(W, backend="reference").ald
    for k, (kappa, loc, scale) in enumerate(kappa_loc_scale):
        np.testing.assert_allclose((kappa, loc, scale), laplace_asymmetric.fit(W[k].numpy()), rtol=1e-12)
        loglik = laplace_asymmetric.logpdf(W[k].numpy(), kappa, loc=loc, scale=scale).sum()
        best = float(exact.loglik[k])
        assert best - 1e-6 * abs(best) <= loglik <= best + 1e-9 * abs(best)
        np.testing.assert_allclose((kappa, scale), (float(exact.kappa[k]), float(exact.scale[k])), rtol=1e-3)
        assert abs(loc - float(exact.loc[k])) <= 1e-3 * scale


def test_synthetic_heads_are_reproducible():
    a, b = bench.make_head((5, 40), seed=7), bench.make_head((5, 40), seed=7)
    assert torch.equal(a, b) and not torch.equal(a, bench.make_head((5, 40), seed=8))
    assert (a > 0).any() and (a < 0).any()


def test_write_results_with_a_fixed_name_is_rewritten_in_the_common_layout(tmp_path):
    """How benchmarks/bench_gpu.py keeps what it measured: the same file rewritten after every record."""
    records = [{"what": "a", "ms": 1.0}]
    first = bench.write_results("gpu", records, out=tmp_path, config={"x": 1}, markdown="| a |", filename="r.json")
    records.append({"what": "b", "ms": None, "skipped": "time budget"})
    second = bench.write_results("gpu", records, out=tmp_path, config={"x": 1}, markdown="| b |", filename="r.json")
    assert first == second == tmp_path / "r.json" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
    data = json.loads(second.read_text())
    assert list(data) == ["schema", "benchmark", "environment", "config", "records"]
    assert data["schema"] == bench.SCHEMA and data["benchmark"] == "gpu" and data["records"] == records
    assert data["environment"]["triton_interpreter"] in (True, False)
    assert (tmp_path / "r.md").read_text() == "| b |\n"


def test_time_call_keeps_to_its_budget_and_reads_memory():
    calls = []
    timing = bench.time_call(lambda: calls.append(torch.ones(2**20).sum()), repeat=50, warmup=2, budget_s=0.0)
    assert len(timing.times_s) == 1 and len(calls) == 3 and timing.best == timing.median > 0
    assert timing.peak_mib is None or timing.peak_mib >= 0
    rss, peak = bench.rss_bytes(), bench.peak_rss_bytes()
    assert peak > 0 and (rss is None or 0 < rss <= peak)


def test_gradcam_baseline_is_the_oracles_smooth_grad_cam():
    """benchmarks/bench_explain.py's pytorch-grad-cam baseline computes what the tests' oracle does."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    ).eval()
    head, k, n = model[4], 2, 3
    original = head.weight.detach().clone()
    row = head.weight[k].detach().abs() * (head.weight[k] > 0)
    ours, theirs = baselines.masked_head_copy(model, head, k, row), cam_oracle.masked_head_copy(model, head, k, row)
    assert ours is not model and torch.equal(ours[4].weight, theirs[4].weight) and ours[4].bias.detach()[k] == 0
    assert torch.equal(head.weight, original) and not torch.equal(ours[4].weight[k], original[k])  # a copy
    copies = noisy_copies(torch.rand(2, 3, 12, 12), n, 0.15, torch.Generator().manual_seed(0))
    maps = baselines.gradcam_smooth_maps(ours, ours[1], copies, n, k)
    assert maps.shape == (2, 12, 12) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, cam_oracle.smooth_maps(theirs, theirs[1], copies, n, k))


def test_cam_dropin_benchmark_quick_run(tmp_path, capsys):
    """benchmarks/bench_cam_dropin.py --quick: both GradCAMPlusPlus, equal maps, a ratio, JSON."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cam_dropin.py"
    if not path.is_file():
        pytest.skip("benchmarks/ is not shipped in the sdist")
    spec = importlib.util.spec_from_file_location("bench_cam_dropin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "| resnet18 (torchvision, random init" in capsys.readouterr().out
    (written,) = tmp_path.glob("cam_dropin-*.json")
    data = json.loads(written.read_text())
    assert data["benchmark"] == "cam_dropin" and data["config"]["quick"] is True
    records = {r["method"]: r for r in data["records"]}
    assert set(records) == {"fcinterp_fast.cam.GradCAMPlusPlus", "pytorch_grad_cam.GradCAMPlusPlus"}
    ours, theirs = records.values()
    assert ours["max_abs_diff"] <= 1e-5 and ours["seconds"] > 0 and theirs["seconds"] > 0
    assert ours["speedup"] == pytest.approx(theirs["seconds"] / ours["seconds"])
