"""``explain`` and the CAM classes against pytorch-grad-cam and docs/spec.md section 5; the chain figure and CLI.

pytorch-grad-cam scales each map twice (min-max before and after resizing) where docs/spec.md scales
once, so the two differ by up to about 1e-7 / (range of the raw map): the models and inputs below
keep that well inside the 1e-5 tolerance.
"""

from __future__ import annotations

import argparse
import copy
from concurrent.futures import ThreadPoolExecutor

import matplotlib.image
import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from torch import nn

import cam_oracle
import fcinterp_fast
from checks import assert_within
from fcinterp_fast.cam import GradCAMPlusPlus, SmoothGradCAMPlusPlus, explain, noisy_copies
from fcinterp_fast.cam.gradcampp import combine_torch
from fcinterp_fast.cam.options import CamOptions
from fcinterp_fast.cli import explain as cli
from fcinterp_fast.figures.cam import chain_figure
from fcinterp_fast.report import save_figure

ATOL = 1e-5


def _random_model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _random_vit() -> nn.Module:
    """ViT-tiny on 64 x 64 images; its head is scaled up so that raw maps span well over 1e-2
    (see the module docstring on pytorch-grad-cam's double scaling)."""
    model = _random_model("vit_tiny_patch16_224", img_size=64)
    with torch.no_grad():
        model.head.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def resnet18():
    return _random_model("resnet18")


@pytest.fixture(scope="module")
def resnet18_fit(resnet18):
    return fcinterp_fast.fit(resnet18)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def hopper_path():
    from matplotlib import cbook

    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def _tokens_to_grid(side):
    return lambda t: t[:, 1:].reshape(t.shape[0], side, side, t.shape[-1]).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------- pytorch-grad-cam
