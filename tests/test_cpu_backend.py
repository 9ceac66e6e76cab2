"""``backend="cpu"`` (the C++ extension) against ``reference``, and its native entry points.

* Property tests: hypothesis heads with ties, zeros, all-equal rows, 1-3 element rows, huge and
  tiny magnitudes (float64 subnormals included), all four dtypes, non-contiguous views, both trees,
  roots and grids. Memberships (count, lo, hi) and the ALD location must equal the reference
  exactly; every other statistic agrees to float64 rounding.
* The bundled EfficientNet-Lite0 head (1000 x 1280).
* ``fcinterp_fast._cpu`` called directly with hostile arguments raises instead of crashing.
* Packaging: a failed compile still installs; a missing extension is reported, not fatal.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fcinterp_fast
from checks import assert_matches_oracle, assert_within
from fcinterp_fast.backends import cpu, reference, torch_vec
from fcinterp_fast.config import FitConfig
from strategies import FLOAT_DTYPES

pytestmark = pytest.mark.skipif(cpu.unavailable() is not None, reason=f"backend 'cpu' unavailable: {cpu.unavailable()}")

ROOT = Path(__file__).resolve().parents[1]
# Largest power-of-two scale per dtype that keeps every drawn value (|v| <= 4) finite; the sums of a
# float64 row must stay finite too (the fit() front end rejects larger rows).
MAX_EXPONENT = {torch.float16: 13, torch.bfloat16: 120, torch.float32: 120, torch.float64: 900}
MIN_EXPONENT = {torch.float16: -20, torch.bfloat16: -120, torch.float32: -120, torch.float64: -1060}
NODE_STATS = ("mean", "slope", "intercept", "r2")
# At least 60 examples, more when the loaded profile asks for more (conftest loads it before this
# module is imported; HYPOTHESIS_PROFILE=thorough gives 600).
SETTINGS = dict(
    max_examples=max(60, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ------------------------------------------------------------------------------- strategies
@st.composite
def heads(draw, max_rows: int = 6, max_cols: int = 48):
    """(K, D) heads of one dtype, possibly a non-contiguous view, with the values weight rows have
    and the ones that break implementations: ties, zeros (+-0.0), equal magnitudes of both signs,
    all-equal rows, rows of 1-3 values, one scale per row from tiny to huge (values are float32
    numbers times a power of two, so float64 rows stay well conditioned for the log fit)."""
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    pool = draw(st.lists(st.floats(-4, 4, width=32, allow_subnormal=False), min_size=1, max_size=12))
    pool += [0.0, -0.0] + [-v for v in pool[:3]]
    values = draw(
        st.lists(st.sampled_from(pool) | st.floats(-4, 4, width=32), min_size=rows * cols, max_size=rows * cols)
    )
    W = torch.tensor(values, dtype=torch.float64).view(rows, cols)
    scales = draw(st.lists(st.integers(MIN_EXPONENT[dtype], MAX_EXPONENT[dtype]), min_size=rows, max_size=rows))
    W = W * torch.tensor([2.0**e for e in scales], dtype=torch.float64)[:, None]
    if draw(st.booleans()):  # an all-equal row
        W[draw(st.integers(0, rows - 1))] = W[0, 0]
    W = W.to(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed":
        W = W.t().contiguous().t()
    elif layout == "strided":
        W = torch.stack([W, -W], dim=2).reshape(rows, 2 * cols)[:, ::2]
    return W


configs = st.builds(
    FitConfig,
    tree=st.sampled_from(["chain", "full"]),
    root=st.sampled_from(["zero", "mean"]),
    grid=st.sampled_from(["paper", "linspace"]),
    min_size=st.integers(0, 8),
    depth=st.integers(1, 5),
) | st.builds(FitConfig, root=st.sampled_from(["zero", "mean"]), min_size=st.integers(0, 4))


# --------------------------------------------------------------------------------- checks
def assert_exact(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{name}: {m}")


def assert_same_fit(got, want, W: torch.Tensor) -> None:
    """Exact memberships and ALD location; float64-rounding agreement everywhere else. Chains
    without a depth come back with fewer columns: the columns left out must be absent."""
    assert 2 <= got.columns <= want.columns
    got = got.pad_columns(want.columns)
    for name in ("count", "lo", "hi", "loc"):
        assert_exact(name, getattr(got, name), getattr(want, name))
    # The mean is the exact one wherever a split depends on it; elsewhere a float64 sum.
    scale = W.detach().to(torch.float64).abs().amax(dim=1, keepdim=True)
    assert_within("mean", got.mean, want.mean, (1e-12 * scale).numpy())
    for name in ("slope", "intercept", "r2"):
        torch.testing.assert_close(
            getattr(got, name),
            getattr(want, name),
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            msg=lambda m, name=name: f"{name}: {m}",
        )
    for name in ("scale", "kappa", "loglik"):
        torch.testing.assert_close(
            getattr(got, name),
            getattr(want, name),
            rtol=1e-12,
            atol=0.0,
            equal_nan=True,
            msg=lambda m, name=name: f"ald {name}: {m}",
        )
    assert not bool(got.ambiguous.any()), "the cpu backend decides every split exactly"


# ----------------------------------------------------------------------- against reference
@settings(**SETTINGS)
@given(W=heads(), cfg=configs)
def test_matches_reference(W, cfg):
    before = W.clone()
    assert_same_fit(cpu.fit_rows(W, cfg), reference.fit_rows(W, cfg), W)
    assert torch.equal(W, before), "the head was modified"


@settings(**SETTINGS)
@given(values=st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=3), root=st.sampled_from(["zero", "mean"]))
def test_tiny_rows(values, root):
    W = torch.tensor([values], dtype=torch.float32)
    cfg = FitConfig(root=root, min_size=0)
    assert_same_fit(cpu.fit_rows(W, cfg), reference.fit_rows(W, cfg), W)


def test_split_thresholds_decided_exactly():
    """Rows whose elements sit on or next to the mean: the fast sum cannot decide them, the exact
    fallback must (memberships equal the reference's, nothing left ambiguous)."""
    a = 0.1
    rows = [
        [a, 2 * a, 3 * a] * 10,  # mean == an element in exact arithmetic
        [1.0, 1.0 + 2**-52, 1.0 - 2**-53, 1.0 + 2**-51] * 8,  # neighbours of the mean
        [1e16, 1.0, -1e16, 3.0, 2.0] * 6,  # catastrophic cancellation
        [2**-1074, 2**-1073, 3 * 2**-1074] * 9,  # subnormals: the absolute slack
    ]
    for row in rows:
        W = torch.tensor([row], dtype=torch.float64)
        for cfg in (FitConfig(root="mean", min_size=2), FitConfig(tree="full", depth=4, root="mean", min_size=2)):
            assert_same_fit(cpu.fit_rows(W, cfg), reference.fit_rows(W, cfg), W)


def test_deep_chains_refit_at_full_width():
    """The sum of [1, 1, 1, 1 + 2^-52] rounds to 4, so its mean is its minimum: the upper child is the
    node itself and the chain repeats to the 64-level cap, past the first 16 levels' outputs."""
    W = torch.tensor([[1.0, 1.0, 1.0, 1.0 + 2**-52, -1.0], [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    cfg = FitConfig(min_size=2)
    got, want = cpu.fit_rows(W, cfg), reference.fit_rows(W, cfg)
    assert got.columns == want.columns == 128 and int(got.count[0, 126]) == 4
    assert_same_fit(got, want, W)
    assert fcinterp_fast.fit(W, min_size=2).nodes[-2:] == ["+" * 64, "-" * 64]


@pytest.mark.parametrize("root", ["zero", "mean"])
def test_deepest_full_tree(root):
    """Full trees at the deepest allowed level (10): its 1024 nodes still split into 2048 runs of
    scratch space, and every node of every level matches the reference."""
    W = torch.randn(2, 3000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cfg = FitConfig(tree="full", depth=10, min_size=2, root=root)
    got, want = cpu.fit_rows(W, cfg), reference.fit_rows(W, cfg)
    assert want.columns == 2**11 - 2 and bool((want.count[:, -1024:] > 0).any())
    assert_same_fit(got, want, W)


def _ald_rows(generator: torch.Generator, n: int) -> torch.Tensor:
    """Rows whose ALD objective is flat, tied, skewed or lumpy: where a pruned search could slip."""

    def draw(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    laplace = torch.log(draw(8, n)) * torch.where(draw(8, n) < 0.5, 1.0, -1.0)
    return torch.cat(
        [
            laplace,
            torch.randn(8, n, generator=generator, dtype=torch.float64),
            draw(4, n),  # uniform: a very flat objective
            torch.exp(3 * torch.randn(4, n, generator=generator, dtype=torch.float64)),  # one-sided, skewed
            torch.round(4 * laplace[:4]) / 4,  # heavy ties
            torch.where(draw(4, n) < 0.3, -1.0, 2.0),  # two values
            torch.cat([torch.zeros(4, n - 3, dtype=torch.float64), 1e6 * draw(4, 3)], dim=1),  # outliers
            laplace[:4].float().double(),
        ]
    )


@pytest.mark.parametrize("n", [3, 4, 17, 33, 250, 1001, 3000])
def test_ald_search_is_exact(n):
    """The pruned search for the first minimum returns the reference's order statistic on every row
    (torch's vectorised ALD takes the same sequential sums and evaluates every candidate)."""
    from fcinterp_fast.backends import torch_vec

    W = _ald_rows(torch.Generator().manual_seed(n), n)
    got = cpu.fit_rows(W, FitConfig(depth=1))
    want = torch_vec.ald_rows(W.sort(dim=1).values)
    assert_exact("loc", got.loc, want[0])
    for name, value in zip(("scale", "kappa", "loglik"), want[1:], strict=True):
        torch.testing.assert_close(
            getattr(got, name), value, rtol=1e-12, atol=0.0, equal_nan=True, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_ald_only_matches_the_fit(dtype):
    W = _ald_rows(torch.Generator().manual_seed(5), 300).to(dtype)[:, ::2]
    fit = cpu.fit_rows(W, FitConfig())
    for name, value in zip(("loc", "scale", "kappa", "loglik"), cpu.ald_only(W), strict=True):
        assert_exact(name, value, getattr(fit, name))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fit_front_end_and_auto(dtype):
    """Through fit(): auto picks cpu on CPU tensors; bf16 and views are read in place."""
    torch.manual_seed(0)
    W = torch.distributions.Laplace(0.0, 0.05).sample((20, 300)).to(dtype)[:, 7:250:2]
    got = fcinterp_fast.fit(W, tree="full", depth=3, root="mean")
    want = fcinterp_fast.fit(W, backend="reference", tree="full", depth=3, root="mean")
    assert got.backend == "cpu"
    assert got.nodes == want.nodes
    for name in ("count", "lo", "hi"):
        assert_exact(name, getattr(got, name), getattr(want, name))
    torch.testing.assert_close(got.slope, want.slope, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert_exact("loc", got.ald.loc, want.ald.loc)


def test_threads_do_not_change_results():
    torch.manual_seed(1)
    W = torch.distributions.Laplace(0.0, 0.05).sample((37, 500))
    cfg = FitConfig(tree="full", depth=4)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu.fit_rows(W, cfg)
        torch.set_num_threads(max(2, previous))
        many = cpu.fit_rows(W, cfg)
    finally:
        torch.set_num_threads(previous)
    for name, t in one.fields().items():
        assert_exact(name, getattr(many, name), t)


@pytest.mark.slow
def test_bundled_head(lite0_head):
    """EfficientNet-Lite0's classifier (1000 x 1280): every class against torch, a sample against
    the reference (which takes ~0.5 s a row)."""
    W = lite0_head
    assert tuple(W.shape) == (1000, 1280)
    sample = torch.arange(0, 1000, 199)
    for cfg in (FitConfig(), FitConfig(root="mean"), FitConfig(tree="full", depth=4)):
        got = cpu.fit_rows(W, cfg)
        assert_same_fit(got.map(lambda name, t: t[sample]), reference.fit_rows(W[sample], cfg), W[sample])
        vec = torch_vec.fit_rows(W, cfg)
        assert not bool(vec.ambiguous.any())
        padded = got.pad_columns(vec.columns)
        for name in ("count", "lo", "hi", "loc"):
            assert_exact(name, getattr(padded, name), getattr(vec, name))


# ------------------------------------------------------------------------- building blocks
@settings(**SETTINGS)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, max_value=1e300, min_value=-1e300), max_size=40))
def test_exact_sum_is_fsum(values):
    assert cpu._cpu._exact_sum(np.array(values, dtype=np.float64)) == math.fsum(values)


def test_exact_sum_rounds_half_even_across_partials():
    # fsum's documented hard cases (CPython's test_math.testFsum).
    cases = [
        [1.0, 1e100, 1.0, -1e100],
        [2.0**53, -0.5, -(2.0**-54)],
        [2.0**53, 1.0, 2.0**-100],
        [1e16, 1.0, 1e-16],
        [1.7976931348623157e308 / 2, -1.7976931348623157e308 / 2, 2**-1074],
    ]
    for values in cases:
        assert cpu._cpu._exact_sum(np.array(values)) == math.fsum(values), values
    assert math.isnan(cpu._cpu._exact_sum(np.array([1.0, math.inf, -math.inf])))


def test_log_is_accurate():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-700, 700, 200_000)),
            rng.uniform(0.5, 2.0, 100_000),
            1.0 + rng.uniform(-1e-6, 1e-6, 10_000),
            np.array([5e-324, 1e-310, 2.2250738585072014e-308, 1.0, 2.0, 1.7976931348623157e308]),
        ]
    )
    x = np.concatenate([x, -x])
    got, want = cpu._cpu._log_abs(x), np.log(np.abs(x))
    ulps = np.abs(got - want) / np.spacing(np.abs(want).clip(min=np.spacing(1.0)))
    assert ulps.max() <= 1.5, f"max error {ulps.max():.2f} ulp at {x[ulps.argmax()]!r}"


def test_float32_log_is_accurate():
    """The table-driven log of float32 rows (no divisions): within 1.5 ulp of the float64 log, counted
    in ulps of max(|ln x|, 1) (near x = 1 its error is absolute, ~1e-19, not relative)."""
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-103, 88, 200_000)),
            rng.uniform(0.5, 2.0, 100_000),
            1.0 + np.arange(-2000, 2000) * 2.0**-23,
            [1.4e-45, 1e-40, 1.1754944e-38, 1.0, 2.0, 3.4028235e38],
        ]
    ).astype(np.float32)
    x = np.concatenate([x, -x])
    got, want = cpu._cpu._log_abs_float32(x), np.log(np.abs(x.astype(np.float64)))
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1.0))
    assert ulps.max() <= 1.5, f"max error {ulps.max():.2f} ulp at {x[ulps.argmax()]!r}"


