"""Goodness of fit (docs/spec.md section 7) of every backend against scipy's densities and kstest.

Each statistic is recomputed here from scipy alone: the Laplace and the normal log-likelihoods as
sums of ``scipy.stats.laplace`` / ``norm`` ``logpdf`` at their closed-form MLEs, the ALD one with
``laplace_asymmetric.logpdf`` at the fitted parameters, the KS statistic and p-value with
``scipy.stats.kstest``; the likelihood ratio, its p-value and the AIC differences from those sums.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fcinterp_fast

stats = pytest.importorskip("scipy.stats")

RTOL = 1e-9  # docs/spec.md section 7


#: Scale of each row of ``_rows``: scipy's own sums over/underflow there, so the expected values are
#: computed on the row divided by it (a log-likelihood then moves by -n ln(factor), the KS not at all).
_FACTORS = [1.0, 1.0, 1.0, 1.0, 1.0, 1e-200, 1e150]


def _rows(n: int = 257) -> np.ndarray:
    """Rows of one head: normal, Laplace, skewed ALD both ways, many ties, tiny and huge scales."""
    rng = np.random.default_rng(712)
    rows = [
        rng.normal(0.3, 2.0, n),
        rng.laplace(-1.0, 0.5, n),
        stats.laplace_asymmetric.rvs(0.4, loc=0.01, scale=0.02, size=n, random_state=rng),
        stats.laplace_asymmetric.rvs(2.5, loc=-3.0, scale=1.5, size=n, random_state=rng),
        np.round(rng.normal(0, 2, n)),  # ties everywhere
        rng.standard_t(3, n) * 1e-200,
        rng.standard_t(3, n) * 1e150,
    ]
    return np.stack(rows)


def _expected(x: np.ndarray, loc: float, scale: float, kappa: float, factor: float = 1.0) -> dict[str, float]:
    n = len(x)
    x, loc, scale = x / factor, loc / factor, scale / factor
    shift = -n * math.log(factor)
    median = np.median(x)
    b = np.mean(np.abs(x - median))
    ll_laplace = stats.laplace.logpdf(x, median, b).sum() + shift
    ll_normal = stats.norm.logpdf(x, x.mean(), x.std()).sum() + shift
    ll_ald = stats.laplace_asymmetric.logpdf(x, kappa, loc, scale).sum() + shift
    ks = stats.kstest(x, "laplace_asymmetric", args=(kappa, loc, scale))
    lr = 2 * (ll_ald - ll_laplace)
    return {
        "loglik_ald": ll_ald,
        "loglik_laplace": ll_laplace,
        "loglik_normal": ll_normal,
        "lr_asym": lr,
        "p_asym": stats.chi2(1).sf(max(lr, 0.0)),
        "daic_normal": (4 - 2 * ll_normal) - (6 - 2 * ll_ald),
        "daic_laplace": (4 - 2 * ll_laplace) - (6 - 2 * ll_ald),
        "ks": ks.statistic,
        "ks_p": ks.pvalue,
        "n": n,
    }


def _check(fit, W: np.ndarray) -> None:
    got = fit.gof.columns()
    assert set(got) == set(fit.gof.FIELDS)
    for k, x in enumerate(W):
        ald = (fit.ald.loc[k].item(), fit.ald.scale[k].item(), fit.ald.kappa[k].item())
        want = _expected(x, *ald, factor=_FACTORS[k] if len(W) == len(_FACTORS) else 1.0)
        for name in fit.gof.FIELDS:
            # differences of log-likelihoods cancel: their tolerance is that of the terms
            scale = abs(want["loglik_normal"]) + abs(want["loglik_ald"]) if name.startswith(("lr", "daic")) else 0.0
            assert got[name][k] == pytest.approx(want[name], rel=RTOL, abs=RTOL * scale + 1e-300), (k, name)


def test_gof_matches_scipy(backend):
    W = _rows()
    fit = backend.fit(torch.from_numpy(W))
    for name in fit.gof.FIELDS:
        t = fit.gof[name]
        assert (t.shape, t.dtype, t.device.type) == ((len(W),), torch.float64, backend.device)
    _check(fit, W)


def test_gof_of_float32_head_reads_the_values_fitted(backend):
    W = torch.from_numpy(_rows(300)[:5]).to(torch.float32)
    _check(backend.fit(W), W.to(torch.float64).numpy())


def test_backends_agree_with_reference(backend):
    W = torch.from_numpy(_rows(101))
    want = fcinterp_fast.fit(W, backend="reference").gof.columns()
    got = backend.fit(W).gof.columns()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=1e-12, err_msg=name)


def test_ald_nests_laplace():
    """lr_asym >= 0 up to rounding on real-looking rows, and a symmetric sample gives a small one."""
    rng = np.random.default_rng(5)
    W = torch.from_numpy(rng.laplace(0, 1, (50, 400)))
    gof = fcinterp_fast.fit(W, backend="torch").gof
    assert (gof.lr_asym > -1e-9 * gof.loglik_ald.abs()).all()
    assert float(gof.lr_asym.median()) < 3.84  # chi2(1) 95% quantile: most symmetric rows pass


@pytest.mark.parametrize(
    "row",
    [[1.0, 2.0], [3.0] * 10, [0.0, 0.0, 0.0, 1.0], [5.0, 5.0, 5.0, 5.0, -1.0]],
    ids=["n<3", "all-equal", "ties-alpha", "ties-beta"],
)
def test_degenerate_rows_give_nan(backend, row):
    W = torch.tensor([row, [0.5 * i for i in range(len(row))]], dtype=torch.float64)
    W[1, 0] = -1.0
    fit = backend.fit(W)
    gof = fit.gof.columns()
    n = len(row)
    flat = len(set(row)) == 1
    if n < 3 or flat:
        assert all(np.isnan(gof[name][0]) for name in fit.gof.FIELDS), gof
    else:  # the ALD has no density (scale 0 or kappa 0 / inf), the Laplace and normal have one
        assert np.isnan(gof["loglik_ald"][0]) and np.isnan(gof["ks"][0]) and np.isnan(gof["daic_normal"][0])
        assert np.isfinite(gof["loglik_laplace"][0]) and np.isfinite(gof["loglik_normal"][0])
    if n >= 3:  # the other row of the block is not affected
        assert all(np.isfinite(gof[name][1]) for name in ("loglik_normal", "loglik_laplace", "ks"))


def test_ks_p_is_kstest_pvalue_for_long_rows():
    """Rows longer than scipy's exact-method crossover still get kstest's p-value."""
    from fcinterp_fast.gof import ks_pvalue

    rng = np.random.default_rng(1)
    x = np.sort(rng.laplace(0, 1, 20000))
    res = stats.kstest(x, "laplace_asymmetric", args=(1.0, 0.0, 1.0))
    assert ks_pvalue([res.statistic], len(x))[0] == pytest.approx(res.pvalue, rel=RTOL)
    assert math.isnan(ks_pvalue([math.nan], 10)[0])


def test_gof_table():
    pd = pytest.importorskip("pandas")
    fit = fcinterp_fast.fit(torch.from_numpy(_rows(64)), backend="torch")
    frame = fit.gof.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(fit.gof.FIELDS) and len(frame) == 7
    with pytest.raises(KeyError, match="unknown goodness-of-fit column 'kappa'"):
        fit.gof["kappa"]


def test_native_goodness_of_fit_outputs_are_checked():
    from fcinterp_fast.backends import cpu

    if cpu.unavailable() is not None:
        pytest.skip("the cpu backend is not built")
    from fcinterp_fast import _cpu

    head = np.random.default_rng(0).normal(size=(3, 40))
    out = {n: np.empty((3, 2)) for n in ("mean", "lo", "hi", "slope", "intercept", "r2")}
    out["count"] = np.empty((3, 2), dtype=np.int64)
    out.update({n: np.empty(3) for n in ("loc", "scale", "kappa", "loglik")})
    args = (head, "float64", "chain", "zero", "paper", 20, 1)
    with pytest.raises(ValueError, match="all of loglik_laplace, loglik_normal and ks, or none"):
        _cpu.fit_rows(*args, **out, ks=np.empty(3))
    with pytest.raises(TypeError, match="'ks' must be a numpy array"):
        _cpu.fit_rows(*args, **out, loglik_laplace=np.empty(3), loglik_normal=np.empty(3), ks=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="'loglik_normal' must have shape"):
        _cpu.fit_rows(*args, **out, loglik_laplace=np.empty(3), loglik_normal=np.empty(4), ks=np.empty(3))
    gof = {n: np.full(3, -1.0) for n in ("loglik_laplace", "loglik_normal", "ks")}
    _cpu.fit_rows(*args, **out, **gof)
    for k in range(3):
        want = stats.kstest(head[k], "laplace_asymmetric", args=(out["kappa"][k], out["loc"][k], out["scale"][k]))
        assert gof["ks"][k] == pytest.approx(want.statistic, rel=RTOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_native_counted_rows_have_the_goodness_of_fit_of_sorted_rows(dtype):
    """16-bit rows the cpu kernel counts instead of sorting (csrc/fit.h) get the same sweep."""
    from fcinterp_fast.backends import cpu
    from fcinterp_fast.config import FitConfig

    if cpu.unavailable() is not None:
        pytest.skip("the cpu backend is not built")
    W = torch.from_numpy(_rows(300)[:5]).to(dtype)
    W[4] = torch.round(W[4] * 2)  # many ties: long runs
    counted = cpu._fit_rows(W, FitConfig(), None, counting_from=16)
    sorted_rows = cpu._fit_rows(W, FitConfig(), None)
    for name in ("loglik_laplace", "loglik_normal", "ks"):
        torch.testing.assert_close(getattr(counted, name), getattr(sorted_rows, name), rtol=1e-12, atol=0)
    _check(fcinterp_fast.fit(W, backend="cpu"), W.to(torch.float64).numpy())


def test_goodness_of_fit_is_saved_and_loaded(tmp_path):
    W = torch.from_numpy(_rows(64))
    fit = fcinterp_fast.fit(W, backend="torch")
    loaded = fcinterp_fast.HeadFit.load(fit.save(tmp_path / "fit.npz"), head=W)
    for name, values in fit.gof.columns().items():
        np.testing.assert_array_equal(loaded.gof[name].numpy(), values, err_msg=name)
