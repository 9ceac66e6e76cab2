"""``backend="triton"`` against the ``reference`` backend: memberships exact, statistics within
float64 rounding (far inside docs/spec.md section 3's rtol 1e-5 / atol 1e-6).

* On CPU the kernels run on Triton's interpreter on small shapes (rows <= 256 elements, a few
  rows). The interpreter must be switched on before triton is imported, so in an ordinary run
  ``test_interpreter_suite`` starts this module again in a subprocess with ``TRITON_INTERPRET=1``,
  where the ``test_interpreter_*`` cases run. ``TRITON_INTERPRET=1 pytest tests/test_triton_fit.py``
  runs them directly.
* On a CUDA machine the ``gpu`` cases run the full suite: every dtype, tree, root and grid, odd
  sizes, strided input, rows at and beyond the single-pass limit, and the bundled real head.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

import fcinterp_fast
from checks import assert_equal, assert_within
from fcinterp_fast import _triton
from fcinterp_fast.backends import _triton_kernels, reference, torch_vec, triton_fit
from fcinterp_fast.config import FitConfig
from fcinterp_fast.result import RowFit

INTERPRETING = _triton.interpreting()
interpreter_only = pytest.mark.skipif(
    not INTERPRETING, reason="needs TRITON_INTERPRET=1 (test_interpreter_suite runs these in a subprocess)"
)
CUDA = torch.cuda.is_available() and not INTERPRETING
# The gpu cases (skipped by conftest without CUDA) run compiled kernels, never the interpreter.
compiled_only = pytest.mark.skipif(INTERPRETING, reason="gpu cases run compiled kernels; TRITON_INTERPRET=1 is set")
DEVICE = "cuda" if CUDA else "cpu"

# float64 arithmetic in another order than the reference: a few thousand ulps at most.
STAT_RTOL, STAT_ATOL = 1e-9, 1e-9

MODES = [
    dict(tree="chain", root="zero"),
    dict(tree="chain", root="mean", grid="linspace"),
    dict(tree="full", root="zero", depth=3),
    dict(tree="full", root="mean", depth=3, grid="linspace"),
]
MODE_IDS = ["chain-zero", "chain-mean-linspace", "full-zero", "full-mean-linspace"]


def assert_rowfit_close(got: RowFit, want: RowFit, rows: torch.Tensor | None = None) -> None:
    """Memberships (count, lo, hi) and the ALD location exactly, everything else within float64
    rounding; NaN and inf must match. ``rows``: compare only these rows of ``got``."""
    for name, expected in want.fields().items():
        actual = getattr(got, name).cpu()
        if rows is not None:
            actual = actual[rows]
        expected = expected.cpu()
        if name in ("count", "lo", "hi", "loc", "ambiguous"):
            assert_equal(name, actual, expected)
        else:
            assert_within(name, actual, expected, STAT_ATOL + STAT_RTOL * expected.abs().numpy())


def take_rows(part: RowFit, rows: torch.Tensor) -> RowFit:
    """The rows ``rows`` (a CPU LongTensor) of ``part``, on its device."""
    return part.map(lambda _, t: t[rows.to(t.device)])


def rowfit_of(fit: fcinterp_fast.HeadFit) -> RowFit:
    """The statistics of a ``HeadFit`` as a ``RowFit`` (nothing ambiguous after ``fit``)."""
    return RowFit(
        count=fit.count,
        mean=fit.mean,
        lo=fit.lo,
        hi=fit.hi,
        slope=fit.slope,
        intercept=fit.intercept,
        r2=fit.r2,
        loc=fit.ald.loc,
        scale=fit.ald.scale,
        kappa=fit.ald.kappa,
        loglik=fit.ald.loglik,
        loglik_laplace=fit.gof.loglik_laplace,
        loglik_normal=fit.gof.loglik_normal,
        ks=fit.gof.ks,
        ambiguous=torch.zeros(len(fit), dtype=torch.bool),
    )


def check_against_reference(W: torch.Tensor, **options) -> RowFit:
    """``triton_fit.fit_rows`` on W, compared with the reference wherever no row is ambiguous
    (those rows ``fit`` recomputes with the reference itself)."""
    cfg = FitConfig(**options)
    got = triton_fit.fit_rows(W, cfg)
    want = reference.fit_rows(W.cpu(), cfg)
    decided = ~got.ambiguous.cpu()
    assert decided.any(), "every row was flagged ambiguous: nothing left to compare"
    assert_rowfit_close(got.map(lambda _, t: t[decided.to(t.device)]), want.map(lambda _, t: t[decided]))
    return got


def awkward_rows(D: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows that exercise the special cases: zeros, ties, equal magnitudes, constant rows."""
    g = torch.Generator().manual_seed(D)
    rows = [
        torch.randn(D, generator=g),
        torch.randint(-3, 4, (D,), generator=g).float(),  # ties and zeros
        torch.where(torch.rand(D, generator=g) < 0.5, -1.0, 1.0),  # one magnitude, both signs
        torch.full((D,), 0.25),  # constant row
        torch.zeros(D),
        torch.randn(D, generator=g).exp() * 1e3,  # positive only, large
        -torch.rand(D, generator=g) * 1e-3,  # negative only, small
        torch.randn(D, generator=g) * torch.logspace(-4, 4, D),  # wide magnitude range
    ]
    return torch.stack(rows).to(dtype)


