"""The bundled ImageNet EfficientNet-Lite0: it classifies a real photo, its classes are found by
name, and every backend fits its real (1000, 1280) head exactly as the oracle does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcinterp_fast
from checks import assert_matches_oracle, assert_same_memberships
from fcinterp_fast.classes import class_names, find_class

# ImageNet-1k indices of the classes the paper discusses.
CLASSES = {"tricycle": 870, "web site": 916, "whiptail": 41, "military uniform": 652}


def test_grace_hopper_is_in_military_uniform(lite0):
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    x = fcinterp_fast.models.transform(lite0)(image)[None]
    with torch.no_grad():
        top5 = lite0(x).topk(5).indices[0].tolist()
    assert CLASSES["military uniform"] in top5, [class_names(lite0)[k] for k in top5]


def test_find_class_by_name(lite0):
    names = class_names(lite0)
    for name, index in CLASSES.items():
        assert find_class(names, name) == index
        assert find_class(names, name.upper()) == index
    with pytest.raises(ValueError, match=r"class name 'crane' is ambiguous: 134: crane; 517: crane"):
        find_class(names, "crane")
    with pytest.raises(ValueError, match=r"no class named 'tricylce'; did you mean 'tricycle'"):
        find_class(names, "tricylce")


@pytest.mark.parametrize(
    "options",
    [dict(), dict(tree="full", depth=3, root="mean", min_size=2), dict(grid="linspace", min_size=5, depth=9)],
    ids=["default", "full-mean", "linspace-deep"],
)
def test_backend_matches_oracle_on_real_rows(backend, lite0_head, options):
    """Sixteen real rows (the named classes and an even spread): exact memberships."""
    rows = sorted(set(CLASSES.values()) | set(range(0, 1000, 83)))
    W = lite0_head[rows]
    assert_matches_oracle(backend.fit(W, **options), W, options, backend.float64)


def test_class_names_reach_the_fit(lite0):
    fit = fcinterp_fast.fit(lite0, tree="full", depth=1)
    assert fit.class_index("military uniform") == CLASSES["military uniform"]
    assert fit.members("tricycle", "+").equal(fit.mask("+")[CLASSES["tricycle"]].nonzero().flatten())


@pytest.mark.slow
def test_torch_equals_reference_on_the_whole_head(lite0_head):
    """All 1000 rows with the default options: the vectorised backend and the per-row reference
    agree on every membership exactly and on every statistic to float64 rounding."""
    fast = fcinterp_fast.fit(lite0_head, backend="torch")
    exact = fcinterp_fast.fit(lite0_head, backend="reference")
    assert_same_memberships(fast, exact, rtol=1e-11, atol=1e-13)
    for name in ("loc", "scale", "kappa", "loglik"):
        np.testing.assert_allclose(getattr(fast.ald, name), getattr(exact.ald, name), rtol=1e-11, err_msg=name)