_CASES = {
    # name: (model factory, our target_layer, pytorch-grad-cam's layer, its reshape_transform)
    "resnet18-layer4": (lambda: _random_model("resnet18"), None, lambda m: m.layer4, None),
    "resnet18-layer3": (lambda: _random_model("resnet18"), lambda m: m.layer3, lambda m: m.layer3, None),
    "vit-tiny": (
        _random_vit,
        None,  # class-token ViTs default to blocks[-1].norm1
        lambda m: m.blocks[-1].norm1,
        _tokens_to_grid(4),
    ),
    "swin-tiny": (
        lambda: _random_model("swin_tiny_patch4_window7_224", img_size=64, window_size=2),
        None,
        lambda m: m.norm,
        lambda t: t.permute(0, 3, 1, 2),
    ),
    "torchvision-layer4": (
        lambda: torchvision.models.resnet18(num_classes=10).eval(),
        lambda m: m.layer4,
        lambda m: m.layer4,
        None,
    ),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_gradcampp_equals_pytorch_grad_cam(case, images):
    factory, ours_layer, their_layer, reshape = _CASES[case]
    model = factory()
    classes = [3, 7]
    layer = ours_layer(model) if ours_layer else None
    maps = explain(model, images, [(k, None) for k in classes], method="gradcam++", weights="fc", target_layer=layer)
    assert maps.shape == (2, 2, 64, 64) and maps.dtype == torch.float32
    for t, k in enumerate(classes):
        want = cam_oracle.gradcampp(model, their_layer(model), images, k, reshape=reshape)
        assert_within(f"map of class {k}", maps[:, t], want, ATOL)


def test_efficientnet_lite0_equals_pytorch_grad_cam(lite0, hopper_path):
    k = fcinterp_fast.classes.find_class(fcinterp_fast.classes.class_names(lite0), "military uniform")
    x = fcinterp_fast.models.transform(lite0)(Image.open(hopper_path).convert("RGB"))[None]
    maps = fcinterp_fast.explain(lite0, x, [("military uniform", None)], method="gradcam++", weights="fc")
    assert maps.shape == (1, 1, *x.shape[-2:])
    assert_within("map", maps[:, 0], cam_oracle.gradcampp(lite0, lite0.bn2, x, k), ATOL)


@pytest.mark.parametrize("weights, layer", [("abs", "layer4"), ("abs", "layer3"), ("fc", "layer3"), ("ones", "layer4")])
def test_masked_nodes_equal_masked_head_copy(resnet18, resnet18_fit, images, weights, layer):
    fit = resnet18_fit
    k = 11
    nodes = ["+", "--", "+*"]
    target_layer = getattr(resnet18, layer) if layer == "layer3" else None
    maps = explain(
        resnet18,
        images,
        [(k, n) for n in nodes],
        method="gradcam++",
        weights=weights,
        fit=fit,
        target_layer=target_layer,
    )
    W = resnet18.fc.weight.detach()
    omega = {"abs": W[k].abs(), "fc": W[k], "ones": torch.ones_like(W[k])}[weights]
    for t, node in enumerate(nodes):
        mask = torch.zeros_like(omega, dtype=torch.bool)
        mask[fit.members(k, node)] = True
        clone = cam_oracle.masked_head_copy(resnet18, resnet18.fc, k, torch.where(mask, omega, 0))
        want = cam_oracle.gradcampp(clone, getattr(clone, layer), images, k)
        assert_within(f"map of node {node!r}", maps[:, t], want, ATOL)


@pytest.mark.parametrize("smooth", ["maps", "derivatives"])
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_smooth_equals_looped_pytorch_grad_cam(resnet18, resnet18_fit, images, smooth, layer):
    fit = resnet18_fit
    k, node, n = 5, "++", 3
    target_layer = resnet18.layer3 if layer == "layer3" else None
    maps = explain(
        resnet18,
        images,
        [(k, node)],
        n_samples=n,
        smooth=smooth,
        fit=fit,
        target_layer=target_layer,
        generator=torch.Generator().manual_seed(4),
    )
    W = resnet18.fc.weight.detach()
    mask = torch.zeros(W.shape[1], dtype=torch.bool)
    mask[fit.members(k, node)] = True
    clone = cam_oracle.masked_head_copy(resnet18, resnet18.fc, k, torch.where(mask, W[k].abs(), 0))
    copies = noisy_copies(images, n, 0.15, torch.Generator().manual_seed(4))
    clean = images if smooth == "derivatives" else None
    want = cam_oracle.smooth_maps(clone, getattr(clone, layer), copies, n, k, clean=clean)
    assert_within("smoothed map", maps[:, 0], want, ATOL)


# ------------------------------------------------------------------------ fusion and noise
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
@pytest.mark.parametrize("smooth", ["maps", "derivatives"])
def test_fused_targets_equal_single_runs(resnet18, resnet18_fit, images, layer, smooth):
    targets = [(0, "+"), (0, "-*"), (9, None), (42, "++")]
    layers = [resnet18.layer3] if layer == "layer3" else None
    with SmoothGradCAMPlusPlus(resnet18, layers, n_samples=3, smooth=smooth, fit=resnet18_fit) as cam:
        fused = cam.maps(images, targets, generator=torch.Generator().manual_seed(2))
        for t, target in enumerate(targets):
            single = cam.maps(images, [target], generator=torch.Generator().manual_seed(2))
            torch.testing.assert_close(fused[:, t], single[:, 0], atol=ATOL, rtol=0)


def test_mean_pooled_layer_runs_no_backward(resnet18, resnet18_fit, images, monkeypatch):
    def no_backward(*args, **kwargs):
        raise AssertionError("a backward ran for a layer that feeds only global average pooling")

    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    maps = explain(resnet18, images, [(1, "+"), (2, None)], n_samples=2, fit=resnet18_fit)
    assert maps.shape == (2, 2, 64, 64)


def test_one_backward_for_all_targets(resnet18, resnet18_fit, images, monkeypatch):
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(kwargs.get("is_grads_batched", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    explain(
        resnet18, images, [(1, "+"), (2, None), (3, "-")], n_samples=2, fit=resnet18_fit, target_layer=resnet18.layer3
    )
    assert calls == [True]


@pytest.mark.parametrize("smooth", ["maps", "derivatives"])
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_one_clean_sample_is_gradcampp(resnet18, resnet18_fit, images, smooth, layer):
    options = dict(fit=resnet18_fit, target_layer=resnet18.layer3 if layer == "layer3" else None)
    targets = [(3, "+"), (4, None)]
    plain = explain(resnet18, images, targets, method="gradcam++", **options)
    smooth_maps = explain(resnet18, images, targets, n_samples=1, noise=0.0, smooth=smooth, **options)
    torch.testing.assert_close(smooth_maps, plain, atol=1e-6, rtol=0)


def test_generator_makes_maps_reproducible(resnet18, resnet18_fit, images):
    def run(seed):
        return explain(
            resnet18,
            images,
            [(3, "+")],
            n_samples=4,
            noise=0.3,
            fit=resnet18_fit,
            target_layer=resnet18.layer3,
            generator=torch.Generator().manual_seed(seed),
        )

    assert torch.equal(run(7), run(7))
    assert (run(7) - run(8)).abs().max() > 1e-3


def test_noisy_copies_follow_the_documented_draw(images):
    copies = noisy_copies(images, 3, 0.2, torch.Generator().manual_seed(5))
    eps = torch.randn((2, 3, 3, 64, 64), generator=torch.Generator().manual_seed(5))
    sigma = 0.2 * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(copies, (images[:, None] + sigma[:, None, None, None, None] * eps).flatten(0, 1))


# -------------------------------------------------------------------------- float16 models
def test_alpha_is_float32_for_float16_inputs():
    gen = torch.Generator().manual_seed(3)
    A = torch.rand(2, 16, 3, 3, generator=gen).half()
    g = (torch.randn(2, 2, 16, 3, 3, generator=gen) * 2e-3).half()  # g^3 underflows in float16
    ours = combine_torch(A, g, copies=1, size=(6, 6))
    torch.testing.assert_close(ours, combine_torch(A.float(), g.float(), copies=1, size=(6, 6)), atol=1e-6, rtol=0)
    # float16 arithmetic would lose S g^3 (it underflows), so this comparison is not vacuous
    assert ((g * g * g) == 0).float().mean() > 0.5 and (g.float() ** 3 != 0).all()


def test_float16_model_gives_float32_maps_close_to_float32_model(images):
    model = _random_model("resnet18")
    half = copy.deepcopy(model).half()
    targets = [(3, None), (8, None)]
    ours = explain(half, images, targets, method="gradcam++")
    ref = explain(model, images, targets, method="gradcam++")
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=2e-2, rtol=0)


# ------------------------------------------------------------------- inputs and resolution
def test_images_as_paths_and_pil_give_maps_at_the_original_size(lite0, hopper_path):
    """A photo's maps come back on the photo: the crop's maps resampled onto the original pixels,
    NaN on the border the centre crop cut away (and only there)."""
    picture = Image.open(hopper_path).convert("RGB")
    x = fcinterp_fast.models.transform(lite0)(picture)[None]
    targets = [("military uniform", "+"), (652, None)]
    with GradCAMPlusPlus(lite0) as cam:
        crop_maps = cam.maps(x, targets)
        from_path = cam.maps([hopper_path], targets)
        torch.testing.assert_close(cam.maps(picture, targets), from_path, equal_nan=True)
    H0, W0 = picture.height, picture.width
    assert from_path.shape == (1, 2, H0, W0)
    # timm: shorter side (W0 = 512) to round(224 / 0.875) = 256, then the centre 224 x 224
    resized_h = int(256 * H0 / W0)
    s = W0 / 256
    top, left = round((resized_h - 224) / 2) * s, 16 * s
    rows = (torch.arange(H0) + 0.5 >= top) & (torch.arange(H0) + 0.5 <= top + 224 * s)
    cols = (torch.arange(W0) + 0.5 >= left) & (torch.arange(W0) + 0.5 <= left + 224 * s)
    seen = rows[:, None] & cols[None, :]
    assert torch.equal(~torch.isnan(from_path[0, 0]), seen) and 0 < seen.float().mean() < 1
    # resampling the original-size maps back onto the crop's pixel centres gives the crop's maps
    ys = (top + (torch.arange(224) + 0.5) * s - 0.5).round().long()
    xs = (left + (torch.arange(224) + 0.5) * s - 0.5).round().long()
    back = from_path[0][:, ys][:, :, xs]
    assert (back - crop_maps[0]).abs().max() < 0.05  # nearest original pixel of each crop pixel
    assert np.corrcoef(back.flatten(), crop_maps[0].flatten())[0, 1] > 0.999


def test_images_of_different_sizes_give_a_list(hopper_path, tmp_path):
    model = _random_model("resnet18")
    small = tmp_path / "small.png"
    Image.open(hopper_path).convert("RGB").resize((300, 200)).save(small)
    maps = explain(model, [hopper_path, small], [(1, None)], method="gradcam++")
    assert isinstance(maps, list) and [tuple(m.shape) for m in maps] == [(1, 600, 512), (1, 200, 300)]


def test_deepest_node_and_class_names_resolve(resnet18, resnet18_fit, images):
    fit = resnet18_fit
    with GradCAMPlusPlus(resnet18, fit=fit) as cam:
        targets = [(5, "+*"), (5, "-*"), (-1, None)]
        maps, resolved = cam.maps(images, targets), cam.resolve(targets)
    for target, chain in zip(resolved[:2], "+-", strict=True):
        deepest = max((n for j, n in enumerate(fit.nodes) if set(n) == {chain} and fit.count[5, j] > 0), key=len)
        assert target.name == deepest and target.size == int(fit.count[5, fit.nodes.index(deepest)])
    assert resolved[2].cls == 999 and resolved[2].size == 512
    with GradCAMPlusPlus(resnet18, fit=fit) as cam:
        direct = cam.maps(images, [(5, resolved[0].name), (5, resolved[1].name), (999, None)])
    torch.testing.assert_close(maps, direct)


def test_single_pair_and_bare_class_targets(resnet18, resnet18_fit, images):
    with GradCAMPlusPlus(resnet18, fit=resnet18_fit) as cam:
        pair = cam.maps(images, (4, "+"))
        torch.testing.assert_close(pair, cam.maps(images, [(4, "+")]))
        torch.testing.assert_close(cam.maps(images, 4), cam.maps(images, [(4, None)]))


def test_model_and_images_are_not_modified(resnet18, resnet18_fit, images):
    state = {k: v.clone() for k, v in resnet18.state_dict().items()}
    x = images.clone()
    with SmoothGradCAMPlusPlus(resnet18, [resnet18.layer3], n_samples=2, fit=resnet18_fit) as cam:
        assert resnet18.layer3._forward_hooks and resnet18.fc._forward_pre_hooks
        cam.maps(images, [(1, "+"), (2, "-")])
        # inert outside calls: a plain forward is unchanged and leaves nothing behind
        with torch.no_grad():
            assert not resnet18(images).requires_grad
    assert not resnet18.layer3._forward_hooks and not resnet18.fc._forward_pre_hooks
    assert not resnet18.training and all(p.grad is None for p in resnet18.parameters())
    assert all(torch.equal(state[k], v) for k, v in resnet18.state_dict().items())
    assert torch.equal(images, x)
    with pytest.raises(RuntimeError, match="released"):
        cam.maps(images, [(1, None)])


def test_concurrent_calls_on_one_model_equal_serial_calls(resnet18, resnet18_fit, images):
    """2 threads x 15 calls with a hooked target layer: through ``explain`` (an object per call) and
    through one shared object, every map equals the serial call's."""
    targets = [(3, "+"), (4, None)]
    serial = explain(resnet18, images, targets, method="gradcam++", fit=resnet18_fit, target_layer=resnet18.layer3)
    with GradCAMPlusPlus(resnet18, resnet18.layer3, fit=resnet18_fit) as shared:
        calls = [
            lambda: explain(
                resnet18, images, targets, method="gradcam++", fit=resnet18_fit, target_layer=resnet18.layer3
            ),
            lambda: shared.maps(images, targets),
        ]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda i: calls[i % 2](), range(30)))
    for maps in results:
        torch.testing.assert_close(maps, serial, atol=1e-6, rtol=0)