# ----------------------------------------------------------------------------------------------
# CPU: the Triton interpreter on small shapes
# ----------------------------------------------------------------------------------------------


def test_interpreter_suite():
    """Run this module's interpreter cases in a subprocess with TRITON_INTERPRET=1."""
    if INTERPRETING:
        pytest.skip("already running under the interpreter")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONWARNINGS="ignore::RuntimeWarning")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "interpreter"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"interpreter cases failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


@interpreter_only
@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_interpreter_modes(options):
    W = torch.randn(4, 96, generator=torch.Generator().manual_seed(1))
    W[0, ::7] = 0  # zeros inside a row
    check_against_reference(W, min_size=8, **options)


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_interpreter_dtypes(dtype):
    check_against_reference(awkward_rows(61, dtype), min_size=5)


@interpreter_only
@pytest.mark.parametrize(
    "options", MODES[:2] + [dict(tree="chain", root="zero", depth=2)], ids=MODE_IDS[:2] + ["chain-depth-2"]
)
def test_interpreter_awkward_rows(options):
    check_against_reference(awkward_rows(33, torch.float32), min_size=4, **options)


@interpreter_only
@pytest.mark.parametrize("D", [1, 2, 3, 5])
@pytest.mark.parametrize("options", [MODES[1], MODES[3]], ids=[MODE_IDS[1], MODE_IDS[3]])
def test_interpreter_tiny_rows(D, options):
    W = torch.randn(3, D, generator=torch.Generator().manual_seed(D))
    check_against_reference(W, min_size=0, **options)


@interpreter_only
def test_interpreter_strided_input():
    base = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    W = base.t()  # (6, 50), stride (1, 6)
    assert not W.is_contiguous()
    check_against_reference(W, min_size=6, root="mean")


@interpreter_only
def test_interpreter_long_row_path(monkeypatch):
    """The torch.sort path of rows longer than the single-pass limit, on a lowered limit."""
    monkeypatch.setattr(_triton_kernels, "MAX_SINGLE_PASS", 32)
    W = torch.cat([awkward_rows(70, torch.float32), torch.randn(2, 70, generator=torch.Generator().manual_seed(3))])
    for options in MODES:
        check_against_reference(W, min_size=6, **options)
    check_against_reference(W.to(torch.bfloat16)[:3], min_size=6)
    for dtype in (torch.float32, torch.float16):  # stored transposed: torch.sort keeps those strides
        check_against_reference(W.to(dtype).t().contiguous().t(), min_size=6)


