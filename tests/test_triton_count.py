"""The counting kernel of 16-bit heads (``backend="triton"``, ``_triton_count``) against the
``reference`` backend: every membership exact, statistics within float64 rounding.

As in ``test_triton_fit``: on CPU the ``test_interpreter_*`` cases run on Triton's interpreter
(started in a subprocess with ``TRITON_INTERPRET=1`` by ``test_interpreter_suite``) on rows of at
most 256 elements; on a CUDA machine the ``gpu`` cases run compiled kernels on large heads and
compare the counting kernel with the reference and with the sort kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("triton")

from test_triton_fit import (
    DEVICE,
    INTERPRETING,
    MODE_IDS,
    MODES,
    STAT_ATOL,
    STAT_RTOL,
    assert_rowfit_close,
    awkward_rows,
    compiled_only,
    interpreter_only,
    rowfit_of,
    take_rows,
)

import fcinterp_fast
from checks import assert_equal, assert_matches_oracle, assert_within
from fcinterp_fast.backends import _triton_count, reference, registry, triton_fit
from fcinterp_fast.config import FitConfig
from fcinterp_fast.result import ALD_FIELDS, NODE_FIELDS, RowFit
from strategies import LAYOUTS, as_layout, fit_options, heads

SIXTEEN_BIT = [torch.float16, torch.bfloat16]
#: What the counting kernel writes (the triton backend's ``fit_rows`` adds anything else).
KERNEL_FIELDS = (*NODE_FIELDS, *ALD_FIELDS, "ambiguous")


def smallest_subnormal(dtype: torch.dtype) -> float:
    """2^-24 for float16, 2^-133 for bfloat16."""
    info = torch.finfo(dtype)
    return info.smallest_normal * info.eps


def special_rows(D: int, dtype: torch.dtype) -> torch.Tensor:
    """``awkward_rows`` plus rows of subnormals, signed zeros and the dtype's extremes, (12, D)."""
    g = torch.Generator().manual_seed(D + 1)
    tiny, big = smallest_subnormal(dtype), torch.finfo(dtype).max
    u = torch.rand(D, generator=g)
    extremes = torch.tensor([big, -big, tiny, -tiny, 1.0, -1.0, 0.0, 2 * tiny], dtype=torch.float64)
    rows = [
        torch.randint(-40, 41, (D,), generator=g).double() * tiny,  # subnormals: ties and zeros
        torch.where(u < 0.3, -0.0, torch.where(u < 0.5, 0.0, torch.randn(D, generator=g).double())),  # +-0
        extremes[torch.randint(0, len(extremes), (D,), generator=g)],  # the whole range, tied
        torch.randn(D, generator=g).double() * 0.02,  # a trained head's scale
    ]
    return torch.cat([awkward_rows(D, dtype), torch.stack(rows).to(dtype)])


def check_counting(W: torch.Tensor, programs: int | None = None, **options):
    """The counting kernel on W against the reference wherever it decided the row (float16 rows
    it always decides); returns its ``RowFit``."""
    cfg = FitConfig(**options)
    got = RowFit.empty(W.shape[0], cfg.n_columns, device=W.device)
    _triton_count.fit_rows(W, cfg, got, programs=programs)
    want = reference.fit_rows(W.cpu(), cfg)
    if W.dtype == torch.float16:
        assert not got.ambiguous.any(), "float16 thresholds are exact: no row may be ambiguous"
    decided = (~got.ambiguous.cpu()).nonzero().flatten()
    assert decided.numel(), "every row was flagged ambiguous: nothing left to compare"
    got_rows, want_rows = take_rows(got, decided), take_rows(want, decided)
    for name in KERNEL_FIELDS:  # as assert_rowfit_close, on what the kernel writes
        actual, expected = getattr(got_rows, name).cpu(), getattr(want_rows, name)
        if name in ("count", "lo", "hi", "loc", "ambiguous"):
            assert_equal(name, actual, expected)
        else:
            assert_within(name, actual, expected, STAT_ATOL + STAT_RTOL * expected.abs().numpy())
    return got


