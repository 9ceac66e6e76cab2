"""The Triton Grad-CAM++ combination kernel against the torch path (``gradcampp.combine_torch``).

On CUDA the kernel runs natively. On CPU it runs under the Triton interpreter, which must be
switched on before triton is imported: ``test_kernel_under_interpreter`` reruns the small cases of
this file in a subprocess with ``TRITON_INTERPRET=1`` (small shapes: the interpreter is slow).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fcinterp_fast.cam.gradcampp import combine_torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
ATOL = 1e-5

# (B, copies, T, C, h, w, H, W, gradients): odd sizes, a 1x2 map, downsampling, one channel
SMALL = [
    (2, 3, 2, 37, 7, 5, 13, 11, "full"),
    (1, 2, 3, 20, 4, 4, 64, 64, "constant"),
    (2, 1, 2, 9, 3, 6, 7, 20, "derivatives"),
    (1, 1, 1, 1, 1, 2, 5, 3, "full"),
    (1, 2, 2, 70, 9, 9, 4, 6, "constant"),
    (3, 1, 1, 5, 2, 3, 2, 3, "full"),
]
REALISTIC = [
    (1, 16, 14, 1280, 7, 7, 224, 224, "constant"),  # EfficientNet-Lite0, closed form
    (2, 16, 14, 256, 14, 14, 224, 224, "full"),  # ResNet layer3
    (4, 1, 14, 768, 7, 7, 224, 224, "derivatives"),  # Swin, averaged derivatives
    (2, 4, 3, 192, 14, 14, 224, 224, "full"),  # ViT-tiny tokens
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _inputs(B, copies, T, C, h, w, gradients, dtype, device):
    gen = torch.Generator().manual_seed(B * 1000 + C)
    N = B * copies
    A = torch.randn(N, C, h, w, generator=gen).relu()
    g2 = g3 = None
    if gradients == "constant":  # the closed form: one value per (target, channel), zero strides
        g = (torch.randn(T, 1, C, 1, 1, generator=gen) * 1e-3).to(device, dtype).expand(T, N, C, h, w)
    else:
        g = torch.randn(T, N, C, h, w, generator=gen) * 1e-3
        g[g.abs() < 2e-4] = 0  # exact zeros: alpha must be 0 there
        if gradients == "derivatives":
            g2 = (g * g + torch.rand(g.shape, generator=gen) * 1e-7).to(device, dtype)
            g3 = (g**3).to(device, dtype)
        g = g.to(device, dtype)
    return A.to(device, dtype), g, g2, g3


def _check(case, dtype, device):
    from fcinterp_fast.cam.gradcampp_triton import combine_triton

    B, copies, T, C, h, w, H, W, gradients = case
    A, g, g2, g3 = _inputs(B, copies, T, C, h, w, gradients, dtype, device)
    ours = combine_triton(A, g, copies=copies, size=(H, W), g2=g2, g3=g3)
    ref = combine_torch(A, g, copies=copies, size=(H, W), g2=g2, g3=g3)
    assert ours.shape == (B, T, H, W) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.skipif(
    not (INTERPRETED or CUDA), reason="CPU needs TRITON_INTERPRET=1 (run by test_kernel_under_interpreter)"
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SMALL, ids=str)
def test_kernel_small(case, dtype):
    _check(case, dtype, "cuda" if CUDA else "cpu")


@pytest.mark.skipif(
    not (INTERPRETED or CUDA), reason="CPU needs TRITON_INTERPRET=1 (run by test_kernel_under_interpreter)"
)
def test_kernel_small_constant_map_scales_to_zero():
    """A 1x1 map upsampled stays exactly constant, so it scales to 0 everywhere (F.interpolate leaves
    one-ulp differences there, which the 1e-7 guard would turn into values near 1e-3)."""
    from fcinterp_fast.cam.gradcampp_triton import combine_triton

    device = "cuda" if CUDA else "cpu"
    A = torch.full((2, 3, 1, 1), 0.7, device=device)
    g = torch.full((1, 2, 3, 1, 1), 1.2345e-3, device=device)
    zeros = torch.zeros(1, 1, 5, 3, device=device)
    assert torch.equal(combine_triton(A, g, copies=2, size=(5, 3)), zeros)
    assert torch.equal(combine_torch(A, g, copies=2, size=(5, 3)), zeros)


@pytest.mark.skipif(INTERPRETED or CUDA, reason="runs the small cases under the interpreter from a plain CPU run")
def test_kernel_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "test_kernel_small"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"{len(SMALL) * len(DTYPES) + 1} passed" in done.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", REALISTIC, ids=str)
def test_kernel_realistic_on_cuda(case, dtype):
    _check(case, dtype, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_explain_on_cuda_equals_cpu(layer, monkeypatch):
    import timm

    from fcinterp_fast import explain

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    targets = [(k, None) for k in range(14)]
    cpu = explain(model, x, targets, method="gradcam++", target_layer=model.layer3 if layer == "layer3" else None)
    model = model.cuda()
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 convolutions, not TF32
    cuda = explain(
        model, x.cuda(), targets, method="gradcam++", target_layer=model.layer3 if layer == "layer3" else None
    )
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)
