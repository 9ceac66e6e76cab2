"""Comparison of a ``HeadFit`` with the oracle or with another fit, with messages that show what
differs and where."""

from __future__ import annotations

import numpy as np
import torch

import oracle
from fcinterp_fast.result import ALD_FIELDS, NODE_FIELDS

__all__ = [
    "assert_equal",
    "assert_within",
    "assert_matches_oracle",
    "fit_fields",
    "assert_same_fit",
    "assert_same_memberships",
    "SPEC_RTOL",
    "SPEC_ATOL",
    "SAFETY",
]

#: docs/spec.md section 3: slope, intercept, r2 of float32 input against a float64 oracle.
SPEC_RTOL, SPEC_ATOL = 1e-5, 1e-6
#: Factor on the oracle's first-order error bounds (they neglect second-order terms).
SAFETY = 4.0


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _report(what: str, bad: np.ndarray, actual: np.ndarray, expected: np.ndarray, extra: str = "") -> str:
    where = np.argwhere(bad)[:5]
    shown = "; ".join(f"{tuple(i)}: got {actual[tuple(i)]!r}, expected {expected[tuple(i)]!r}" for i in where)
    return f"{what}: {int(bad.sum())} of {bad.size} differ{extra}; first {shown}"


def assert_equal(what: str, actual, expected) -> None:
    """Exact equality, NaN equal to NaN (and -0.0 equal to 0.0)."""
    actual, expected = _numpy(actual), _numpy(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = actual != expected
    if actual.dtype.kind == "f" and expected.dtype.kind == "f":
        bad &= ~(np.isnan(actual) & np.isnan(expected))
    assert not bad.any(), _report(what, bad, actual, expected)


def assert_within(what: str, actual, expected, tol) -> None:
    """|actual - expected| <= tol elementwise; NaN, inf and their signs must match exactly."""
    actual, expected = _numpy(actual), _numpy(expected)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), expected.shape)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore"):
        off = np.where(finite, np.abs(actual - expected), 0.0)
    exact = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = np.where(finite, ~(np.isfinite(actual) & (off <= tol)), ~exact)
    assert not bad.any(), _report(what, bad, actual, expected, f" beyond tolerance (max tol {tol[bad].max():.3g})")


def assert_matches_oracle(fit, W: torch.Tensor, options: dict, float64_backend: bool) -> oracle.OracleFit:
    """Check every field docs/spec.md section 2-4 defines, the masks and the member lists of ``fit`` against
    ``oracle.fit_head`` on the same values. Memberships must be exact; statistics within the
    oracle's float64 error bounds (times ``SAFETY``), and, for backends that are not float64
    throughout, also within docs/spec.md section 3's float32 tolerance."""
    values = W.detach().to("cpu", torch.float64).numpy()
    expected = oracle.fit_head(values, **options)
    assert fit.nodes == expected.nodes, f"nodes {fit.nodes} != oracle {expected.nodes}"

    # Memberships: count, lo, hi exact, and the masks rebuilt from them equal to the oracle's sets.
    for name in ("count", "lo", "hi"):
        assert_equal(name, getattr(fit, name), getattr(expected, name))
    assert_within("mean", fit.mean, expected.mean, SAFETY * expected.mean_err)
    K, D = values.shape
    for node in expected.nodes:
        want = np.zeros((K, D), dtype=bool)
        for k in range(K):
            want[k, expected.members[k].get(node, [])] = True
        assert_equal(f"mask({node!r})", fit.mask(node), want)
        for k in range(K):
            assert_equal(f"members({k}, {node!r})", fit.members(k, node), np.flatnonzero(want[k]))

    # Line fits.
    for name in ("slope", "intercept", "r2"):
        reference = getattr(expected, name)
        tol = SAFETY * getattr(expected, f"{name}_err")
        if not float64_backend:
            tol = np.maximum(tol, SPEC_RTOL * np.abs(np.nan_to_num(reference)) + SPEC_ATOL)
        assert_within(name, getattr(fit, name), reference, tol)

    # ALD: the log-likelihood always; the maximiser where it is unique by a margin.
    loglik_tol = SAFETY * expected.loglik_err
    if not float64_backend:
        loglik_tol = np.maximum(loglik_tol, 1e-9 * np.abs(np.nan_to_num(expected.loglik, posinf=0.0)))
    assert_within("ald.loglik", fit.ald.loglik, expected.loglik, loglik_tol)
    unique = expected.ald_margin > 2 * SAFETY * expected.ald_rel_err
    rel = SAFETY * 4 * expected.ald_rel_err
    if not float64_backend:
        rel = np.maximum(rel, SPEC_RTOL)
    assert_equal("ald.loc (unique maximiser)", _numpy(fit.ald.loc)[unique], expected.loc[unique])
    for name in ("kappa", "scale"):
        reference = getattr(expected, name)
        assert_within(
            f"ald.{name} (unique maximiser)",
            _numpy(getattr(fit.ald, name))[unique],
            reference[unique],
            (rel * np.abs(reference))[unique],
        )
    return expected


def _named(name: str):
    """A ``torch.testing.assert_close`` message that starts with the field's name."""
    return lambda message: f"{name}: {message}"


def fit_fields(fit) -> dict:
    """``nodes`` and every statistic of a ``HeadFit`` by name: ``NODE_FIELDS`` ("count", "mean", ...)
    and ``ALD_FIELDS`` as "ald.loc", .... A dict of that form (what ``distributed_worker`` saves)
    is returned as it is."""
    if isinstance(fit, dict):
        return fit
    return {
        "nodes": fit.nodes,
        **{name: getattr(fit, name) for name in NODE_FIELDS},
        **{f"ald.{name}": getattr(fit.ald, name) for name in ALD_FIELDS},
    }


def assert_same_fit(actual, expected) -> None:
    """The same nodes and every node and ALD statistic bit for bit (NaN where NaN; dtype and
    device too). Either side may be a ``HeadFit`` or a ``fit_fields`` dict."""
    actual, expected = fit_fields(actual), fit_fields(expected)
    assert actual["nodes"] == expected["nodes"], f"nodes {actual['nodes']} != {expected['nodes']}"
    for name in (*NODE_FIELDS, *(f"ald.{n}" for n in ALD_FIELDS)):
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, equal_nan=True, msg=_named(name))


def assert_same_memberships(actual, expected, rtol: float, atol: float) -> None:
    """The same nodes and memberships (count, lo, hi bit for bit, NaN where NaN), the other node
    statistics (mean, slope, intercept, r2) within ``atol + rtol * |expected|``: fits of the same
    head whose float64 sums ran in another order. Either side may be a ``HeadFit`` or a
    ``fit_fields`` dict."""
    actual, expected = fit_fields(actual), fit_fields(expected)
    assert actual["nodes"] == expected["nodes"], f"nodes {actual['nodes']} != {expected['nodes']}"
    for name in NODE_FIELDS:
        tol = dict(rtol=0, atol=0) if name in ("count", "lo", "hi") else dict(rtol=rtol, atol=atol)
        torch.testing.assert_close(actual[name], expected[name], **tol, equal_nan=True, msg=_named(name))
