"""A fuzz harness of the C++ extension's entry points (``fcinterp_fast._cpu``), called directly.

Hypothesis draws heads of every dtype (and wrong ones), shape and stride (transposed, sliced,
broadcast), values (ties, zeros, subnormals, huge, NaN, inf) and options (valid and hostile
strings and integers), and output arrays (sometimes of the wrong shape, dtype or layout). Every call
must either raise TypeError / ValueError / OverflowError or return; a call that returns on a finite
head must give exactly the reference backend's memberships (count, lo, hi) and ALD location.

It runs briefly in every test run (CI); ``FUZZ_SECONDS=N`` keeps drawing new examples for about N
seconds per test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fuzzing import fuzz, fuzz_round
from hypothesis import HealthCheck, assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fcinterp_fast.backends import cpu, reference
from fcinterp_fast.config import FitConfig
from fcinterp_fast.heads.source import check_block

pytestmark = pytest.mark.skipif(cpu.unavailable() is not None, reason=f"backend 'cpu': {cpu.unavailable()}")

_ROUND = fuzz_round(25, 60, HealthCheck.filter_too_much)
NATIVE_ERRORS = (TypeError, ValueError, OverflowError)


_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64, "bfloat16": np.int16}
_SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-300, -5e-324, 65504.0, 1e38, -1e300, math.nan, math.inf, -math.inf]


@st.composite
def heads(draw, finite: bool):
    """(array, dtype name): a head in any layout, its values decoded by the kernel as ``dtype``."""
    name = draw(st.sampled_from(list(_DTYPES)))
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 48))
    values = draw(
        hnp.arrays(
            np.float64,
            (rows, cols),
            elements=st.one_of(
                st.floats(-8, 8, allow_nan=False, width=16),  # ties among few values
                st.floats(allow_nan=not finite, allow_infinity=not finite),
                st.sampled_from([v for v in _SPECIAL if not finite or math.isfinite(v)]),
            ),
        )
    )
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "bfloat16":
            array = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
        else:
            array = values.astype(_DTYPES[name])
    layout = draw(st.sampled_from(["c", "fortran", "sliced", "reversed", "broadcast"]))
    if layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "sliced":
        array = np.repeat(array, 2, axis=1)[:, ::2]
    elif layout == "reversed":
        array = array[::-1, ::-1]
    elif layout == "broadcast":
        array = np.broadcast_to(array[:1], array.shape)
    return array, name


def _accepted(array: np.ndarray, name: str) -> torch.Tensor:
    """The values the kernel reads, as float64, for heads that ``fit``'s input check accepts (a
    finite value may round to inf in float16, a float64 may be too large for float64 sums)."""
    decoded = _decoded(array, name)
    try:
        check_block(decoded if name == "float64" else decoded.to(torch.float32), 0)
    except ValueError:
        assume(False)
    return decoded


def _decoded(array: np.ndarray, name: str) -> torch.Tensor:
    """The values the kernel reads, as a float64 tensor."""
    tensor = torch.from_numpy(array.copy(order="C"))
    if name == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    return tensor.to(torch.float64)


def _outputs(rows: int, columns: int) -> dict[str, np.ndarray]:
    out = {name: np.empty((rows, columns)) for name in ("mean", "lo", "hi", "slope", "intercept", "r2")}
    out["count"] = np.empty((rows, columns), dtype=np.int64)
    out.update({name: np.empty(rows) for name in ("loc", "scale", "kappa", "loglik")})
    return out


@st.composite
def options(draw):
    """Valid options (a FitConfig) or None."""
    tree = draw(st.sampled_from(["chain", "full"]))
    depth = draw(st.integers(1, 4)) if tree == "full" else draw(st.one_of(st.none(), st.integers(1, 64)))
    return FitConfig(
        tree=tree,
        root=draw(st.sampled_from(["zero", "mean"])),
        grid=draw(st.sampled_from(["paper", "linspace"])),
        min_size=draw(st.integers(0, 30)),
        depth=depth,
    )


def test_fuzz_valid_calls_match_the_reference():
    @_ROUND
    @given(head=heads(finite=True), cfg=options(), threads=st.integers(0, 3))
    def check(head, cfg, threads):
        array, name = head
        decoded = _accepted(array, name)
        out = _outputs(array.shape[0], cfg.n_columns)
        cpu._cpu.fit_rows(array, name, cfg.tree, cfg.root, cfg.grid, cfg.min_size, cfg.levels, **out, threads=threads)
        want = reference.fit_rows(decoded, cfg)
        for field in ("count", "lo", "hi"):
            np.testing.assert_array_equal(out[field], getattr(want, field).numpy(), err_msg=field)
        np.testing.assert_array_equal(out["loc"], want.loc.numpy(), err_msg="loc")

    fuzz(check)


_INTS = st.one_of(st.integers(-3, 70), st.sampled_from([2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**100]))


def test_fuzz_hostile_calls_raise_or_return():
    """Anything at all: the extension raises a Python exception or returns, and never crashes."""

    @_ROUND
    @given(
        head=st.one_of(
            heads(finite=False),
            st.tuples(hnp.arrays(st.sampled_from([np.int32, np.complex64, np.uint8, np.float32]),
                                 hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)),
                      st.sampled_from([*_DTYPES, "float8", ""])),
        ),
        tree=st.sampled_from(["chain", "full", "forest", ""]),
        root=st.sampled_from(["zero", "mean", "median"]),
        grid=st.sampled_from(["paper", "linspace", "log"]),
        min_size=_INTS,
        levels=_INTS,
        threads=_INTS,
        columns=st.integers(-1, 140),
        damage=st.sampled_from([None, "dtype", "transpose", "read-only", "short"]),
    )  # fmt: skip
    def check(head, tree, root, grid, min_size, levels, threads, columns, damage):
        array, name = head
        rows = array.shape[0] if array.ndim else 0
        out = _outputs(rows, max(columns, 0))
        if damage == "dtype":
            out["count"] = out["count"].astype(np.float64)
        elif damage == "transpose":
            out["mean"] = np.empty((out["mean"].shape[1], rows)).T
        elif damage == "read-only":
            out["hi"].setflags(write=False)
        elif damage == "short":
            out["loc"] = np.empty(max(rows - 1, 0))
        try:
            needed = cpu._cpu.fit_rows(array, name, tree, root, grid, min_size, levels, **out, threads=threads)
        except NATIVE_ERRORS:
            return
        assert needed >= 0 and out["count"].min(initial=0) >= 0

    fuzz(check)


def test_fuzz_exact_sum_is_math_fsum():
    @_ROUND
    @given(
        values=hnp.arrays(np.float64, st.integers(0, 200), elements=st.floats(allow_nan=False, allow_infinity=False))
    )
    def check(values):
        try:
            want = math.fsum(values.tolist())
        except OverflowError:  # the partial sums overflow: the kernel's NaN-or-inf answer is all one can ask
            assert not math.isfinite(cpu._cpu._exact_sum(values))
            return
        assert cpu._cpu._exact_sum(values) == want

    fuzz(check)


def test_fuzz_ald_rows_are_the_references():
    @_ROUND
    @given(head=heads(finite=True))
    def check(head):
        array, name = head
        decoded = _accepted(array, name)
        out = [np.empty(array.shape[0]) for _ in range(4)]
        cpu._cpu._ald_rows(array, name, *out)
        want = reference.fit_rows(decoded, FitConfig(depth=1))
        np.testing.assert_array_equal(out[0], want.loc.numpy())
        np.testing.assert_allclose(out[3], want.loglik.numpy(), rtol=1e-13, atol=0)

    fuzz(check)
