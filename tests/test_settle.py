"""Rows a fast backend flags as undecidable are recomputed by the fastest exact CPU backend."""

import torch

import fcinterp_fast
from fcinterp_fast.api import settle_ambiguous
from fcinterp_fast.backends import reference, registry, torch_vec
from fcinterp_fast.config import FitConfig


def test_exact_backend_is_the_fastest_exact_cpu_backend():
    chosen = registry.exact_backend()
    assert chosen.exact and "cpu" in chosen.devices and chosen.unavailable() is None
    assert chosen.name == ("cpu" if fcinterp_fast.available_backends()["cpu"] == "available" else "reference")


def test_flagged_rows_are_replaced_by_the_exact_fit():
    cfg = FitConfig(root="mean", min_size=2)
    # Row 1 holds its own mean at every split ([1, 2, 3] repeated): the torch backend flags it.
    W = torch.stack([torch.randn(30, generator=torch.Generator().manual_seed(0)), torch.tensor([1.0, 2.0, 3.0] * 10)])
    part = torch_vec.fit_rows(W, cfg)
    assert part.ambiguous.tolist() == [False, True]
    settled = settle_ambiguous(W, part, cfg)
    exact = reference.fit_rows(W, cfg)
    assert torch.equal(settled.count, exact.count)
    assert torch.equal(settled.lo.nan_to_num(7.0), exact.lo.nan_to_num(7.0))
    torch.testing.assert_close(settled.mean, exact.mean, equal_nan=True, rtol=1e-12, atol=0)
    torch.testing.assert_close(settled.r2, exact.r2, equal_nan=True, rtol=1e-9, atol=1e-12)