def test_exp_is_accurate():
    """The goodness-of-fit sweep's exp (fdlibm's, vectorised): within 1 ulp of numpy's on [-708, 0],
    0 below."""
    rng = np.random.default_rng(2)
    a = np.concatenate(
        [
            -np.exp(rng.uniform(-40, np.log(708), 200_000)),
            -rng.uniform(0, 1, 100_000),
            -np.arange(0, 1022) * np.log(2) / 2,  # halfway points of the reduction
            [0.0, -0.0, -5e-324, -708.0, -707.9],
        ]
    )
    got, want = cpu._cpu._exp_nonpositive(a), np.exp(a)
    ulps = np.abs(got - want) / np.spacing(want)
    assert ulps.max() <= 1, f"max error {ulps.max():.2f} ulp at {a[ulps.argmax()]!r}"
    np.testing.assert_array_equal(cpu._cpu._exp_nonpositive(np.array([-708.5, -1e4, -np.inf])), 0.0)


# ----------------------------------------------------------------------------- the sort
# Row lengths around the sorting network's edges: vector multiples and not, powers of two and one
# past them, the longest networked rows (16 KiB of keys) and the first radix-sorted ones.
SORT_LENGTHS = (33, 40, 63, 64, 65, 100, 255, 256, 257, 512, 700, 1280, 2048, 2049, 4096, 4097, 8192, 8193)


