"""``head_weight`` finds the (K, D) head in models, modules, tensors, arrays and files, without
copying it; ``fit`` of any of them equals ``fit`` of the head it finds; a head changed after its
fit is refused when masks or members read it again."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import fcinterp_fast
from checks import assert_same_fit
from fcinterp_fast import head_weight
from fcinterp_fast.api import plan_fit

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


def _same_storage(found: torch.Tensor, weight: torch.Tensor) -> None:
    """``found`` is ``weight`` (flattened for conv 1x1 kernels), not a copy."""
    assert found.data_ptr() == weight.data_ptr()
    assert torch.equal(found, weight.detach().flatten(1))


# ------------------------------------------------------------------------- models
@pytest.mark.parametrize(
    "build, head",
    [
        (lambda: timm.create_model("resnet18", pretrained=False), lambda m: m.fc),
        # DeiT distilled: get_classifier() is (head, head_dist); the class head comes first
        (lambda: timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False), lambda m: m.head),
        # DLA: the classifier is a conv 1x1 (1000, 512, 1, 1)
        (lambda: timm.create_model("dla34", pretrained=False), lambda m: m.fc),
        (lambda: torchvision.models.resnet18(weights=None), lambda m: m.fc),
        # SqueezeNet: Sequential(Dropout, Conv2d 1x1, ReLU, AdaptiveAvgPool2d)
        (lambda: torchvision.models.squeezenet1_0(weights=None), lambda m: m.classifier[1]),
        (lambda: torchvision.models.vgg11(weights=None), lambda m: m.classifier[6]),
        (lambda: torchvision.models.efficientnet_b0(weights=None), lambda m: m.classifier[1]),
        (lambda: torchvision.models.mobilenet_v3_small(weights=None), lambda m: m.classifier[3]),
    ],
    ids=[
        "timm-resnet18",
        "timm-deit-distilled",
        "timm-dla34-conv",
        "tv-resnet18",
        "tv-squeezenet-conv",
        "tv-vgg11",
        "tv-efficientnet_b0",
        "tv-mobilenet_v3",
    ],
)
def test_model_heads(build, head):
    model = build()
    _same_storage(head_weight(model), head(model).weight)


def test_fit_of_a_model_is_the_fit_of_its_head():
    model = timm.create_model("resnet18", pretrained=False)
    from_model = fcinterp_fast.fit(model, tree="full", depth=2)
    assert_same_fit(from_model, fcinterp_fast.fit(head_weight(model), tree="full", depth=2))
    assert len(from_model.class_names) == 1000 and from_model.class_names[0].startswith("tench")


def test_named_head():
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    _same_storage(head_weight(model, name="head_dist"), model.head_dist.weight)
    _same_storage(head_weight(model, name="head_dist.weight"), model.head_dist.weight)
    with pytest.raises(
        ValueError, match=r"has no submodule 'head_distilled'; linear / conv 1x1 candidates: .*head_dist"
    ):
        head_weight(model, name="head_distilled")


def test_model_without_a_head():
    with pytest.raises(ValueError, match=r"get_classifier\(\) holds no nn.Linear or conv 1x1 layer"):
        head_weight(timm.create_model("resnet18", pretrained=False, num_classes=0))


# -------------------------------------------------------------------- Hugging Face
@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def test_hugging_face_language_model(transformers):
    """A causal LM's head is its output embedding (tied to the input embedding for GPT-2)."""
    config = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    _same_storage(head_weight(model), model.lm_head.weight)
    assert_same_fit(fcinterp_fast.fit(model, min_size=4), fcinterp_fast.fit(model.lm_head.weight, min_size=4))


def test_hugging_face_sequence_classifier(transformers):
    config = transformers.BertConfig(
        num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100, num_labels=7
    )
    model = transformers.BertForSequenceClassification(config)
    _same_storage(head_weight(model), model.classifier.weight)


# ------------------------------------------------------------ modules and arrays
def test_modules():
    linear = nn.Linear(16, 10)
    _same_storage(head_weight(linear), linear.weight)
    conv = nn.Conv2d(16, 10, kernel_size=1)
    _same_storage(head_weight(conv), conv.weight)
    with pytest.raises(ValueError, match=r"Conv2d holds no nn.Linear or conv 1x1 layer"):
        head_weight(nn.Conv2d(16, 10, kernel_size=3))


def test_tensors_and_arrays():
    W = torch.randn(10, 16, 1, 1)
    _same_storage(head_weight(W), W)
    a = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    found = head_weight(a)
    assert np.shares_memory(found.numpy(), a) and np.array_equal(found.numpy(), a)


def test_numpy_view_with_negative_strides():
    """Reversed numpy views have negative strides, which torch tensors cannot describe: the
    head is then read from a copy (the caller's array is left alone)."""
    a = np.random.default_rng(1).standard_normal((6, 40))
    view = a[::-1, ::-2]
    assert np.array_equal(head_weight(view).numpy(), view)
    assert_same_fit(fcinterp_fast.fit(view, min_size=2), fcinterp_fast.fit(view.copy(), min_size=2))