# ----------------------------------------------------------------------------------------------
# CPU: the Triton interpreter on small shapes
# ----------------------------------------------------------------------------------------------


def test_interpreter_suite():
    """Run this module's interpreter cases in a subprocess with TRITON_INTERPRET=1."""
    if INTERPRETING:
        pytest.skip("already running under the interpreter")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONWARNINGS="ignore::RuntimeWarning")
    env.pop(triton_fit.COUNTING_ENV, None)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "interpreter"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"interpreter cases failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


@interpreter_only
@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=str)
@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_interpreter_modes(dtype, options):
    check_counting(special_rows(61, dtype), min_size=5, **options)


@interpreter_only
@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=str)
@pytest.mark.parametrize("D", [1, 2, 3, 123, 256])
def test_interpreter_row_lengths(dtype, D):
    options = MODES[D % len(MODES)]  # each length in another mode
    check_counting(special_rows(D, dtype), min_size=0 if D <= 3 else 8, **options)


@interpreter_only
@pytest.mark.parametrize("programs", [1, 2, 5])
def test_interpreter_programs_share_scratch(programs):
    """Persistent programs fit several rows each in the same scratch: rows of different
    patterns after one another must not see each other's counts."""
    W = torch.cat([special_rows(40, torch.bfloat16), special_rows(40, torch.bfloat16).flip(0) * 0.5])
    check_counting(W, programs=programs, min_size=4, root="mean")


@interpreter_only
@given(W=heads(dtypes=SIXTEEN_BIT, max_rows=3, max_cols=48), options=fit_options(), layout=st.sampled_from(LAYOUTS))
def test_interpreter_hypothesis_heads_match_the_oracle(W, options, layout):
    """``fit`` with the counting kernel switched on, against the independent float64 oracle:
    nodes, masks and members exact, statistics within its bounds, on heads with ties, zeros,
    magnitudes a few ulps apart and both dtypes' extremes, in every memory layout."""
    with mock.patch.dict(os.environ, {triton_fit.COUNTING_ENV: "1"}):
        fit = fcinterp_fast.fit(as_layout(W, layout), backend="triton", **options)
    assert_matches_oracle(fit, W, options, float64_backend=False)


@interpreter_only
def test_interpreter_strided_input():
    base = torch.randn(90, 5, generator=torch.Generator().manual_seed(7)).to(torch.float16)
    W = base.t()  # (5, 90), stride (1, 5)
    assert not W.is_contiguous()
    check_counting(W, min_size=6, tree="full", depth=3)


@interpreter_only
def test_interpreter_float16_thresholds_are_exact():
    """Mean 36 * 2^-24 / 36 = 2^-24 is an element. The sort kernel's float64 bound cannot prove
    its sum of +-65504 and subnormals exact and flags the row; the counting kernel sums float16
    exactly (int64 multiples of 2^-24) and decides it as the reference does."""
    tiny = 2.0**-24
    W = torch.tensor([[65504.0] * 16 + [-65504.0] * 16 + [tiny, 17 * tiny, 18 * tiny, 0.0]], dtype=torch.float16)
    cfg = FitConfig(root="mean", min_size=2)
    assert triton_fit.fit_rows(W, cfg, counting=False).ambiguous.tolist() == [True]
    check_counting(W, root="mean", min_size=2)


