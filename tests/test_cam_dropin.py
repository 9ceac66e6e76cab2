"""The pytorch-grad-cam drop-in (docs/spec.md section 8): ``fcinterp_fast.cam.GradCAMPlusPlus`` /
``SmoothGradCAMPlusPlus`` called as pytorch-grad-cam's classes, against the installed ``grad-cam``
package on CNNs, the bundled EfficientNet-Lite0, ViT and Swin."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import GradCAMPlusPlus as TheirGradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

import cam_oracle
import fcinterp_fast
from checks import assert_within
from fcinterp_fast.cam import GradCAMPlusPlus, NodeTarget, SmoothGradCAMPlusPlus, noisy_copies

ATOL = 1e-5


def _timm(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _torchvision_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _vit_tokens_to_grid(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's documented ViT reshape_transform (class token dropped, 4 x 4 patches at 64 px)."""
    return t[:, 1:].reshape(t.size(0), 4, 4, t.size(2)).permute(0, 3, 1, 2)


def _swin_tokens_to_grid(t: torch.Tensor, height: int = 2, width: int = 2) -> torch.Tensor:
    """pytorch-grad-cam's documented Swin reshape_transform (its swinT example), tokens (N, L, C) of
    the last stage: 2 x 2 at 64 px."""
    result = t.reshape(t.size(0), height, width, t.size(2))
    return result.transpose(2, 3).transpose(1, 2)


# name: (model factory, target layers, reshape_transform)
_MODELS = {
    "torchvision-resnet18": (_torchvision_resnet18, lambda m: [m.layer4], None),
    "torchvision-resnet18-two-layers": (_torchvision_resnet18, lambda m: [m.layer3, m.layer4], None),
    "vit-tiny": (
        lambda: _timm("vit_tiny_patch16_224", img_size=64),
        lambda m: [m.blocks[-1].norm1],
        _vit_tokens_to_grid,
    ),
    "swin-tiny": (
        lambda: _timm("swin_tiny_patch4_window7_224", img_size=64, window_size=2),
        lambda m: [m.layers[-1].blocks[-1].norm2],
        _swin_tokens_to_grid,
    ),
}
_CALLS = {"plain": {}, "aug_smooth": {"aug_smooth": True}, "eigen_smooth": {"eigen_smooth": True}}


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def hopper(lite0):
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return fcinterp_fast.models.transform(lite0)(Image.open(path).convert("RGB"))[None]