def test_torchvision_model_finds_its_target_layer(images):
    model = torchvision.models.resnet18(num_classes=10).eval()
    assert fcinterp_fast.cam.find_target_layer(model) is model.layer4[-1]
    found = explain(model, images, [(1, None)], method="gradcam++")
    torch.testing.assert_close(found, explain(model, images, [(1, None)], method="gradcam++", target_layer="layer4"))


def test_targets_none_explains_each_images_top_class(resnet18, images):
    with torch.no_grad():
        top = resnet18(images).argmax(dim=-1).tolist()
    assert len(set(top)) == 2  # the two images disagree, so per-image choice is tested
    maps = explain(resnet18, images, method="gradcam++", weights="fc")
    want = explain(resnet18, images, [[(k, None)] for k in top], method="gradcam++", weights="fc")
    assert maps.shape == (2, 1, 64, 64)
    torch.testing.assert_close(maps, want, atol=0, rtol=0)
    for b, k in enumerate(top):
        alone = explain(resnet18, images[b : b + 1], [(k, None)], method="gradcam++", weights="fc")
        torch.testing.assert_close(maps[b], alone[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [None, "layer3"])
def test_targets_per_image(resnet18, resnet18_fit, images, layer):
    per_image = [[(3, "+"), (8, None)], [(5, "-*"), (3, "+")]]
    options = dict(method="gradcam++", fit=resnet18_fit, target_layer=layer)
    maps = explain(resnet18, images, per_image, **options)
    assert maps.shape == (2, 2, 64, 64)
    for b, targets in enumerate(per_image):
        alone = explain(resnet18, images[b : b + 1], targets, **options)
        torch.testing.assert_close(maps[b], alone[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="same number of targets"):
        explain(resnet18, images, [[(3, "+")], [(5, None), (3, None)]], **options)
    with pytest.raises(ValueError, match="2 lists .* but there are 1 images"):
        explain(resnet18, images[:1], per_image, **options)


def test_target_layer_found_for_timm_torchvision_and_hugging_face():
    transformers = pytest.importorskip("transformers")
    find = fcinterp_fast.cam.find_target_layer
    lite = _random_model("efficientnet_lite0")
    assert find(lite) is lite.bn2
    vit = _random_vit()
    assert find(vit) is vit.blocks[-1].norm1
    tv = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    assert find(tv) is tv.features[-1]
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
    hf = transformers.ResNetForImageClassification(config).eval()
    assert find(hf) is hf.resnet.encoder.stages[-1]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert explain(hf, x, method="gradcam++").shape == (2, 1, 64, 64)
    vit_config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8
    )
    hf_vit = transformers.ViTForImageClassification(vit_config).eval()
    with pytest.raises(ValueError, match="pass target_layer="):
        find(hf_vit)
    with pytest.raises(ValueError, match="training mode"):
        find(torchvision.models.resnet18(num_classes=10))


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, targets, error, match",
    [
        (dict(method="gradcam"), [(1, None)], ValueError, "unknown method"),
        (dict(weights="signed"), [(1, None)], ValueError, "unknown weights"),
        (dict(smooth="both"), [(1, None)], ValueError, "unknown smooth"),
        (dict(n_samples=0), [(1, None)], ValueError, "n_samples"),
        (dict(noise=-0.1), [(1, None)], ValueError, "noise"),
        (dict(), [(1000, None)], IndexError, "out of range"),
        (dict(), [(1, "+x")], ValueError, "unknown node"),
        (dict(), [(1, "+" * 40)], ValueError, "unknown node"),
        (dict(), [], ValueError, "empty"),
        (dict(), [(1.5, None)], TypeError, "target"),
        (dict(generator=5), [(1, None)], TypeError, "generator must be a torch.Generator or None, got int"),
        (dict(generator=5, method="gradcam++"), [(1, None)], TypeError, "generator must be a torch.Generator"),
        (dict(fit="abc"), [(1, "+")], TypeError, "fit must be a HeadFit .* or None, got str"),
        (dict(fit=fcinterp_fast.fit(torch.ones(10, 512))), [(1, None)], ValueError, r"fit is the fit of a \(10, 512\)"),
        (
            dict(target_layer="layer33"),
            [(1, None)],
            ValueError,
            "target_layer 'layer33' is not a submodule of ResNet; did you mean 'layer3'",
        ),
        (dict(target_layer="nothing"), [(1, None)], ValueError, "not a submodule of ResNet; its children: conv1, bn1"),
        (dict(target_layer=5), [(1, None)], TypeError, "target_layer must be a submodule of the model or its name"),
        (
            dict(target_layer=nn.Conv2d(3, 3, 1)),
            [(1, None)],
            ValueError,
            r"target_layer \(Conv2d\) is not part of the model",
        ),
    ],
)
def test_bad_arguments_raise(resnet18, resnet18_fit, images, kwargs, targets, error, match):
    with pytest.raises(error, match=match):
        explain(resnet18, images, targets, **{"fit": resnet18_fit, **kwargs})