@interpreter_only
@pytest.mark.parametrize("long_rows", [False, True], ids=["single-pass", "torch-sort-path"])
def test_interpreter_ambiguous_rows_are_flagged_and_settled(long_rows, monkeypatch):
    """Row 0's mean is exactly one of its elements, but its sum (2^53 - 2^53 + 6) rounds in some
    orders: the row is flagged and ``fit`` recomputes it with the reference. Row 1's sums are all
    exact (few binades), so its thresholds are the reference's to the bit and it is not flagged
    although a deeper mean also falls on an element."""
    if long_rows:
        monkeypatch.setattr(_triton_kernels, "MAX_SINGLE_PASS", 4)
    big = 2.0**53
    W = torch.tensor([[big, -big, 1.0, 3.0, 2.0, 0.0], [4.0, 1.0, 2.0, 3.0, 9.0, 5.0]])
    options = dict(root="mean", min_size=2)
    got = triton_fit.fit_rows(W, FitConfig(**options))
    assert got.ambiguous.tolist() == [True, False]
    fit = fcinterp_fast.fit(W, backend="triton", **options)
    want = fcinterp_fast.fit(W, backend="reference", **options)
    assert fit.nodes == want.nodes
    assert_rowfit_close(rowfit_of(fit), rowfit_of(want))


@interpreter_only
@pytest.mark.parametrize("long_rows", [False, True], ids=["single-pass", "torch-sort-path"])
def test_interpreter_exactness_uses_the_heads_precision(long_rows, monkeypatch):
    """Mean 6 / 6 = 1 is an element. Its members span 2^-30 .. 3: as float32 values (24-bit
    multiples of 2^-53) the sum could round, so the row is flagged; as bfloat16 values (multiples
    of 2^-37) every partial sum is exact, so the threshold is decided without the reference."""
    if long_rows:
        monkeypatch.setattr(_triton_kernels, "MAX_SINGLE_PASS", 4)
    W = torch.tensor([[2.0**-30, -(2.0**-30), 1.0, 2.0, 3.0, 0.0]])
    cfg = FitConfig(root="mean", min_size=2)
    assert triton_fit.fit_rows(W, cfg).ambiguous.tolist() == [True]
    head16 = W.to(torch.bfloat16)
    assert torch.equal(head16.float(), W)
    got = triton_fit.fit_rows(head16, cfg)
    assert got.ambiguous.tolist() == [False]
    assert_rowfit_close(got, reference.fit_rows(head16, cfg))


@interpreter_only
def test_interpreter_fit_end_to_end():
    """Through ``fit``: chain levels trimmed as for every backend, same nodes, masks and tables."""
    W = torch.randn(5, 120, generator=torch.Generator().manual_seed(4))
    fit = fcinterp_fast.fit(W, backend="triton", min_size=10)
    want = fcinterp_fast.fit(W, backend="reference", min_size=10)
    assert fit.backend == "triton" and fit.nodes == want.nodes
    assert_rowfit_close(rowfit_of(fit), rowfit_of(want))
    assert torch.equal(fit.mask("+*"), want.mask("+*")) and torch.equal(fit.mask("--"), want.mask("--"))


# ----------------------------------------------------------------------------------------------
# Anywhere: registration and input checks (no kernel runs)
# ----------------------------------------------------------------------------------------------


def test_registered_and_explains_unavailability():
    reason = fcinterp_fast.available_backends()["triton"]
    if CUDA or INTERPRETING:
        assert reason == "available"
    else:
        assert "CUDA" in reason and "TRITON_INTERPRET" in reason


def test_auto_never_picks_the_interpreter_for_cpu_tensors():
    fit = fcinterp_fast.fit(torch.randn(2, 30), min_size=5)
    assert fit.backend != "triton"