def _hard_rows(n: int, generator: torch.Generator) -> torch.Tensor:
    """(8, n) float64 rows that sort badly: Laplace noise, heavy ties, +-0.0 mixed, one value, already
    sorted, reversed, huge and tiny magnitudes, a row with +-inf."""
    laplace = torch.distributions.Laplace(0.0, 0.05).sample((3, n)).double()
    zeros = torch.where(torch.rand(n, generator=generator) < 0.5, -0.0, 0.0).double()
    extreme = laplace[2] * torch.tensor([1e-30, 1e30], dtype=torch.float64).repeat(n)[:n]
    special = laplace[1].clone()
    special[:2] = torch.tensor([float("inf"), float("-inf")])
    return torch.stack(
        [
            laplace[0],
            torch.round(8 * laplace[1]) / 8,
            torch.where(laplace[2] < 0, zeros, laplace[2]),
            torch.full((n,), 0.25, dtype=torch.float64),
            laplace[0].sort().values,
            laplace[0].sort(descending=True).values,
            extreme,
            special,
        ]
    )


# Where the network does not run (no AVX2, a compiler other than GCC) "network" sorts by radix and
# comparing it would check nothing; "auto" is still compared.
_OTHER_METHODS = ("network", "auto") if cpu.unavailable() is None and cpu.build_info()["sorting_network"] else ("auto",)