@interpreter_only
def test_interpreter_bfloat16_undecided_rows_are_flagged_and_settled(monkeypatch):
    """bfloat16 sums are float64 sums: row 0's (2^53 - 2^53 + 6) may round, so the row is flagged
    and ``fit`` settles it with an exact backend; row 1 spans few binades and is decided."""
    monkeypatch.setenv(triton_fit.COUNTING_ENV, "1")
    big = 2.0**53
    W = torch.tensor([[big, -big, 1.0, 3.0, 2.0, 0.0], [4.0, 1.0, 2.0, 3.0, 9.0, 5.0]], dtype=torch.bfloat16)
    options = dict(root="mean", min_size=2)
    assert check_counting(W, **options).ambiguous.tolist() == [True, False]
    fit = fcinterp_fast.fit(W, backend="triton", **options)
    want = fcinterp_fast.fit(W, backend="reference", **options)
    assert fit.nodes == want.nodes
    assert_rowfit_close(rowfit_of(fit), rowfit_of(want))


@interpreter_only
@pytest.mark.parametrize(
    "setting, dtype, used",
    [("1", torch.bfloat16, True), ("1", torch.float16, True), ("", torch.bfloat16, False), ("1", torch.float32, False)],
    ids=["on-bf16", "on-f16", "off", "on-float32"],
)
def test_interpreter_switch(monkeypatch, setting, dtype, used):
    """FCINTERP_TRITON_COUNTING=1 sends 16-bit heads (only those) to the counting kernel; unset, the
    sort kernels fit them; ``counting=`` overrides the variable."""
    calls = []
    monkeypatch.setattr(_triton_count, "fit_rows", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setenv(triton_fit.COUNTING_ENV, setting)
    W = torch.randn(2, 16, generator=torch.Generator().manual_seed(8)).to(dtype)
    triton_fit.fit_rows(W, FitConfig())
    assert bool(calls) == used
    calls.clear()
    triton_fit.fit_rows(W, FitConfig(), counting=not used)
    assert bool(calls) == (not used and dtype != torch.float32)


# ----------------------------------------------------------------------------------------------
# Anywhere (no kernel runs)
# ----------------------------------------------------------------------------------------------


def test_off_by_default():
    env = {k: v for k, v in os.environ.items() if k != triton_fit.COUNTING_ENV}
    code = "from fcinterp_fast.backends import triton_fit; print(triton_fit.counting_enabled())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("dtype, one_bits", [(torch.float16, 0x3C00), (torch.bfloat16, 0x3F80)], ids=str)
def test_pattern_tables_follow_key_order(dtype, one_bits):
    """Key order is value order (negatives 0xFFFF - bits, positives bits + 0x8000), and the log
    table holds ln|v| of every finite non-zero pattern."""
    value, log = _triton_count.pattern_tables(dtype, torch.device("cpu"))
    finite = torch.isfinite(value)
    assert (value[finite].diff() >= 0).all()
    assert int((value[finite] == 0).sum()) == 2  # -0 (key 0x7FFF, never used) and +0 (0x8000)
    assert value[0x8000 + one_bits] == 1.0 and value[0x7FFF - one_bits] == -1.0  # bits 0x8000 | one_bits
    nonzero = finite & (value != 0)
    assert torch.equal(log[nonzero], value[nonzero].abs().log())
    assert torch.equal(value[0x8001], torch.tensor(smallest_subnormal(dtype), dtype=torch.float64))


@pytest.mark.skipif(INTERPRETING, reason="the interpreter replaces the compiler")
@pytest.mark.parametrize("full, root_mean, fixed_point", [(False, False, False), (True, True, True)], ids=str)
def test_kernel_compiles_for_an_h100(full, root_mean, fixed_point):
    """No GPU needed: Triton compiles the kernel ahead of time for sm_90 down to a cubin, which
    catches what the interpreter lets through (loop-carried types, unsupported operations)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = _triton_count._count_fit_kernel
    pointers = dict(bits_ptr="*i16", hist_ptr="*i32", buckets_ptr="*i32", entries_ptr="*i32", nodes_ptr="*i32",
                    count_ptr="*i64", ambiguous_ptr="*i1")  # fmt: skip
    meta = dict(CHUNK=1024, FULL=full, ROOT_MEAN=root_mean, FIXED_POINT=fixed_point, MANTISSA=11 if fixed_point else 8)
    signature = {
        name: "constexpr"
        if name in meta
        else pointers.get(name, "*fp64" if name.endswith(("_ptr", "_table")) else "i32")
        for name in kernel.arg_names
    }
    source = ASTSource(
        fn=kernel, signature=signature, constexprs={(kernel.arg_names.index(k),): v for k, v in meta.items()}
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
    assert len(compiled.asm["cubin"]) > 0


@pytest.mark.parametrize(
    "W, error, message",
    [
        (torch.randn(2, 5), TypeError, "float16 or bfloat16"),
        (torch.empty(1, _triton_count.MAX_FLOAT16_D + 1, dtype=torch.float16), ValueError, "at most"),
    ],
    ids=["float32", "long-float16"],
)
def test_launcher_checks(W, error, message):
    cfg = FitConfig()
    with pytest.raises(error, match=message):
        _triton_count.fit_rows(W, cfg, RowFit.empty(W.shape[0], cfg.n_columns))


def test_long_float16_rows_go_to_the_sort_kernels():
    assert not _triton_count.fits(torch.empty(1, _triton_count.MAX_FLOAT16_D + 1, dtype=torch.float16))
    assert _triton_count.fits(torch.empty(1, _triton_count.MAX_FLOAT16_D + 1, dtype=torch.bfloat16))


# ----------------------------------------------------------------------------------------------
# GPU: large heads, compared with the reference and with the sort kernels
# ----------------------------------------------------------------------------------------------


def laplace(K: int, D: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(K, D, generator=g) - 0.5
    return (-0.02 * u.sign() * torch.log1p(-2 * u.abs())).to(dtype)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=str)
@pytest.mark.parametrize("options", MODES, ids=MODE_IDS)
def test_gpu_modes_and_special_rows(dtype, options):
    W = torch.cat([special_rows(300, dtype), laplace(40, 300, dtype, 1)]).to(DEVICE)
    check_counting(W, min_size=8, **options)


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize(
    "K, D, dtype",
    [(512, 8192, torch.bfloat16), (256, 4096, torch.float16), (8, 20000, torch.bfloat16), (3000, 128, torch.float16)],
    ids=["512x8192-bf16", "256x4096-f16", "8x20000-bf16", "3000x128-f16"],
)
def test_gpu_large_heads_match_sort_kernels_and_reference(K, D, dtype):
    """Every row against the sort kernels (rows neither flags), every 61st row against the reference."""
    W = laplace(K, D, dtype, K + D).to(DEVICE)
    W[0] = torch.randint(-5, 6, (D,)).to(dtype)  # ties and zeros
    cfg = FitConfig()
    got = triton_fit.fit_rows(W, cfg, counting=True)
    sorted_fit = triton_fit.fit_rows(W, cfg, counting=False)
    decided = (~got.ambiguous & ~sorted_fit.ambiguous).nonzero().flatten().cpu()
    assert_rowfit_close(take_rows(got, decided), take_rows(sorted_fit, decided))
    sample = torch.arange(0, K, 61)
    want = reference.fit_rows(W[sample].cpu(), cfg)
    kept = (~got.ambiguous.cpu()[sample]).nonzero().flatten()
    assert_rowfit_close(take_rows(take_rows(got, sample), kept), take_rows(want, kept))
    if dtype == torch.float16:
        assert not got.ambiguous.any()


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=str)
def test_gpu_real_head(lite0_head, dtype, monkeypatch):
    """The bundled EfficientNet-Lite0 classifier in 16 bits through ``fit`` with the switch on."""
    monkeypatch.setenv(triton_fit.COUNTING_ENV, "1")
    W = lite0_head.detach().to(DEVICE, dtype)
    fit = fcinterp_fast.fit(W, backend="triton")
    want = fcinterp_fast.fit(W.cpu(), backend=registry.exact_backend().name)
    assert fit.nodes == want.nodes
    assert_rowfit_close(rowfit_of(fit), rowfit_of(want))