@pytest.mark.parametrize(
    "shape", [(3, 64, 64), (2, 3, 64), (0, 3, 64, 64), (2, 3, 0, 64), (2, 3, 64, 0), (2, 0, 64, 64)]
)
def test_bad_image_shapes_raise(resnet18, shape):
    with pytest.raises(ValueError, match="images"):
        explain(resnet18, torch.zeros(shape), [(1, None)])


def test_target_layer_by_name(resnet18, resnet18_fit, images):
    targets = [(2, "+"), (5, None)]
    by_module = explain(resnet18, images, targets, method="gradcam++", fit=resnet18_fit, target_layer=resnet18.layer3)
    for name in ("layer3", ["layer3"]):
        by_name = explain(resnet18, images, targets, method="gradcam++", fit=resnet18_fit, target_layer=name)
        torch.testing.assert_close(by_name, by_module, atol=0, rtol=0)


@pytest.mark.parametrize("layer", [None, "layer3"])
def test_inference_mode_around_the_call(resnet18, resnet18_fit, images, layer):
    """Grad-CAM needs autograd: a call leaves the caller's inference mode for its own work."""
    options = dict(n_samples=2, fit=resnet18_fit, target_layer=getattr(resnet18, layer) if layer else None)
    want = explain(resnet18, images, [(2, "+")], generator=torch.Generator().manual_seed(0), **options)
    with torch.inference_mode():
        x = images.clone()  # an inference tensor
        maps = explain(resnet18, x, [(2, "+")], generator=torch.Generator().manual_seed(0), **options)
    torch.testing.assert_close(maps, want, atol=0, rtol=0)