def _sorted_by(W: torch.Tensor, method: str) -> np.ndarray:
    head, dtype = cpu.head_array(W)
    return cpu._cpu._sort_rows(head, dtype, method)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SORT_LENGTHS)
def test_sort_methods_agree_bit_for_bit(n, dtype):
    """The sorting network and the radix sort put the same bits in every place (-0.0 before +0.0:
    both sort the keys of the bit patterns), and the values are numpy's sort."""
    generator = torch.Generator().manual_seed(n)
    torch.manual_seed(n)
    W = _hard_rows(n, generator).to(dtype)
    want = np.sort(W.double().numpy(), axis=1)
    radix = _sorted_by(W, "radix")
    np.testing.assert_array_equal(radix, want)
    for method in _OTHER_METHODS:
        got = _sorted_by(W, method)
        np.testing.assert_array_equal(got.view(np.int64), radix.view(np.int64), err_msg=f"{method}, n={n}")
    # and so does the fit's sort: lo / hi of the level-one nodes and the ALD location
    if n <= 2049:
        fit, vec = cpu.fit_rows(W, FitConfig(depth=1)), torch_vec.fit_rows(W, FitConfig(depth=1))
        for name in ("count", "lo", "hi"):
            assert_exact(name, getattr(fit, name), getattr(vec, name))


