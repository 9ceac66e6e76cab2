"""Logging and warnings: degenerate rows counted and named in one warning, an all-zero head, a head
that looks transposed; the ``fcinterp_fast`` logger; warnings point at the user's line."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fcinterp_fast
from fcinterp_fast.diagnostics import NAMED_ROWS, degenerate_rows


def fit_quietly(W, **options) -> fcinterp_fast.HeadFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fcinterp_fast.FitWarning)
        return fcinterp_fast.fit(W, **options)


def caught(fn) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        fn()
    return [w for w in found if issubclass(w.category, fcinterp_fast.FitWarning)]


@st.composite
def rows_with_degenerate_ones(draw):
    """Heads whose rows are drawn from few distinct values (ties, zeros, single non-zeros,
    constant rows, tiny subnormals): every kind of degenerate row and its near misses."""
    K = draw(st.integers(1, 8))
    D = draw(st.integers(1, 12))
    palette = draw(st.lists(st.sampled_from([0.0, 1.0, -1.0, 2.5, -0.5, 5e-324, 1e300]), min_size=1, max_size=3))
    values = draw(st.lists(st.sampled_from(palette), min_size=K * D, max_size=K * D))
    return torch.tensor(values, dtype=torch.float64).reshape(K, D)


@given(W=rows_with_degenerate_ones(), root=st.sampled_from(["zero", "mean"]), tree=st.sampled_from(["chain", "full"]))
def test_degenerate_rows_are_read_exactly_from_the_root_nodes(W, root, tree):
    fit = fit_quietly(W, root=root, tree=tree, depth=2 if tree == "full" else None, min_size=2)
    all_equal, few_nonzero = degenerate_rows(fit)
    rows = W.numpy()
    assert all_equal.tolist() == [bool(np.all(r == r[0])) for r in rows]
    assert few_nonzero.tolist() == [int(np.count_nonzero(r)) < 2 for r in rows]


def test_one_warning_counts_and_names_the_degenerate_rows():
    W = torch.randn(20, 30, generator=torch.Generator().manual_seed(1))
    W[[2, 5, 6, 9, 12, 17]] = 0.25  # constant rows
    W[14] = 0
    W[14, 3] = -1  # one non-zero value
    names = [f"c{k}" for k in range(20)]
    found = caught(lambda: fcinterp_fast.fit(W, class_names=names))
    assert len(found) == 1
    message = str(found[0].message)
    assert message.startswith("7 of 20 rows of the head are degenerate (6 with all values equal and 1 with fewer")
    named = [2, 5, 6, 9, 12, 14, 17][:NAMED_ROWS]
    assert message.endswith("rows " + ", ".join(f"{k} (c{k})" for k in named) + " ...")
    assert found[0].filename == __file__  # the user's line, not the package's
    assert caught(lambda: fcinterp_fast.fit(torch.randn(20, 30))) == []


def test_an_all_zero_head_gets_its_own_warning():
    torchvision = pytest.importorskip("torchvision")
    # torchvision's ViT builds its classification head with zeros (the vit_b_16, made small)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8, num_classes=12
    )
    found = caught(lambda: fcinterp_fast.fit(model))
    assert len(found) == 1 and str(found[0].message).startswith("every weight of the 12 x 8 head is 0")
    for root in ("zero", "mean"):
        fit = fit_quietly(model, root=root)
        assert fit.r2.isnan().all() and (fit.ald.scale == 0).all()


def test_a_head_named_like_an_embedding_with_few_rows_looks_transposed(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    file = tmp_path / "model.safetensors"
    safetensors.save_file(
        {"transformer.wte.weight": torch.randn(16, 256), "lm_head.weight": torch.randn(16, 256)}, file
    )
    found = caught(lambda: fcinterp_fast.fit(file, name="transformer.wte.weight"))
    assert len(found) == 1 and "'transformer.wte.weight' is named like an embedding but is 16 x 256" in str(
        found[0].message
    )
    assert caught(lambda: fcinterp_fast.fit(file, name="lm_head.weight")) == []  # a head may be wide
    embedding = torch.nn.Embedding(256, 16)  # (vocabulary, width): as an embedding should be
    assert caught(lambda: fcinterp_fast.fit(torch.nn.Sequential(embedding), name="0")) == []


def test_the_library_logs_to_its_logger_and_prints_nothing_by_itself(caplog):
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("fcinterp_fast").handlers)
    with caplog.at_level(logging.INFO, logger="fcinterp_fast"):
        fcinterp_fast.fit(torch.randn(6, 40), backend="torch", class_names=list("abcdef"))
    messages = [r.getMessage() for r in caplog.records if r.name == "fcinterp_fast"]
    assert any(m.startswith("fitting a 6 x 40 float32 head") and "backend torch on cpu" in m for m in messages)
    assert "class names: the 6 names given" in messages