def test_model_built_in_inference_mode(images):
    """Its parameters are inference tensors: fine where no gradient goes through them (A feeds a
    mean pool), a clear error where one must (layer3 -> layer4 -> head)."""
    with torch.inference_mode():
        model = _random_model("resnet18")
    assert explain(model, images, [(1, None)], method="gradcam++").shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="the model's parameters are inference tensors"):
        explain(model, images, [(1, None)], method="gradcam++", target_layer=model.layer3)


def test_training_mode_raises(images):
    model = _random_model("resnet18").train()
    with pytest.raises(ValueError, match="eval"):
        explain(model, images, [(1, None)])
    assert model.training


def test_node_absent_for_class_raises(resnet18, images):
    model = copy.deepcopy(resnet18)
    with torch.no_grad():
        row = model.fc.weight[0]
        row.copy_(-row.abs())
        row[:5] = 0.1  # five positive weights: "+" is too small to split, so class 0 has no "++"
    with pytest.raises(ValueError, match="no neurons in class 0"):
        explain(model, images, [(0, "++")], method="gradcam++")
    assert explain(model, images, [(1, "++")], method="gradcam++").shape == (2, 1, 64, 64)


def test_fit_of_a_head_changed_since_raises(resnet18, images):
    """The nodes' neurons come from the fit: a head modified in place after it would give others."""
    model = copy.deepcopy(resnet18)
    fit = fcinterp_fast.fit(model)
    with torch.no_grad():
        model.fc.weight.mul_(-1)
    with pytest.raises(ValueError, match="modified in place after it was fitted"):
        explain(model, images, [(3, "+")], method="gradcam++", fit=fit)