@pytest.mark.parametrize(
    "dtype, n",
    [(dtype, n) for dtype in (torch.float32, torch.bfloat16, torch.float16) for n in (100, 700, 1280, 4100)]
    + [(torch.float16, 8192)],
    ids=str,
)
def test_rows_of_every_sort_path_match_oracle(dtype, n):
    """Whole fits of rows long enough for the sorting network (and for the radix sort past it)
    against the float64 oracle: memberships exact, statistics within its error bounds."""
    torch.manual_seed(n)
    laplace = torch.distributions.Laplace(0.0, 0.05).sample((3, n))
    W = torch.stack(
        [laplace[0], torch.round(64 * laplace[1]) / 64, torch.where(laplace[2].abs() < 0.02, 0.0, laplace[2])]
    )
    W = W[:2] if n > 4100 else W  # the oracle takes seconds a row there
    assert_matches_oracle(fcinterp_fast.fit(W.to(dtype), backend="cpu"), W.to(dtype), {}, float64_backend=True)


@settings(**SETTINGS)
@given(
    n=st.integers(33, 3000),
    pool=st.lists(st.floats(-4, 4, width=32), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(FLOAT_DTYPES),
)
def test_sort_methods_agree_on_drawn_rows(n, pool, seed, dtype):
    values = np.random.default_rng(seed).choice(np.array(pool + [0.0, -0.0]), size=(2, n))
    W = torch.from_numpy(values).to(dtype)
    radix = _sorted_by(W, "radix")
    np.testing.assert_array_equal(radix, np.sort(W.double().numpy(), axis=1))
    for method in _OTHER_METHODS:
        np.testing.assert_array_equal(_sorted_by(W, method).view(np.int64), radix.view(np.int64))


def test_sort_reads_any_strides():
    W = torch.distributions.Laplace(0.0, 1.0).sample((6, 1500))
    view = W[::2, 3::2]
    for method in ("auto", "network", "radix"):
        np.testing.assert_array_equal(_sorted_by(view, method), np.sort(view.double().numpy(), axis=1))


def test_sort_method_by_row_length():
    """Rows of up to 32 values are insertion sorted; the network takes rows of up to 16 KiB of keys
    where this CPU runs it (AVX2 or better with the GCC build), float64 rows and longer rows are
    radix sorted."""
    network = "network" if cpu.build_info()["sorting_network"] else "radix"
    method = cpu._cpu._sort_method
    assert [method("float32", n) for n in (32, 33, 4096, 4097)] == ["insertion", network, network, "radix"]
    assert [method(name, n) for name in ("float16", "bfloat16") for n in (33, 8192, 8193)] == [
        network,
        network,
        "radix",
    ] * 2
    assert method("float64", 100) == "radix"
    with pytest.raises(ValueError, match="unknown sort method 'quick'"):
        cpu._cpu._sort_rows(np.ones((1, 40), dtype=np.float32), "float32", "quick")


# ------------------------------------------------------------------- native entry points
def _outputs(rows: int, columns: int) -> dict:
    out = {name: np.empty((rows, columns)) for name in ("mean", "lo", "hi", "slope", "intercept", "r2")}
    out["count"] = np.empty((rows, columns), dtype=np.int64)
    out.update({name: np.empty(rows) for name in ("loc", "scale", "kappa", "loglik")})
    return out


def _native(
    head, dtype="float32", tree="chain", root="zero", grid="paper", min_size=2, levels=3, outputs=None, **kwargs
):
    rows = head.shape[0] if getattr(head, "ndim", 0) >= 1 else 0
    columns = 2 * levels if tree == "chain" else 2 ** (levels + 1) - 2
    out = _outputs(rows, columns) if outputs is None else outputs
    cpu._cpu.fit_rows(head, dtype, tree, root, grid, min_size, levels, **out, **kwargs)
    return out


def test_native_reads_any_strides_and_bit_views():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 64)).astype(np.float32)
    want = _native(np.ascontiguousarray(base))
    for view in (np.asfortranarray(base), np.repeat(base, 3, axis=1)[:, ::3], base[::-1].copy()[::-1]):
        got = _native(view)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    broadcast = _native(np.broadcast_to(base[2], base.shape))  # row stride 0
    for name in want:
        np.testing.assert_array_equal(broadcast[name], np.broadcast_to(want[name][2], want[name].shape), err_msg=name)
    # The same values as bfloat16 bits and as float32: the logs come from the 16-bit table and the
    # float32 log (each within ~1 ulp), so the line fits agree to rounding, everything else exactly.
    bf16 = torch.from_numpy(base).to(torch.bfloat16)
    got = _native(bf16.view(torch.int16).numpy(), dtype="bfloat16")
    want = _native(bf16.float().numpy())
    for name in want:
        if name in ("slope", "intercept", "r2"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(head=np.zeros((0, 4), np.float32)), ValueError, "no rows"),
        (dict(head=np.zeros((3, 0), np.float32)), ValueError, "no rows or no columns"),
        (dict(head=np.zeros(4, np.float32)), ValueError, "2-D"),
        (dict(head=np.zeros((2, 3, 4), np.float32)), ValueError, "2-D"),
        (dict(dtype="float8"), ValueError, "unknown dtype 'float8'"),
        (dict(dtype="float64"), TypeError, "does not hold float64"),
        (dict(dtype="bfloat16"), TypeError, "does not hold bfloat16"),
        (dict(head=np.zeros((3, 4), np.int32), dtype="float16"), TypeError, "does not hold float16"),
        (dict(head=np.zeros((3, 4), np.complex64)), TypeError, "does not hold float32"),
        (dict(head=[[1.0, 2.0]]), TypeError, None),
        (dict(tree="forest"), ValueError, "unknown tree 'forest'"),
        (dict(root="median"), ValueError, "unknown root"),
        (dict(grid="log"), ValueError, "unknown grid"),
        (dict(min_size=-1), ValueError, "min_size"),
        (dict(levels=0), ValueError, "levels must be in 1..64"),
        (dict(levels=65), ValueError, "levels must be in 1..64"),
        (dict(tree="full", levels=11), ValueError, "levels must be in 1..10"),
        (dict(threads=-1), ValueError, "threads"),
    ],
)
def test_native_rejects_bad_arguments(change, error, match):
    args = dict(head=np.ones((3, 4), np.float32))
    args.update(change)
    head = args.pop("head")
    columns = 2 * args.get("levels", 3) if args.get("tree", "chain") == "chain" else 6
    rows = 3
    with pytest.raises(error, match=match):
        _native(head, outputs=_outputs(rows, columns), **args)


