"""Bad input raises a clear exception that says what was wrong (docs/spec.md section 1, issue 2); good input is
never modified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fcinterp_fast
from fcinterp_fast.backends import registry
from strategies import FLOAT_DTYPES, LAYOUTS, as_layout, bit_pattern


def _head(K=9, D=12, dtype=torch.float32, seed=0):
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ------------------------------------------------------------------------ values
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("row_blocks", [False, True], ids=["one-block", "row-blocks"])
def test_non_finite_names_the_first_bad_row(backend, dtype, bad, row_blocks):
    """The first bad row is named also when it lies in a later row block (one row per block) and
    when a later row is bad too."""
    W = _head(dtype=dtype)
    W[5, 3] = bad
    W[7, 0] = bad
    with pytest.raises(ValueError, match=r"row 5 of the head contains NaN or infinite"):
        backend.fit(W, max_memory=backend.one_row(W) if row_blocks else None)


def test_non_finite_in_a_streamed_file_names_the_first_bad_row(backend, tmp_path):
    """A .safetensors head is read a block of rows at a time: the check runs on every block."""
    from safetensors.torch import save_file

    if backend.device != "cpu":
        pytest.skip("file heads are read into CPU blocks")

    W = _head(K=12, dtype=torch.bfloat16)
    W[8, 1], W[10, 0] = float("inf"), float("nan")
    path = tmp_path / "head.safetensors"
    save_file({"head.weight": W}, path)
    with pytest.raises(ValueError, match=r"row 8 of the head contains NaN or infinite"):
        fcinterp_fast.fit(path, backend=backend.name, max_memory=backend.one_row(path))


def test_non_finite_in_a_view_names_the_row_of_the_view(backend):
    W = _head(K=6)
    W[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"row 1 of the head"):
        backend.fit(W[3:].t().contiguous().t())


def test_float64_beyond_the_overflow_guard_names_the_row(backend):
    """float64 sums of D values must stay finite: |x| > max / (4 D) is rejected, naming the row."""
    W = _head(K=4, D=8, dtype=torch.float64)
    W[2, 5] = torch.finfo(torch.float64).max / 16
    with pytest.raises(ValueError, match=r"row 2 of the head has a value with \|x\| > .*could overflow"):
        backend.fit(W, max_memory=backend.one_row(W))


# ------------------------------------------------------------------ shapes and types
@pytest.mark.parametrize(
    "W, error, message",
    [
        (torch.ones(0, 4), ValueError, r"head is empty: shape \(0, 4\)"),
        (torch.ones(4, 0), ValueError, r"head is empty: shape \(4, 0\)"),
        (np.ones((0, 3)), ValueError, r"head is empty"),
        (torch.ones(5), ValueError, r"\(K, D\) matrix .* got shape \(5,\)"),
        (torch.ones(2, 3, 4), ValueError, r"got shape \(2, 3, 4\)"),
        (torch.ones(2, 3, 3, 3), ValueError, r"conv 1x1 kernel, got shape \(2, 3, 3, 3\)"),
        (torch.tensor(1.0), ValueError, r"got shape \(\)"),
        (torch.ones(3, 4, dtype=torch.int64), TypeError, r"dtype torch.int64; expected one of float16"),
        (torch.ones(3, 4, dtype=torch.uint8), TypeError, r"dtype torch.uint8"),
        (torch.ones(3, 4, dtype=torch.bool), TypeError, r"dtype torch.bool"),
        (torch.ones(3, 4, dtype=torch.complex64), TypeError, r"dtype torch.complex64"),
        (np.ones((3, 4), dtype=np.int32), TypeError, r"dtype int32; expected float16"),
        (np.ones((3, 4), dtype=bool), TypeError, r"dtype bool"),
        (np.ones((3, 4), dtype=np.complex128), TypeError, r"dtype complex128"),
        ([[1.0, 2.0]], TypeError, r"cannot find a head in a list"),
    ],
    ids=lambda v: None if isinstance(v, (torch.Tensor, np.ndarray, list)) else str(v)[:30],
)
def test_bad_head(W, error, message):
    with pytest.raises(error, match=message):
        fcinterp_fast.fit(W)


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(backend="gpu"), ValueError, r"unknown backend 'gpu'; choose one of 'auto', 'reference'"),
        (dict(tree="binary"), ValueError, r"unknown tree 'binary'; choose one of 'chain', 'full'"),
        (dict(root="median"), ValueError, r"unknown root 'median'; choose one of 'zero', 'mean'"),
        (dict(grid="log"), ValueError, r"unknown grid 'log'; choose one of 'paper', 'linspace'"),
        (dict(min_size=-1), ValueError, r"min_size must be an int in 0\.\.9223372036854775807, got -1$"),
        (dict(min_size=2.5), TypeError, r"min_size must be an int"),
        # before: the cpu backend's pybind11 overload error, 21 KB with the head's values in it
        (dict(min_size=2**63), ValueError, r"^min_size must be an int in 0\.\.9223372036854775807, got 922\d+8$"),
        (dict(min_size=-(2**70)), ValueError, r"^min_size must be an int in 0\.\.9223372036854775807, got -"),
        (dict(depth=0), ValueError, r"depth must be an int >= 1 or None, got 0"),
        (dict(depth=2.0), TypeError, r"depth must be an int"),
        (dict(depth=2**64), ValueError, r"depth=18446744073709551616 exceeds the chain cap of 64"),
        (dict(tree="full"), ValueError, r"tree='full' needs an explicit depth"),
        (dict(tree="full", depth=11), ValueError, r"depth=11 is too large for tree='full'.*depth <= 10"),
        (dict(depth=65), ValueError, r"depth=65 exceeds the chain cap of 64"),
        (dict(max_memory=0), ValueError, r"max_memory must be an int >= 1, got 0"),
        (dict(max_memory=-8), ValueError, r"max_memory must be an int >= 1, got -8"),
        (dict(max_memory=2.5e9), TypeError, r"max_memory must be an int >= 1, got 2500000000.0"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else None,
)
def test_bad_option(options, error, message):
    with pytest.raises(error, match=message):
        fcinterp_fast.fit(_head(), **options)


@pytest.mark.parametrize(
    "query",
    [
        lambda fit: fit.mask("+-+"),
        lambda fit: fit.mask("*"),
        lambda fit: fit.members(0, "++++"),
        lambda fit: fit.column("plus"),
    ],
    ids=["mask", "mask-star", "members", "column"],
)
def test_unknown_node(query):
    fit = fcinterp_fast.fit(_head(D=64), min_size=20, depth=2)
    with pytest.raises(ValueError, match=r"unknown node .*this fit has nodes \+, -, \+\+, --"):
        query(fit)


def test_bad_class():
    fit = fcinterp_fast.fit(_head())
    with pytest.raises(IndexError, match=r"class index 9 out of range for a head of 9 classes"):
        fit.members(9, "+")
    with pytest.raises(ValueError, match=r"class 'cat' given by name, but this head has no class names"):
        fit.members("cat", "+")


# ---------------------------------------------------------------------- devices
def test_backend_on_a_device_it_does_not_declare(backend):
    """A head on a device the backend does not run on (the meta device here, or CPU for a
    CUDA-only backend) is refused with the device named, not silently moved."""
    for device in ("meta", "cpu"):
        if device in registry.get_backend(backend.name).devices:
            continue
        with pytest.raises(ValueError, match=rf"backend {backend.name!r} runs on .* but the head is on {device}"):
            fcinterp_fast.fit(torch.ones(3, 4, device=device), backend=backend.name)


def test_auto_without_a_backend_for_the_device():
    with pytest.raises(ValueError, match=r"no available backend runs on meta tensors"):
        fcinterp_fast.fit(torch.ones(3, 4, device="meta"))


# -------------------------------------------------------------------------- files
@pytest.fixture
def checkpoint(tmp_path):
    """A .safetensors and a .pth file with a backbone conv, two 2-D tensors and a head."""
    from safetensors.torch import save_file

    state = {
        "stem.weight": torch.randn(8, 3, 3, 3),
        "proj.weight": torch.randn(16, 8),
        "fc.weight": torch.randn(10, 16),
        "head.weight": torch.randn(5, 16),
    }
    save_file(state, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "model.pth")
    return tmp_path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_file_errors(checkpoint, suffix):
    path = checkpoint / f"model{suffix}"
    with pytest.raises(ValueError, match=r"holds 2 possible head tensors; choose one with name=...: ") as info:
        fcinterp_fast.fit(path)
    assert "fc.weight (10, 16)" in str(info.value) and "head.weight (5, 16)" in str(info.value)
    with pytest.raises(ValueError, match=r"has no tensor 'classifier.weight'; 2-D candidates: ") as info:
        fcinterp_fast.fit(path, name="classifier.weight")
    assert all(f"{name} (" in str(info.value) for name in ("proj.weight", "fc.weight", "head.weight"))
    assert "stem.weight" not in str(info.value)
    with pytest.raises(ValueError, match=r"tensor 'stem.weight' .*got shape \(8, 3, 3, 3\)"):
        fcinterp_fast.fit(path, name="stem.weight")
    with pytest.raises(FileNotFoundError, match=r"no such head file: .*missing"):
        fcinterp_fast.fit(checkpoint / f"missing{suffix}")


def test_file_of_the_wrong_kind(tmp_path):
    (tmp_path / "notes.txt").write_text("not a head")
    with pytest.raises(ValueError, match=r"unsupported head file type '.txt'; use one of .safetensors"):
        fcinterp_fast.fit(tmp_path / "notes.txt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"broken.safetensors is not a valid safetensors file"):
        fcinterp_fast.fit(tmp_path / "broken.safetensors")
    torch.save({"bias": torch.randn(5)}, tmp_path / "bias.pth")
    with pytest.raises(ValueError, match=r"has no classifier head .*none \(no 2-D float tensor\)"):
        fcinterp_fast.fit(tmp_path / "bias.pth")


# --------------------------------------------------------------- nothing modified
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_input_is_not_modified(backend, dtype, layout):
    """fit, masks, members and tables leave every bit of the caller's storage as it was (also
    around views and for the half dtypes, where a careless in-place cast or sort would show)."""
    W = torch.randn(5, 40, generator=torch.Generator().manual_seed(1)).to(dtype)
    W[1] = W[1, 0]  # an all-equal row
    W[2, ::3] = 0
    view = as_layout(backend.put(W), layout)
    base = view._base if view._base is not None else view
    before = bit_pattern(base)
    fit = backend.fit(view, tree="full", depth=3, root="mean", min_size=2)
    fit.mask("+-"), fit.members(3, "--+"), fit.to_pandas()
    assert torch.equal(bit_pattern(base), before)
    assert view.dtype == dtype and not view.requires_grad


def test_numpy_input_is_not_modified():
    a = np.random.default_rng(0).standard_normal((4, 50)).astype(np.float16)
    view = a[:, 5:45:2]
    before = a.copy()
    fcinterp_fast.fit(view, min_size=2)
    np.testing.assert_array_equal(a.view(np.int16), before.view(np.int16))


def test_module_is_not_modified():
    """Parameters, their requires_grad flag and the train/eval mode stay as the user set them."""
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 10)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fcinterp_fast.fit(model, min_size=2)
    assert model.training and all(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
