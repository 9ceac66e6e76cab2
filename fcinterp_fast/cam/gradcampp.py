"""The Grad-CAM++ formula and the final combination of maps (docs/spec.md section 5).

Given the activations A of the target layer for every copy of an image and the gradients
g = ds_t/dA of every target score, Grad-CAM++ (Chattopadhyay et al., arXiv 1710.11063, eq. 19, as
pytorch-grad-cam implements it) weighs channel c by

    alpha_cij = g_cij^2 / (2 g_cij^2 + S_c g_cij^3 + eps),   S_c = sum_ij A_cij,   eps = 1e-6,
    alpha_cij = 0 where g_cij == 0,
    w_c       = sum_ij alpha_cij relu(g_cij),
    map       = relu(sum_c w_c A_c).

Smooth Grad-CAM++ (Omeiza et al., arXiv 1908.01224) either averages these relu'd maps over noisy
copies (``smooth="maps"``) or averages g, g^2, g^3 over the copies before alpha and uses the clean
A (``smooth="derivatives"``: pass the three averages as ``g``, ``g2``, ``g3`` with ``copies=1``).
Every map is then upsampled bilinearly (align_corners=False) to the input size and min-max scaled to
[0, 1]: (m - min m) / (1e-7 + max m - min m).

``base.combine`` does all of that for all targets of a batch at once: with the Triton kernel
(``gradcampp_triton.py``) on CUDA, with ``combine_torch`` (the same arithmetic in plain PyTorch)
elsewhere.
Everything is computed in float32, whatever the model's dtype: g^2 and g^3 underflow in float16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "SCALE_GUARD",
    "TRITON_MAX_HW",
    "channel_weights",
    "combine_torch",
    "upsample",
    "min_max_scale",
    "upsample_and_scale",
    "check_combine_args",
]

#: Grad-CAM++'s eps in the denominator of alpha (pytorch-grad-cam's value).
EPS = 1e-6
#: Guard of the final min-max scaling (pytorch-grad-cam's ``scale_cam_image``).
SCALE_GUARD = 1e-7
#: Largest feature map (h * w) the Triton kernel (``gradcampp_triton``) holds in registers; larger
#: maps are combined by ``combine_torch``.
TRITON_MAX_HW = 4096


def channel_weights(
    A: torch.Tensor, g: torch.Tensor, g2: torch.Tensor | None = None, g3: torch.Tensor | None = None
) -> torch.Tensor:
    """Grad-CAM++'s channel weights w_c = sum_ij alpha_cij relu(g_cij): (T, N, C) float32.

    Args:
        A: (N, C, h, w) activations, any float dtype.
        g: (T, N, C, h, w) gradients; dimensions broadcast with zero strides (expanded views) are
            computed once.
        g2, g3: Omeiza's averaged g^2 and g^3, shaped like g; None computes them from g.
    """
    N, C, h, w = A.shape
    T = g.shape[0]
    g = _compact(g).float()
    g2 = g * g if g2 is None else _compact(g2).float()
    g3 = g2 * g if g3 is None else _compact(g3).float()
    S = A.float().sum(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    alpha = g2 / (2 * g2 + S * g3 + EPS)  # (T, N or 1, C, h or 1, w or 1)
    alpha = torch.where(g != 0, alpha, 0.0)
    # Summing an expanded view reads the compacted values with zero strides: no copy is made.
    return (alpha * g.clamp(min=0)).expand(T, N, C, h, w).sum(dim=(3, 4))


def combine_torch(
    A: torch.Tensor,
    g: torch.Tensor,
    *,
    copies: int,
    size: tuple[int, int],
    g2: torch.Tensor | None = None,
    g3: torch.Tensor | None = None,
    scaled: bool = True,
) -> torch.Tensor:
    """``base.combine`` in plain PyTorch (any device); the reference the Triton kernel is tested against.

    ``scaled=False`` leaves out the final min-max scaling: the relu'd maps, upsampled, in the units
    of the target score times activations (what a shared colour scale across maps needs).
    """
    check_combine_args(A, g, copies, size, g2, g3)
    N, C, h, w = A.shape
    T = g.shape[0]
    weights = channel_weights(A, g, g2, g3)  # (T, N, C)
    cam = torch.einsum("tnc,nchw->tnhw", weights, A.float()).clamp(min=0)  # (T, N, h, w)
    cam = cam.reshape(T, N // copies, copies, h, w).mean(dim=2).transpose(0, 1)  # (B, T, h, w)
    return upsample_and_scale(cam, size) if scaled else upsample(cam, size)


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) maps -> (B, T, H, W) float32, bilinear (align_corners=False)."""
    if cam.shape[-2:] == (1, 1):  # F.interpolate leaves one-ulp noise on a constant map; scaling would amplify it
        return cam.float().expand(*cam.shape[:2], *size)
    return F.interpolate(cam.float(), size=tuple(size), mode="bilinear", align_corners=False)


def min_max_scale(cam: torch.Tensor) -> torch.Tensor:
    """Each map (the last two dimensions) scaled to [0, 1]: (m - min m) / (1e-7 + max m - min m)."""
    lo = cam.amin(dim=(-2, -1), keepdim=True)
    hi = cam.amax(dim=(-2, -1), keepdim=True)
    return (cam - lo) / (SCALE_GUARD + (hi - lo))


def upsample_and_scale(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) maps -> (B, T, H, W) float32: bilinear (align_corners=False), then min-max."""
    return min_max_scale(upsample(cam, size))


def check_combine_args(A, g, copies, size, g2, g3) -> None:
    """Raise ValueError when the shapes of a ``combine`` call do not fit together."""
    if A.ndim != 4:
        raise ValueError(f"activations must be (N, C, h, w), got shape {tuple(A.shape)}")
    if not isinstance(copies, int) or copies < 1 or A.shape[0] % copies:
        raise ValueError(f"copies must be a positive divisor of N = {A.shape[0]}, got {copies!r}")
    if g.ndim != 5 or tuple(g.shape[1:]) != tuple(A.shape):
        raise ValueError(f"gradients must be (T, {', '.join(map(str, A.shape))}), got {tuple(g.shape)}")
    if (g2 is None) != (g3 is None):
        raise ValueError("pass both g2 and g3 (averaged derivatives) or neither")
    for name, t in (("g2", g2), ("g3", g3)):
        if t is not None and t.shape != g.shape:
            raise ValueError(f"{name} must have the shape of g {tuple(g.shape)}, got {tuple(t.shape)}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1, got {size!r}")


def _compact(t: torch.Tensor) -> torch.Tensor:
    """``t`` without its broadcast dimensions: every dim with stride 0 narrowed to length 1."""
    index = tuple(slice(0, 1) if s == 0 and n > 1 else slice(None) for n, s in zip(t.shape, t.stride(), strict=True))
    return t[index]