@pytest.mark.parametrize(
    "name, bad, error, match",
    [
        ("mean", np.empty((3, 5)), ValueError, r"'mean' must have shape \(3, 6\)"),
        ("mean", np.empty((4, 6)), ValueError, "'mean' must have shape"),
        ("count", np.empty((3, 6)), TypeError, "'count' must have dtype int64"),
        ("count", np.empty((3, 7), np.int64), ValueError, "node outputs have 7 columns; .* has 1..6"),
        ("count", np.empty((3, 0), np.int64), ValueError, "node outputs have 0 columns"),
        ("slope", np.empty((3, 6), np.float32), TypeError, "'slope' must have dtype float64"),
        ("r2", np.empty((6, 3)).T, ValueError, "'r2' must be C-contiguous"),
        ("loc", np.empty(4), ValueError, r"'loc' must have shape \(3,\)"),
        ("kappa", np.empty((3, 1)), ValueError, "'kappa' must have shape"),
        ("loglik", [0.0, 0.0, 0.0], TypeError, None),
    ],
)
def test_native_rejects_bad_outputs(name, bad, error, match):
    out = _outputs(3, 6)
    out[name] = bad
    with pytest.raises(error, match=match):
        _native(np.ones((3, 4), np.float32), outputs=out)


def test_native_rejects_read_only_output():
    out = _outputs(3, 6)
    out["hi"].setflags(write=False)
    with pytest.raises(ValueError, match="'hi' is read-only"):
        _native(np.ones((3, 4), np.float32), outputs=out)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_native_survives_non_finite_values(dtype):
    """fit() rejects non-finite heads first; the kernel itself must still not crash on them."""
    head = np.array([[np.nan, 1, 2, 3], [np.inf, -np.inf, 0, 1], [np.nan] * 4, [1e308, 1e308, -1e308, 5]])
    with np.errstate(over="ignore"):
        head = head.astype(dtype)
    for tree, levels in (("chain", 64), ("full", 4)):
        out = _native(head, dtype=dtype, tree=tree, root="mean", min_size=0, levels=levels)
        assert out["count"].min() >= 0 and out["count"].max() <= 4


