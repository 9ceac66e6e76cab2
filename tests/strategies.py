"""Hypothesis strategies for classifier heads and fit options, shared by the test modules.

Heads are built to hit what breaks fits: exact ties, zeros, all-equal rows, rows of 1-3 elements,
magnitudes a few ulps apart, huge and tiny magnitudes of every float dtype, mixed signs, and
non-contiguous views of the same values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

__all__ = [
    "FLOAT_DTYPES",
    "LAYOUTS",
    "EXPONENT_RANGE",
    "heads",
    "head_rows",
    "fit_options",
    "as_layout",
    "bit_pattern",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LAYOUTS = ("contiguous", "transposed", "strided", "column_slice")

#: Decimal exponents of the magnitudes drawn per dtype: down into the subnormals of the narrow
#: dtypes, up to near their largest finite value. float64 stays within 1e-250 .. 1e300: the upper
#: end is below the head checker's overflow guard (|x| <= max / (4 D)), and the lower end keeps
#: differences of values a few ulps apart out of the subnormal range, where float64 loses its
#: relative accuracy and every error bound of the oracle would need an absolute floor.
EXPONENT_RANGE = {
    torch.float16: (-7, 4),
    torch.bfloat16: (-40, 38),
    torch.float32: (-44, 38),
    torch.float64: (-250, 300),
}

_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def bit_pattern(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float tensor (NaN-safe equality of before/after snapshots)."""
    return t.detach().cpu().contiguous().view(_INT_VIEW[t.dtype]).clone()


@st.composite
def _magnitude(draw, dtype, center: int, spread: int) -> float:
    lo, hi = EXPONENT_RANGE[dtype]
    exponent = draw(st.integers(max(lo, center - spread), min(hi, center + spread)))
    mantissa = draw(st.floats(1.0, 9.99, allow_nan=False, allow_infinity=False))
    return mantissa * 10.0**exponent


@st.composite
def head_rows(draw, dtype: torch.dtype, D: int) -> list[float]:
    """One row of D values (as Python floats, before the cast to ``dtype``).

    Kinds: "mixed" (small integer ratios times a row scale, so exact ties and zeros are common,
    plus free values of nearby or far exponents), "equal" (every value the same, maybe 0),
    "ulps" (one magnitude of either sign; ``head`` then moves the bits by a few ulps), "wide"
    (every value of its own exponent over the whole dtype range).
    """
    lo, hi = EXPONENT_RANGE[dtype]
    kind = draw(st.sampled_from(["mixed", "mixed", "equal", "ulps", "wide"]))
    center = draw(st.integers(lo, hi))
    if kind == "equal":
        value = draw(st.sampled_from([0.0, 1.0, -1.0])) * draw(_magnitude(dtype, center, 0))
        return [value] * D
    if kind == "ulps":
        value = draw(_magnitude(dtype, center, 0))
        return [value * draw(st.sampled_from([1.0, -1.0])) for _ in range(D)]
    if kind == "wide":
        return [draw(_magnitude(dtype, center, hi - lo)) * draw(st.sampled_from([1.0, -1.0])) for _ in range(D)]
    scale = draw(_magnitude(dtype, center, 0))
    ratio = st.builds(lambda a, b: a / b, st.integers(-6, 6), st.sampled_from([1, 2, 3, 7]))
    free = st.builds(lambda m, s: m * s, _magnitude(dtype, center, 3), st.sampled_from([1.0, -1.0]))
    return draw(st.lists(st.one_of(ratio.map(lambda r: r * scale), free), min_size=D, max_size=D))


@st.composite
def heads(draw, dtypes=FLOAT_DTYPES, max_rows: int = 4, max_cols: int = 40) -> torch.Tensor:
    """A contiguous (K, D) CPU head of one of ``dtypes``, every value finite.

    D is 1-3 about half of the time. Some rows of one magnitude (kinds "ulps" and "equal") get
    small integer offsets added to the bits of their values: distinct magnitudes a few ulps
    apart, with ties.
    """
    dtype = draw(st.sampled_from(dtypes))
    K = draw(st.integers(1, max_rows))
    D = draw(st.one_of(st.integers(1, 3), st.integers(4, max_cols)))
    rows = [draw(head_rows(dtype, D)) for _ in range(K)]
    finite_max = torch.finfo(dtype).max
    values = np.clip(np.array(rows, dtype=np.float64), -finite_max, finite_max)
    W = torch.from_numpy(values).to(dtype)
    offsets = draw(st.lists(st.integers(-3, 3), min_size=K * D, max_size=K * D))
    nudged = (W.view(_INT_VIEW[dtype]) + torch.tensor(offsets).view(K, D).to(_INT_VIEW[dtype])).view(dtype)
    # Some rows whose values are all of one magnitude get nudged (the others stay exactly
    # equal); a nudge that crosses zero or reaches inf/NaN is dropped.
    chosen = torch.tensor(draw(st.lists(st.booleans(), min_size=K, max_size=K))).view(K, 1)
    same_magnitude = (W.abs() == W.abs()[:, :1]).all(dim=1, keepdim=True) & (W[:, :1] != 0)
    keep = chosen & same_magnitude & torch.isfinite(nudged) & (torch.sign(nudged) == torch.sign(W))
    W = torch.where(keep, nudged, W)
    assert torch.isfinite(W).all()
    return W


def as_layout(W: torch.Tensor, layout: str) -> torch.Tensor:
    """A view with the values of ``W`` (K, D) in another memory layout (same dtype and device).

    "transposed": the transpose of a (D, K) tensor; "strided": every 2nd row and 3rd column of a
    larger tensor; "column_slice": columns 1..D of a (K, D + 2) tensor (rows not contiguous).
    """
    K, D = W.shape
    if layout == "contiguous":
        return W.clone()
    if layout == "transposed":
        return W.t().contiguous().t()
    if layout == "strided":
        base = torch.full((2 * K, 3 * D), math.pi, dtype=W.dtype, device=W.device)
        base[::2, ::3] = W
        return base[::2, ::3]
    if layout == "column_slice":
        base = torch.full((K, D + 2), -math.e, dtype=W.dtype, device=W.device)
        base[:, 1 : D + 1] = W
        return base[:, 1 : D + 1]
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


@st.composite
def fit_options(draw, trees=("chain", "full")) -> dict:
    """Keyword arguments of ``fit`` (and ``oracle.fit_head``): tree, root, grid, min_size, depth."""
    tree = draw(st.sampled_from(trees))
    depth = draw(st.integers(1, 4)) if tree == "full" else draw(st.one_of(st.none(), st.integers(1, 6)))
    return dict(
        tree=tree,
        root=draw(st.sampled_from(["zero", "mean"])),
        grid=draw(st.sampled_from(["paper", "linspace"])),
        min_size=draw(st.sampled_from([0, 1, 2, 3, 5, 20])),
        depth=depth,
    )
