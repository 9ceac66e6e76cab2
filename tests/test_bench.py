"""The benchmark harness (``fcinterp bench``) on tiny heads, and the fidelity of its baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fcinterp_fast
from fcinterp_fast import baselines, bench, cli


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