def test_class_by_name_needs_class_names(images):
    model = torchvision.models.resnet18(num_classes=10).eval()
    with pytest.raises(ValueError, match="no class names"):
        explain(model, images, [("tabby", None)], target_layer=model.layer4)


# ------------------------------------------------------- the chain figure and its command line
@pytest.mark.slow
@pytest.mark.parametrize("scale", ["shared", "panel"])
def test_chain_figure_draws_every_level(lite0, hopper_path, tmp_path, scale):
    """Every panel of the paper's Fig. 5 shows the map of its node on the whole photo, titled with
    the node's size, on one colour scale for all panels ("shared") or its own ("panel")."""
    fit = fcinterp_fast.fit(lite0, depth=3)
    k = fit.class_index("military uniform")
    options = CamOptions(n_samples=2, scale=scale)
    figure = chain_figure(lite0, hopper_path, k, fit=fit, options=options, generator=torch.Generator().manual_seed(0))
    chains = [[n for j, n in enumerate(fit.nodes) if set(n) == {sign} and fit.count[k, j] > 0] for sign in "+-"]
    assert [len(chain) for chain in chains] == [3, 3]  # depth=3: both chains reach level 3
    targets = [(k, None)] + [(k, node) for chain in chains for node in chain]
    with SmoothGradCAMPlusPlus(lite0, n_samples=2, fit=fit) as cam:
        raw = cam.maps(hopper_path, targets, generator=torch.Generator().manual_seed(0), scaled=False)[0]
    assert raw.shape == (len(targets), 600, 512) and torch.isnan(raw).any()  # the whole photo, crop border NaN
    seen = ~torch.isnan(raw)
    if scale == "panel":
        lo = torch.stack([m[ok].min() for m, ok in zip(raw, seen, strict=True)])[:, None, None]
        hi = torch.stack([m[ok].max() for m, ok in zip(raw, seen, strict=True)])[:, None, None]
    else:
        lo, hi = raw[seen].min(), raw[seen].max()
    maps = (raw - lo) / (1e-7 + hi - lo)
    panels = {ax.get_title(): ax for ax in figure.axes if ax.images}
    titles = ["whole class\n1280 neurons"] + [
        f"{node}\n{int(fit.count[k, fit.nodes.index(node)])} neurons" for chain in chains for node in chain
    ]
    assert sorted(panels) == sorted(titles + ["input"])
    for title, expected in zip(titles, maps, strict=True):
        picture, overlay = panels[title].images
        assert picture.get_array().shape == (*expected.shape, 3)
        np.testing.assert_allclose(overlay.get_array(), expected.numpy(), atol=1e-6)
    peaks = [float(np.nanmax(panels[t].images[1].get_array())) for t in titles]
    if scale == "shared":
        assert max(peaks) == pytest.approx(1.0, abs=1e-6) and min(peaks) < 0.9  # nodes differ in strength
    else:
        assert all(p == pytest.approx(1.0, abs=1e-5) for p in peaks)
    suptitle = figure.get_suptitle()
    assert "'military uniform'" in suptitle and "Smooth Grad-CAM++ (2 noisy copies" in suptitle
    assert f"{scale} colour scale" in suptitle
    out = save_figure(figure, tmp_path / "sub" / "fig.png")
    picture = matplotlib.image.imread(out)
    assert picture.shape[1] > 2 * picture.shape[0]  # input column, label column and three levels side by side


