"""Null heads (docs/spec.md section 7): their distributions, seeds, streaming, and ``fit(null=...)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcinterp_fast
from checks import assert_same_fit
from fcinterp_fast.heads.source import TensorSource
from fcinterp_fast.nulls import CHUNK_ROWS, NullSource

stats = pytest.importorskip("scipy.stats")


def _head(K: int = 40, D: int = 4000) -> torch.Tensor:
    """Rows with different locations, scales and skews (ALD samples)."""
    rng = np.random.default_rng(12)
    rows = [
        stats.laplace_asymmetric.rvs(0.5 + k / K, loc=k / 10, scale=0.1 + k / 50, size=D, random_state=rng)
        for k in range(K)
    ]
    return torch.tensor(np.stack(rows))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_shape_dtype_and_seeds(dtype):
    W = _head(5, 64).to(dtype)
    before = W.clone()
    for kind in ("normal", "laplace", "ald"):
        a = fcinterp_fast.null_head(W, kind, generator=_seeded(1))
        assert (a.shape, a.dtype, a.device) == (W.shape, W.dtype, W.device)
        assert torch.equal(a, fcinterp_fast.null_head(W, kind, generator=_seeded(1)))
        assert not torch.equal(a, fcinterp_fast.null_head(W, kind, generator=_seeded(2)))
        assert torch.isfinite(a).all()
    assert torch.equal(W, before)
    conv = W.reshape(5, 64, 1, 1)
    assert fcinterp_fast.null_head(conv, "normal", generator=_seeded(1)).shape == conv.shape


def test_rows_follow_their_models():
    """Each null row has its real row's parameters (statistically: D = 4000 draws per row)."""
    W = _head()
    x = W.numpy()
    normal = fcinterp_fast.null_head(W, "normal", generator=_seeded(0)).numpy()
    np.testing.assert_allclose(normal.mean(1), x.mean(1), atol=5 * x.std(1).max() / np.sqrt(x.shape[1]))
    np.testing.assert_allclose(normal.std(1), x.std(1), rtol=0.06)
    laplace = fcinterp_fast.null_head(W, "laplace", generator=_seeded(0)).numpy()
    b = np.abs(x - np.median(x, 1, keepdims=True)).mean(1)
    np.testing.assert_allclose(np.abs(laplace - np.median(laplace, 1, keepdims=True)).mean(1), b, rtol=0.06)
    ald = fcinterp_fast.null_head(W, "ald", generator=_seeded(0))
    real, drawn = fcinterp_fast.fit(W).ald, fcinterp_fast.fit(ald).ald
    np.testing.assert_allclose(drawn.kappa, real.kappa, rtol=0.08)
    np.testing.assert_allclose(drawn.scale, real.scale, rtol=0.08)
    # and each row is what it says: KS against the model that drew it
    k = 7
    ks = stats.kstest(ald[k].numpy(), "laplace_asymmetric", args=(real.kappa[k], real.loc[k], real.scale[k]))
    assert ks.pvalue > 1e-3


def test_rows_do_not_depend_on_the_blocks_that_read_them():
    W = _head(2 * CHUNK_ROWS + 17, 32)
    source = NullSource(TensorSource(W), "ald", seed=5)
    whole = source.rows(0, W.shape[0])
    again = NullSource(TensorSource(W), "ald", seed=5)
    pieces = torch.cat([again.rows(a, min(a + 100, W.shape[0])) for a in range(0, W.shape[0], 100)])
    assert torch.equal(whole, pieces)
    # a row's draw depends on its own chunk only
    assert torch.equal(NullSource(TensorSource(W[:CHUNK_ROWS]), "ald", seed=5).rows(0, CHUNK_ROWS), whole[:CHUNK_ROWS])


def test_fit_null_is_reproducible_and_streamed(tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file
    W = _head(300, 96).to(torch.float32)
    path = tmp_path / "head.safetensors"
    save_file({"fc.weight": W.contiguous()}, str(path))
    in_memory = fcinterp_fast.fit(W, null=("normal", "ald"), null_seed=3)
    streamed = fcinterp_fast.fit(path, null=["normal", "ald"], null_seed=3, max_memory=50_000, backend="torch")
    assert list(in_memory.null) == ["normal", "ald"]
    for kind in ("normal", "ald"):
        null = in_memory.null[kind]
        assert null.config == in_memory.config and null.null == {}
        assert_same_fit(null, fcinterp_fast.fit(NullSource(TensorSource(W), kind, 3)))
        torch.testing.assert_close(streamed.null[kind].r2, null.r2, rtol=1e-9, atol=1e-12, equal_nan=True)
        assert null.mask("+").shape == W.shape  # masks read the null head again
    other = fcinterp_fast.fit(W, null="normal", null_seed=4).null["normal"]
    assert not torch.equal(other.ald.loc, in_memory.null["normal"].ald.loc)
    assert fcinterp_fast.fit(W).null == {}


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(null="uniform"), ValueError, "unknown null kind 'uniform'"),
        (dict(null=("normal", "normal")), ValueError, "names a kind twice"),
        (dict(null=3), TypeError, "null must be None"),
        (dict(null="normal", null_seed=-1), ValueError, "null_seed must be"),
        (dict(null="normal", null_seed=1.5), TypeError, "null_seed must be"),
    ],
)
def test_bad_null_options(options, error, match):
    with pytest.raises(error, match=match):
        fcinterp_fast.fit(torch.randn(3, 30), **options)


def test_null_head_bad_arguments():
    with pytest.raises(ValueError, match="unknown null kind"):
        fcinterp_fast.null_head(torch.randn(3, 30), "cauchy")
    with pytest.raises(TypeError, match="generator must be"):
        fcinterp_fast.null_head(torch.randn(3, 30), "normal", generator=0)


def test_degenerate_rows_warn_once_not_for_each_null():
    import warnings

    W = torch.randn(4, 50, dtype=torch.float64)
    W[1] = 2.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fcinterp_fast.fit(W, null=("normal", "ald"))
    assert len([w for w in caught if "degenerate" in str(w.message)]) == 1
    assert torch.isnan(fit.null["normal"].gof.ks[1])  # the null of a constant row is constant
