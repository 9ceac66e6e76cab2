"""What a user must know about a fit: the package's logger, its warning category and the checks
that warn (degenerate rows, an all-zero head, a head that looks transposed).

The library logs to the ``fcinterp_fast`` logger (a ``NullHandler`` is attached, so nothing is
printed unless the application configures logging; the command line does, ``-v`` for more) and
warns with ``FitWarning`` (a ``UserWarning``), pointing at the user's own call, never at a line of
the package. Filter them as usual: ``warnings.simplefilter("ignore", fcinterp_fast.FitWarning)``.

This module imports nothing else of the package: every floor of it may log and warn.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

import torch

__all__ = [
    "logger",
    "FitWarning",
    "warn",
    "degenerate_rows",
    "check_fit",
    "fit_problems",
    "check_orientation",
    "TRANSPOSED_RATIO",
    "NAMED_ROWS",
]

#: The package's logger; ``fcinterp_fast/__init__.py`` attaches a ``NullHandler``.
logger = logging.getLogger("fcinterp_fast")

#: A head named like an embedding whose D is at least this many times its K looks transposed
#: (an embedding is (vocabulary, width), and vocabularies are far larger than widths).
TRANSPOSED_RATIO = 4
#: How many rows a warning names before "...".
NAMED_ROWS = 5
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class FitWarning(UserWarning):
    """A fit ran, but something about the head or its result needs the user's attention (rows where
    the statistics are undefined, an all-zero head, a head that looks transposed, class names that
    do not fit the head)."""


def warn(message: str, category: type[Warning] = FitWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside this package (the user's line)."""
    frame: FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class _FitStatistics(Protocol):
    """What the checks read of a ``HeadFit`` (this module imports no other of the package)."""

    nodes: list[str]
    count: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    slope: torch.Tensor
    r2: torch.Tensor
    class_names: list[str] | None

    @property
    def shape(self) -> tuple[int, int]: ...


def degenerate_rows(fit: _FitStatistics) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose values are all equal, and rows with fewer than 2 non-zero values.

    Read from the fit's root nodes ``+`` and ``-`` alone (no weight is read again), exactly: the
    two root nodes hold every non-zero value of the row (``root="zero"``: every non-zero value;
    ``"mean"``: every value), and a node's number L of non-zero magnitudes is 0 where its slope is
    NaN (or it is absent), 1 where its r2 is NaN and its slope is not (docs/spec.md section 3), else
    at least 2. A row is constant exactly when it is all zeros (no non-zero value under
    ``root="zero"``) or one root node holds all D values with ``lo == hi``.

    Returns:
        (all_equal, few_nonzero): two (K,) bool tensors on the fit's device.
    """
    D = fit.shape[1]
    nonzero = torch.zeros(fit.count.shape[0], dtype=torch.int64, device=fit.count.device)
    all_equal = torch.zeros_like(nonzero, dtype=torch.bool)
    for node in ("+", "-"):
        j = fit.nodes.index(node)
        present = fit.count[:, j] > 0
        has_line = present & ~torch.isnan(fit.slope[:, j])  # L >= 1
        nonzero += has_line.to(torch.int64) * (1 + (~torch.isnan(fit.r2[:, j])).to(torch.int64))  # 0, 1 or 2
        all_equal |= (fit.count[:, j] == D) & (fit.lo[:, j] == fit.hi[:, j])
    all_equal |= nonzero == 0
    return all_equal, nonzero < 2


def check_fit(fit: _FitStatistics) -> None:
    """Warn (one ``FitWarning`` per fit) about an all-zero head or about degenerate rows."""
    message = fit_problems(fit)
    if message is not None:
        warn(message)


def fit_problems(fit: _FitStatistics) -> str | None:
    """What ``check_fit`` warns about (an all-zero head, or how many rows are degenerate, naming
    the first ``NAMED_ROWS``), or None; the report prints it too."""
    K, D = fit.shape
    if _all_zero(fit):
        return (
            f"every weight of the {K} x {D} head is 0 (a head not trained yet, e.g. torchvision's zero-initialised "
            f"ViT heads?): no node has an Algorithm 1 fit, so R^2, slope and the ALD parameters are NaN or "
            f"degenerate (scale 0) for every class"
        )
    all_equal, few_nonzero = degenerate_rows(fit)
    bad = all_equal | few_nonzero
    n_bad = int(bad.sum())
    if not n_bad:
        return None
    rows = bad.nonzero().flatten()[:NAMED_ROWS].tolist()
    named = ", ".join(_row_name(fit.class_names, k) for k in rows) + (" ..." if n_bad > NAMED_ROWS else "")
    n_equal, n_few = int(all_equal.sum()), int((few_nonzero & ~all_equal).sum())
    kinds = [f"{n} with all values equal" for n in [n_equal] if n] + [
        f"{n} with fewer than 2 non-zero values" for n in [n_few] if n
    ]
    return (
        f"{n_bad} of {K} rows of the head are degenerate ({' and '.join(kinds)}): Algorithm 1 has no line "
        f"for them (R^2 NaN) or a trivial one, and their ALD fit may be degenerate (kappa 0, inf or NaN, "
        f"scale 0): rows {named}"
    )


def _all_zero(fit: _FitStatistics) -> bool:
    """Every row all zeros: every root node absent or holding only zeros (lo == hi == 0)."""
    for node in ("+", "-"):
        j = fit.nodes.index(node)
        present = fit.count[:, j] > 0
        if bool((present & ((fit.lo[:, j] != 0) | (fit.hi[:, j] != 0))).any()):
            return False
    return True


def _row_name(class_names: Sequence[str] | None, k: int) -> str:
    return f"{k} ({class_names[k]})" if class_names else str(k)


def check_orientation(shape: tuple[int, int], name: str | None, embedding: bool) -> None:
    """Warn when a head that is an input embedding (``embedding``: its ``name`` is one, by
    ``heads.names.is_embedding_name``, the rule that also picks tied heads) has far fewer rows than
    columns: embeddings are (vocabulary, width), so it was probably stored (width, vocabulary)."""
    K, D = shape
    if embedding and D >= TRANSPOSED_RATIO * K:
        warn(
            f"head {name!r} is named like an embedding but is {K} x {D} (K classes x D features): an embedding "
            f"is (vocabulary, width), so this one looks transposed; fit its transpose if its columns are the "
            f"classes, or choose the head with name=..."
        )