def test_fit_rows_validates_in_python():
    cfg = FitConfig()
    with pytest.raises(ValueError, match="2-D CPU tensor"):
        cpu.fit_rows(torch.ones(2, 3, 4), cfg)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        cpu.fit_rows(torch.ones(2, 3, dtype=torch.int32), cfg)
    assert cpu.fit_rows(torch.ones(0, 5), cfg).rows == 0


# ------------------------------------------------------------------------------ packaging
def test_build_info_agrees_with_the_build_flags():
    """What the extension reports matches the flags setup.py compiled it with."""
    info = cpu.build_info()
    flags = info["compile_flags"].split()
    assert info["openmp"] == ("-fopenmp" in flags or "/openmp" in flags), info  # not "-fopenmp-simd"
    assert info["openmp"] or info["max_threads"] == 1, info
    if "FCI_NATIVE" in flags:
        assert info["simd_target"] == "native", info
    elif "FCI_TARGET_CLONES" in flags:  # the best clone this CPU runs
        assert info["simd_target"] in ("default", "x86-64-v3", "x86-64-v4"), info
    else:
        assert info["simd_target"] == "default", info


def _build_extension(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``setup.py build_ext`` of this checkout into tmp_path/lib with these environment variables."""
    # The build environment of an isolated `pip install` has pybind11, the venv may not: the `test`
    # extra installs it so that a build here exercises the compiler, not a missing pybind11.
    import pybind11  # noqa: F401

    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib")]
        + ["--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang++") is None, reason="clang++ is not installed (.ci/run installs it)")
def test_clang_build_fits_alike(tmp_path):
    """The extension also builds with Clang (its vector extensions spell shuffles differently; no
    target clones, so no sorting network) and that build fits exactly as this one."""
    build = _build_extension(tmp_path, CC="clang", CXX="clang++")
    assert build.returncode == 0 and "installs without it" not in build.stderr, build.stderr
    (library,) = (tmp_path / "lib").rglob("_cpu*")
    head = _ald_rows(torch.Generator().manual_seed(3), 700)
    torch.save(head, tmp_path / "head.pt")
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, torch
        spec = importlib.util.spec_from_file_location("fcinterp_fast._cpu", {str(library)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["fcinterp_fast._cpu"] = module
        spec.loader.exec_module(module)
        from fcinterp_fast.backends import cpu
        from fcinterp_fast.config import FitConfig
        head = torch.load({str(tmp_path / "head.pt")!r})
        fits = [cpu.fit_rows(head.to(dtype), FitConfig()) for dtype in (torch.float32, torch.bfloat16)]
        torch.save([fit.fields() for fit in fits], {str(tmp_path / "fits.pt")!r})
        print(cpu.build_info())
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "'sorting_network': False" in run.stdout, run.stdout
    theirs = torch.load(tmp_path / "fits.pt")
    for dtype, fields in zip((torch.float32, torch.bfloat16), theirs, strict=True):
        ours = cpu.fit_rows(head.to(dtype), FitConfig()).fields()
        for name in ("count", "lo", "hi", "loc", "scale", "kappa", "loglik"):
            assert_exact(name, fields[name], ours[name])
        for name in ("mean", "slope", "intercept", "r2", "ks"):
            torch.testing.assert_close(fields[name], ours[name], rtol=1e-12, atol=1e-15, equal_nan=True)


def test_missing_extension_is_reported_not_fatal():
    """Without the extension, fit() works on the other backends and backends() keeps the reason."""
    script = textwrap.dedent(
        """
        import sys, torch
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "fcinterp_fast._cpu":
                    raise ImportError("simulated: extension not built")
        sys.meta_path.insert(0, Block())
        import fcinterp_fast
        reason = fcinterp_fast.available_backends()["cpu"]
        assert "simulated: extension not built" in reason, reason
        assert fcinterp_fast.fit(torch.randn(3, 30)).backend == "torch"
        try:
            fcinterp_fast.fit(torch.randn(3, 30), backend="cpu")
        except RuntimeError as error:
            assert "simulated" in str(error), error
        else:
            raise AssertionError("backend='cpu' ran without its extension")
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_failed_compile_still_builds(tmp_path):
    """A compiler that fails every call: setup.py warns and finishes without the extension."""
    result = _build_extension(tmp_path, CC="false", CXX="false", LDSHARED="false")
    assert result.returncode == 0, result.stderr
    assert "fcinterp_fast installs without it" in result.stderr
    assert not list((tmp_path / "lib").rglob("_cpu*"))