def _both(model, layers, reshape, x, targets, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    with GradCAMPlusPlus(model, target_layers=layers, reshape_transform=reshape) as cam:
        ours = cam(input_tensor=x, targets=targets, **kwargs)
    with TheirGradCAMPlusPlus(model, target_layers=layers, reshape_transform=reshape) as cam:
        theirs = cam(input_tensor=x, targets=targets, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("call", list(_CALLS))
@pytest.mark.parametrize("case", list(_MODELS))
def test_equals_pytorch_grad_cam(case, call, images):
    factory, layers, reshape = _MODELS[case]
    model = factory()
    for targets in (None, [ClassifierOutputTarget(3), ClassifierOutputTarget(7)]):
        ours, theirs = _both(model, layers(model), reshape, images, targets, **_CALLS[call])
        assert ours.shape == (2, 64, 64) and ours.dtype == np.float32 and isinstance(ours, np.ndarray)
        assert_within(f"{case} {call} targets={targets}", ours, theirs, ATOL)
        assert ours.max() > 0.5  # not a vacuous comparison of blank maps (aug_smooth averages six)


@pytest.mark.parametrize("call", list(_CALLS))
def test_efficientnet_lite0_equals_pytorch_grad_cam(lite0, hopper, call):
    k = fcinterp_fast.classes.find_class(fcinterp_fast.classes.class_names(lite0), "military uniform")
    ours, theirs = _both(lite0, [lite0.bn2], None, hopper, [ClassifierOutputTarget(k)], **_CALLS[call])
    assert_within(f"lite0 {call}", ours, theirs, ATOL)


def test_classifier_output_target_runs_no_backward(images, monkeypatch):
    """The fused path: on a layer feeding global average pooling the class logit's gradient is the
    head row over h w, so no backward runs at all."""
    model = _torchvision_resnet18()

    def no_backward(*args, **kwargs):
        raise AssertionError("a backward ran for a layer that feeds only global average pooling")

    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    with GradCAMPlusPlus(model, [model.layer4]) as cam:
        assert cam(images, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]).shape == (2, 64, 64)
        assert cam(images).shape == (2, 64, 64)


def test_other_callable_targets_go_through_autograd(images):
    model = _torchvision_resnet18()
    targets = [ClassifierOutputSoftmaxTarget(4), lambda output: output[2] - output[5]]
    ours, theirs = _both(model, [model.layer3], None, images, targets)
    assert_within("softmax and lambda targets", ours, theirs, ATOL)


class _Doubled(nn.Module):
    """Returns its head's logits times -2: the logit is not the head row's score any more."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return -2 * self.inner(x)


def test_logits_not_from_the_head_fall_back_to_autograd(images):
    model = _Doubled(_torchvision_resnet18()).eval()
    layers = [model.inner.layer4]
    ours, theirs = _both(model, layers, None, images, [ClassifierOutputTarget(1), ClassifierOutputTarget(6)])
    assert_within("wrapped model", ours, theirs, ATOL)
    with GradCAMPlusPlus(model.inner, layers) as cam:  # the head's own logit gives another map
        assert np.abs(cam(images, [ClassifierOutputTarget(1), ClassifierOutputTarget(6)]) - ours).max() > 0.1


def test_node_target_equals_maps_of_that_node(images):
    model = _torchvision_resnet18()
    fit = fcinterp_fast.fit(model, min_size=4)
    with GradCAMPlusPlus(model, [model.layer3], fit=fit) as cam:
        ours = cam(images, [NodeTarget(2, "+"), NodeTarget(2, "+", weights="fc")])
        with_abs = cam.maps(images, [(2, "+")])[:, 0]
    with GradCAMPlusPlus(model, [model.layer3], fit=fit, weights="fc") as cam:
        with_fc = cam.maps(images, [(2, "+")])[:, 0]
    assert_within("NodeTarget abs", ours[0], with_abs[0], ATOL)
    assert_within("NodeTarget fc", ours[1], with_fc[1], ATOL)


def test_smooth_equals_looped_pytorch_grad_cam(images):
    model = _torchvision_resnet18()
    k, n = 3, 3
    with SmoothGradCAMPlusPlus(model, [model.layer3], n_samples=n, generator=torch.Generator().manual_seed(4)) as cam:
        ours = cam(images, [ClassifierOutputTarget(k)] * 2)
    copies = noisy_copies(images, n, 0.15, torch.Generator().manual_seed(4))
    assert_within("smoothed", ours, cam_oracle.smooth_maps(model, model.layer3, copies, n, k), ATOL)


def test_smooth_with_one_clean_sample_is_gradcampp(images):
    model = _torchvision_resnet18()
    for smooth in ("maps", "derivatives"):
        with SmoothGradCAMPlusPlus(model, [model.layer3, model.layer4], n_samples=1, noise=0.0, smooth=smooth) as cam:
            smoothed = cam(images)
        with GradCAMPlusPlus(model, [model.layer3, model.layer4]) as cam:
            np.testing.assert_allclose(smoothed, cam(images), atol=1e-6)


def test_context_manager_releases_hooks(images):
    model = _torchvision_resnet18()
    with GradCAMPlusPlus(model, [model.layer4]) as cam:
        assert model.layer4._forward_hooks and model.fc._forward_pre_hooks
        cam(images)
    assert not model.layer4._forward_hooks and not model.fc._forward_pre_hooks and not model.fc._forward_hooks
    with pytest.raises(RuntimeError, match="released"):
        cam(images)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda cam, x: cam(x, [ClassifierOutputTarget(1)]), ValueError, "1 entries but input_tensor has 2 images"),
        (lambda cam, x: cam(x[0]), ValueError, r"one image: images\[None\]"),
        (lambda cam, x: cam([x]), TypeError, "input_tensor must be a"),
        (lambda cam, x: cam(x, [3, 4]), TypeError, "a target is pytorch-grad-cam's ClassifierOutputTarget"),
        (lambda cam, x: cam(x, [ClassifierOutputTarget(10)] * 2), IndexError, "out of range"),
        (lambda cam, x: cam(x, aug_smooth=1), TypeError, "aug_smooth must be a bool"),
        (lambda cam, x: cam(x, [NodeTarget(1, "+x")] * 2), ValueError, "unknown node"),
    ],
)
def test_bad_calls_raise(images, call, error, match):
    model = _torchvision_resnet18()
    with GradCAMPlusPlus(model, [model.layer4]) as cam, pytest.raises(error, match=match):
        call(cam, images)


def test_maps_explain_one_layer_and_the_call_several(images):
    model = _torchvision_resnet18()
    with GradCAMPlusPlus(model, ["layer3", "layer4"]) as cam:
        assert cam(images).shape == (2, 64, 64)
        with pytest.raises(ValueError, match="maps\\(\\) explains one target layer, got 2"):
            cam.maps(images, [(1, None)])


class _DictOutput(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"scores": self.inner(x)}


def test_classifier_output_target_needs_logits(images):
    model = _DictOutput(_torchvision_resnet18()).eval()
    with GradCAMPlusPlus(model, [model.inner.layer4]) as cam, pytest.raises(ValueError, match="not an \\(N, K\\)"):
        cam(images, [ClassifierOutputTarget(1)] * 2)


def test_node_target_checks_its_fields():
    with pytest.raises(ValueError, match="unknown weights"):
        NodeTarget(1, "+", weights="signed")
    with pytest.raises(TypeError, match="node"):
        NodeTarget(1, 5)


@pytest.mark.parametrize("eigen_smooth", [True, False])
@pytest.mark.parametrize("target_category", [None, 100])
@pytest.mark.parametrize("batch_size, width, height", [(2, 32, 32), (1, 32, 40)])
@pytest.mark.parametrize(
    "cnn_model, target_layer_names",
    [(torchvision.models.resnet18, ["layer4[-1]", "layer4[-2]"]), (torchvision.models.vgg11, ["features[-1]"])],
)
def test_pytorch_grad_cams_own_run_all_models_test(
    cnn_model, target_layer_names, batch_size, width, height, target_category, eigen_smooth
):
    """pytorch-grad-cam's tests/test_run_all_models.py for GradCAMPlusPlus with the import swapped,
    and its maps compared with pytorch-grad-cam's. Two changes: random weights (nothing is
    downloaded) and ``model.eval()`` (pytorch-grad-cam switches the model to eval mode in its
    constructor; we never modify the model and ask for eval mode instead)."""
    torch.manual_seed(0)
    model = cnn_model(weights=None).eval()
    target_layers = [eval(f"model.{layer}", {"model": model}) for layer in target_layer_names]
    input_tensor = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    input_tensor = input_tensor.repeat(batch_size, 1, 1, 1)
    targets = None if target_category is None else [ClassifierOutputTarget(target_category)] * batch_size
    ours, theirs = _both(model, target_layers, None, input_tensor, targets, eigen_smooth=eigen_smooth)
    assert ours.shape[0] == input_tensor.shape[0] and ours.shape[1:] == input_tensor.shape[2:]
    if len(target_layers) == 2 and height == 40:
        # layer4 is 2 x 1 here: each layer's map scaled to [0, 1] is (0, 1) or (1, 0), so their mean
        # can be constant up to rounding, which the final scaling blows up to [0, 1]: both libraries
        # then return rounding noise (checked above: the shapes only, as pytorch-grad-cam's test)
        return
    assert_within("maps", ours, theirs, ATOL)


def test_training_mode_is_refused_not_switched(images):
    """pytorch-grad-cam calls model.eval() in its constructor; we never modify the model."""
    model = _torchvision_resnet18().train()
    with GradCAMPlusPlus(model, [model.layer4]) as cam, pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        cam(images)
    assert model.training
