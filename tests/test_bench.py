"""The benchmark harness (``fcinterp bench``) on tiny heads, and the fidelity of its baselines."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import fcinterp_fast
from fcinterp_fast import baselines, bench


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_quick_run_writes_table_and_json(tmp_path, capsys):
    assert bench.run(_args("--quick", "--out", str(tmp_path))) == 0
    out = capsys.readouterr().out
    files = list(tmp_path.glob("fit-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    env = data["environment"]
    assert env["cpu"] and env["timestamp"] and env["versions"]["torch"] == torch.__version__
    assert "git" in env and data["config"]["quick"] is True
    records = data["records"]
    impls = set(bench.implementations(_args()))
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


def test_bad_options_exit_with_a_message(tmp_path, capsys):
    assert bench.run(_args("--heads", "12by4", "--out", str(tmp_path))) == 2
    assert "not KxD" in capsys.readouterr().err
    assert bench.run(_args("--impls", "nope", "--out", str(tmp_path))) == 2
    assert "unknown 'nope'" in capsys.readouterr().err
    assert bench.run(_args("--threads", "0", "--out", str(tmp_path))) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


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
            np.testing.assert_allclose([slope, intercept, r2],
                                       [fit.slope[k, j], fit.intercept[k, j], fit.r2[k, j]], rtol=1e-9, atol=1e-9)  # fmt: skip


def test_scipy_ald_rows():
    W = bench.make_head((3, 50), seed=1)
    kappa_loc_scale = baselines.scipy_ald(W.numpy())
    assert kappa_loc_scale.shape == (3, 3) and np.isfinite(kappa_loc_scale).all()


def test_synthetic_heads_are_reproducible():
    a, b = bench.make_head((5, 40), seed=7), bench.make_head((5, 40), seed=7)
    assert torch.equal(a, b) and not torch.equal(a, bench.make_head((5, 40), seed=8))
    assert (a > 0).any() and (a < 0).any()