@pytest.mark.parametrize(
    "W, error, message",
    [
        (torch.randn(2, 3, 4), ValueError, r"\(rows, D\) matrix"),
        (torch.randint(0, 3, (2, 3)), TypeError, "float16, bfloat16, float32 or float64"),
        (torch.randn(2, 0), ValueError, "D >= 1"),
        ("not a tensor", TypeError, "torch.Tensor"),
    ],
    ids=["3d", "int", "empty-rows", "not-tensor"],
)
def test_input_checks(W, error, message):
    if isinstance(W, torch.Tensor):
        W = W.to(DEVICE)
    with pytest.raises(error, match=message):
        triton_fit.fit_rows(W, FitConfig())


@pytest.mark.skipif(INTERPRETING, reason="the interpreter accepts CPU tensors")
def test_cpu_tensors_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"\.cuda\(\)"):
        triton_fit.fit_rows(torch.randn(2, 8), FitConfig())


# ----------------------------------------------------------------------------------------------
# GPU: the full suite
# ----------------------------------------------------------------------------------------------


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_gpu_modes(options):
    W = torch.randn(64, 300, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    W[:, ::11] = 0
    check_against_reference(W, min_size=8, **options)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("D", [1, 3, 37])
def test_gpu_tiny_rows(D):
    # a view with row stride D + 1: a contiguous (33, 1) head would be a kernel compiled for
    # row stride 1 of its own, which the rest of this suite does not need
    W = torch.randn(33, D + 1, generator=torch.Generator().manual_seed(D)).to(DEVICE)[:, :D]
    check_against_reference(W, min_size=0, tree="full", root="mean", depth=3)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_gpu_dtypes_and_awkward_rows(dtype):
    W = torch.cat([awkward_rows(300, dtype), torch.randn(40, 300).to(dtype)]).to(DEVICE)
    check_against_reference(W, min_size=8)
    if dtype == torch.float64:  # float64 sort and magnitude keys
        check_against_reference(W, min_size=8, tree="full", root="mean", depth=4)


@pytest.mark.gpu
@compiled_only
def test_gpu_strided_input():
    W = torch.randn(300, 40, generator=torch.Generator().manual_seed(5)).to(DEVICE).t()
    assert not W.is_contiguous()
    check_against_reference(W, min_size=8)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize(
    "D, options",
    [(16384, MODES[0]), (20000, MODES[0]), (20000, MODES[3])],
    ids=["single-pass-limit", "torch-sort-path-" + MODE_IDS[0], "torch-sort-path-" + MODE_IDS[3]],
)
def test_gpu_long_rows(D, options):
    W = torch.randn(6, D, generator=torch.Generator().manual_seed(D))
    W[0] = torch.randint(-5, 6, (D,)).float()  # ties and zeros
    check_against_reference(W.to(DEVICE), **options)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_real_head(lite0_head, dtype):
    """The bundled EfficientNet-Lite0 classifier (1000 x 1280): every row against the torch
    backend, every 37th row against the reference, and ``fit`` end to end."""
    W = lite0_head.detach().to(DEVICE, dtype)
    assert W.shape == (1000, 1280)
    sample = torch.arange(0, 1000, 37)
    for options in (MODES[0], MODES[3]) if dtype == torch.float32 else (MODES[0],):
        cfg = FitConfig(**options)
        got = triton_fit.fit_rows(W, cfg)
        assert not got.ambiguous.any()
        assert_rowfit_close(got, reference.fit_rows(W[sample].cpu(), cfg), rows=sample)
        want = torch_vec.fit_rows(W, cfg)
        decided = (~want.ambiguous).nonzero().flatten().cpu()  # rows the torch backend's cruder bound decides
        assert_rowfit_close(got, take_rows(want, decided), rows=decided)
    fit = fcinterp_fast.fit(W, backend="triton")
    assert fit.backend == "triton" and fit.count.shape[0] == 1000 and fit.count.device.type == "cuda"