@pytest.mark.slow
def test_chain_figure_says_why_a_panel_is_empty(lite0, hopper_path):
    """Under weights="fc" a - node's weights are all negative: its map is zero, and the panel says why."""
    fit = fcinterp_fast.fit(lite0, depth=2)
    options = CamOptions(method="gradcam++", weights="fc")
    figure = chain_figure(lite0, hopper_path, "military uniform", fit=fit, options=options)
    notes = {ax.get_title().split("\n")[0]: [t.get_text() for t in ax.texts] for ax in figure.axes if ax.images}
    assert all("a - node\nare negative" in " ".join(notes[node]) for node in ("-", "--"))
    assert not any(notes[node] for node in ("+", "++", "whole class"))


def _parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults_are_the_libraries():
    args = _parse()
    assert (args.model, args.seed, args.cls) == (fcinterp_fast.models.DEFAULT_MODEL, 0, None)
    options = CamOptions(
        method=args.method,
        n_samples=args.n_samples,
        noise=args.noise,
        smooth=args.smooth,
        weights=args.weights,
        scale=args.scale,
    )
    assert options == CamOptions()
    assert (args.min_size, args.depth) == (fcinterp_fast.FitConfig.min_size, fcinterp_fast.FitConfig.depth)


@pytest.mark.slow
def test_cli_run_writes_the_figure(hopper_path, tmp_path, capsys):
    out = tmp_path / "fig.png"
    args = _parse("--image", hopper_path, "--class", "652", "--out", str(out), "--n-samples", "1", "--depth", "2")
    assert cli.run(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    picture = matplotlib.image.imread(out)
    assert picture.shape[1] > 2 * picture.shape[0]  # input, labels and two levels side by side
    assert picture[..., :3].std() > 0.05  # not a blank canvas


# ------------------------------------------------------------------------------- overlay
def test_overlay_blends_like_show_cam_on_image_and_greys_unseen_pixels():
    from fcinterp_fast.cam import overlay

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    values = rng.random((20, 30))
    values[:, :5] = np.nan  # cropped away
    out = overlay(image, values, alpha=0.4)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    colour = matplotlib.colormaps["jet"](values[:, 5:])[..., :3]
    want = 0.6 * image[:, 5:] / 255 + 0.4 * colour
    np.testing.assert_allclose(out[:, 5:] / 255, want, atol=1 / 255)
    grey = out[:, :5].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()  # no colour
    # PIL image and a smaller map (resized), tensor image; bad input names the problem
    small = overlay(Image.fromarray(image), torch.rand(10, 15), alpha=0.5, colormap="viridis")
    assert small.shape == (20, 30, 3)
    assert overlay(torch.rand(3, 8, 8), np.zeros((8, 8))).shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"map values must lie in \[0, 1\]"):
        overlay(image, values * 3)
    with pytest.raises(ValueError, match="unknown colormap"):
        overlay(image, np.zeros((20, 30)), colormap="nope")
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, np.zeros((20, 30)), alpha=2)