# --------------------------------------------------------------------------- files
@pytest.fixture
def files(tmp_path):
    """The same state dict as .safetensors and .pth: a backbone conv, a conv 1x1 head under a
    non-head name, and a linear head under a head name."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(8, 3, 3, 3, generator=generator),
        "features.1.bias": torch.randn(8, generator=generator),
        "proj.weight": torch.randn(12, 8, 1, 1, generator=generator).half(),
        "classifier.weight": torch.randn(20, 12, generator=generator),
    }
    save_file(state, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "model.pth")
    return state, tmp_path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_file_heads(files, suffix):
    state, folder = files
    path = folder / f"model{suffix}"
    assert torch.equal(head_weight(path), state["classifier.weight"])
    assert torch.equal(head_weight(path, name="proj.weight"), state["proj.weight"].flatten(1))
    assert head_weight(path, name="proj.weight").dtype == torch.float16
    # device="cpu": a file goes to the GPU when there is one, the CPU tensor stays on the CPU
    assert_same_fit(fcinterp_fast.fit(path, device="cpu"), fcinterp_fast.fit(state["classifier.weight"]))
    # streamed in blocks of one row
    assert_same_fit(
        fcinterp_fast.fit(
            str(path), name="proj.weight", max_memory=_one_row(path, "proj.weight"), min_size=2, device="cpu"
        ),
        fcinterp_fast.fit(state["proj.weight"], min_size=2),
    )


def _one_row(path, name=None) -> int:
    """The ``max_memory`` that reads ``path``'s head one row per block on the CPU."""
    return plan_fit(path, name=name, device="cpu").row_bytes


def test_single_tensor_pth(tmp_path):
    W = torch.randn(7, 9)
    torch.save(W, tmp_path / "head.pt")
    assert torch.equal(head_weight(tmp_path / "head.pt"), W)


# ------------------------------------------------------------- a head changed after its fit
def test_head_modified_in_place_after_the_fit_raises():
    """Masks and members re-read the head: after an in-place change they would be other neurons."""
    W = torch.randn(30, 64, generator=torch.Generator().manual_seed(0))
    fit = fcinterp_fast.fit(W)
    assert fit.mask("+").any() and fit.members(3, "+*").numel()
    with torch.no_grad():
        W.mul_(-1)
    for read in (lambda: fit.mask("+"), lambda: fit.members(3, "+"), lambda: fit.members(3, "-*")):
        with pytest.raises(ValueError, match=r"modified in place after it was fitted \(tensor version 0 -> 1\)"):
            read()


def test_head_changed_behind_its_version_counter_raises():
    """``W.data`` bypasses the version counter: the node sizes rebuilt differ from the fit's."""
    torch.manual_seed(0)  # class 0's "+" node must change size (a random row could keep it)
    layer = nn.Linear(64, 30)
    fit = fcinterp_fast.fit(layer)
    layer.weight.data.mul_(-1)
    with pytest.raises(ValueError, match=r"node '\+' of class 0 has \d+ members in the head as read now, but had"):
        fit.mask("+")
    with pytest.raises(ValueError, match=r"node '-' of class 7 has \d+ members .* fit it again"):
        fit.members(7, "-")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_head_file_changed_or_deleted_after_the_fit_raises(tmp_path, suffix):
    from safetensors.torch import save_file

    def save(W: torch.Tensor) -> None:
        save_file({"head.weight": W}, path) if suffix == ".safetensors" else torch.save({"head.weight": W}, path)

    path = tmp_path / f"head{suffix}"
    W = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    save(W)
    fit = fcinterp_fast.fit(path, device="cpu")
    assert torch.equal(fit.members(5, "+"), (W[5] > 0).nonzero().flatten())
    stat = path.stat()
    save(-W)  # replaced by a file of the same size and modification time: only the rows tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    with pytest.raises(ValueError, match=rf"row 5 of {path} is not what was read from it before"):
        fit.members(5, "+")
    with pytest.raises(ValueError, match=rf"row 0 of {path} is not what was read"):
        fit.mask("+")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=rf"{path} was modified after it was opened"):
        fit.members(5, "+")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"the head file {path} was deleted after it was opened"):
        fit.mask("-")


def test_head_file_modified_between_opening_and_fitting_raises(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "head.safetensors"
    W = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    save_file({"head.weight": W}, path)
    plan = plan_fit(path, device="cpu", max_memory=_one_row(path))  # one row a block
    stat = path.stat()
    save_file({"head.weight": -W}, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later time, whatever the clock's grain
    with pytest.raises(ValueError, match="was modified after it was opened"):
        plan.fit_rows(0, 40)
