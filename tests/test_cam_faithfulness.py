"""``node_ablation`` and ``confidence_change`` on the bundled EfficientNet-Lite0 with grace_hopper.jpg."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import fcinterp_fast
from fcinterp_fast.cam import confidence_change, explain, node_ablation

CLASS = "military uniform"


@pytest.fixture(scope="module")
def hopper_path():
    from matplotlib import cbook

    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def lite0_fit(lite0):
    return fcinterp_fast.fit(lite0)


def test_ablation_is_the_logit_change_of_a_zeroed_head(lite0, lite0_fit, hopper_path):
    targets = [(CLASS, "+*"), (CLASS, "-*"), (CLASS, "++"), (CLASS, None)]
    forwards = []
    handle = lite0.register_forward_hook(lambda *args: forwards.append(1))
    try:
        result = node_ablation(lite0, hopper_path, targets, fit=lite0_fit)
    finally:
        handle.remove()
    assert len(forwards) == 1  # one forward of the image for all targets
    x = fcinterp_fast.models.transform(lite0)(Image.open(hopper_path).convert("RGB"))[None]
    with torch.no_grad():
        logits = lite0(x).double()
    for t, target in enumerate(result.targets):
        k = target.cls
        ablated = copy.deepcopy(lite0)
        members = torch.arange(1280) if target.node is None else lite0_fit.members(k, target.name)
        with torch.no_grad():
            ablated.classifier.weight[k, members] = 0
            want = ablated(x).double()[0, k] - logits[0, k]
        assert result.logit[0, t] == pytest.approx(float(logits[0, k]), abs=1e-4)
        assert result.delta[0, t] == pytest.approx(float(want), abs=1e-4)


def test_plus_neurons_matter_more_than_random_and_minus_ones(lite0, lite0_fit, hopper_path):
    """The paper's reading: zeroing the deepest + node lowers the class logit far below what as
    many random neurons do; zeroing the deepest - node raises it."""
    result = node_ablation(lite0, hopper_path, [(CLASS, "+*"), (CLASS, "-*"), (CLASS, None)], fit=lite0_fit, seed=3)
    plus, minus, whole = range(3)
    assert result.delta[0, plus] < result.random_delta[0, plus] - 5 * result.random_std[0, plus]
    assert result.delta[0, minus] > 0 > result.random_delta[0, minus]
    assert result.z[0, plus] < -5 and result.z[0, minus] > 2 and torch.isnan(result.z[0, whole])
    again = node_ablation(lite0, hopper_path, [(CLASS, "+*")], fit=lite0_fit, seed=3)
    assert torch.equal(again.random_delta[:, 0], result.random_delta[:, plus])
    other = node_ablation(lite0, hopper_path, [(CLASS, "+*")], fit=lite0_fit, seed=4)
    assert not torch.equal(other.random_delta[:, 0], result.random_delta[:, plus])


def test_confidence_change_equals_pytorch_grad_cams(lite0, hopper_path):
    x = fcinterp_fast.models.transform(lite0)(Image.open(hopper_path).convert("RGB"))[None]
    k = fcinterp_fast.classes.find_class(fcinterp_fast.classes.class_names(lite0), CLASS)
    targets = [(k, None), (k + 1, None)]
    maps = explain(lite0, x, targets, method="gradcam++", weights="fc")
    ours = confidence_change(lite0, x, maps, targets, weights="fc")
    for t, (cls, _) in enumerate(targets):
        # the logit and W_k . f differ by the bias only, which cancels in the change
        theirs = CamMultImageConfidenceChange()(x, maps[:, t].numpy(), [ClassifierOutputTarget(cls)], lite0)
        np.testing.assert_allclose(ours.change[:, t].numpy(), theirs, atol=1e-4)
    assert torch.equal(ours.drop, ours.change.neg().clamp(min=0))
    assert torch.equal(ours.increase, (ours.change > 0).double())


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: node_ablation(m, x, [(1, None)], n_random=1), ValueError, "n_random"),
        (lambda m, x: confidence_change(m, x, torch.ones(1, 1, 8, 8), [(1, None)]), ValueError, "images' grid"),
        (lambda m, x: confidence_change(m, x, torch.ones(1, 2, 224, 224), [(1, None)]), ValueError, "2 targets"),
        (
            lambda m, x: confidence_change(m, x, torch.full((1, 1, 224, 224), torch.nan), [(1, None)]),
            ValueError,
            "NaN",
        ),
    ],
)
def test_bad_arguments_raise(lite0, call, error, match):
    with pytest.raises(error, match=match):
        call(lite0, torch.zeros(1, 3, 224, 224))
