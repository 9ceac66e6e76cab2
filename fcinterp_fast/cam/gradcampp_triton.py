"""Triton kernel: the final Grad-CAM++ combination of every (image, target) in one launch.

The algorithm (docs/spec.md section 5; the formula is explained in ``gradcampp.py``). One program owns one
output map, i.e. one (image b, target t):

1. For each copy s of image b (row n = b * copies + s of A) and each block of channels, load the
   (BLOCK_C, BLOCK_HW) tiles of A and g (or of the averaged g, g^2, g^3), compute S_c (the sum of the
   A tile over space: the whole map fits one tile), alpha, w_c = sum alpha relu(g), and accumulate
   sum_c w_c A_c into the copy's map. Add relu(map) to the running sum over copies; divide by copies.
2. Upsample the (h, w) map bilinearly to (H, W) with PyTorch's align_corners=False coordinates. The
   low-resolution map lives in registers, so each block of output pixels is a (BLOCK_OUT, BLOCK_HW)
   matrix of bilinear weights (at most four non-zero per row) times the map.
3. Min-max scale: a first pass over the output finds min and max, a second one recomputes the
   pixels (cheaper than re-reading them) and stores (m - min) / (1e-7 + max - min).

Inputs are loaded in their own dtype and converted to float32 before any arithmetic (g^2, g^3 and
S_c g^3 overflow or underflow in float16; Triton's interpreter computes bfloat16 wrongly). Gradients
that are constant in space or shared by the copies (the closed form of a mean-pooled head) arrive
as expanded views: their zero strides make every program read the same values.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gradcampp import EPS, SCALE_GUARD, TRITON_MAX_HW, check_combine_args

__all__ = ["combine_triton"]


@triton.jit
def _gradcampp_kernel(
    # Pointers
    A_ptr, G_ptr, G2_ptr, G3_ptr, Out_ptr,
    # Sizes
    T, C, h, w, H_out, W_out, copies, scale_y, scale_x,
    # Strides
    stride_an, stride_ac, stride_ah, stride_aw,
    stride_gt, stride_gn, stride_gc, stride_gh, stride_gw,
    # Meta-parameters
    EPS: tl.constexpr, GUARD: tl.constexpr, SMOOTH_DERIVATIVES: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_OUT: tl.constexpr,
):  # fmt: skip
    """out[b, t] = minmax(upsample(mean_s relu(sum_c w_c A[b*copies+s, c]))), w_c from Grad-CAM++ eq. 19."""
    # ------------------------------------------------------------------ map pid to (image, target)
    pid = tl.program_id(0)
    b = pid // T
    t = pid % T

    offs_hw = tl.arange(0, BLOCK_HW)  # (BLOCK_HW,) flattened positions of the low-resolution map
    hw_mask = offs_hw < h * w
    qy = offs_hw // w
    qx = offs_hw % w
    a_space = qy.to(tl.int64) * stride_ah + qx.to(tl.int64) * stride_aw
    g_space = qy.to(tl.int64) * stride_gh + qx.to(tl.int64) * stride_gw
    g_target = t.to(tl.int64) * stride_gt

    # ------------------------------------------------------- weighted channel sums, mean over copies
    acc = tl.zeros([BLOCK_HW], dtype=tl.float32)
    for s in range(copies):
        n = (b * copies + s).to(tl.int64)
        cam = tl.zeros([BLOCK_HW], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)  # (BLOCK_C,)
            tile_mask = (offs_c < C)[:, None] & hw_mask[None, :]  # (BLOCK_C, BLOCK_HW)
            channel = offs_c.to(tl.int64)[:, None]
            a = tl.load(A_ptr + n * stride_an + channel * stride_ac + a_space[None, :], mask=tile_mask, other=0.0)
            a = a.to(tl.float32)
            g_offs = g_target + n * stride_gn + channel * stride_gc + g_space[None, :]
            g = tl.load(G_ptr + g_offs, mask=tile_mask, other=0.0).to(tl.float32)
            if SMOOTH_DERIVATIVES:
                g2 = tl.load(G2_ptr + g_offs, mask=tile_mask, other=0.0).to(tl.float32)
                g3 = tl.load(G3_ptr + g_offs, mask=tile_mask, other=0.0).to(tl.float32)
            else:
                g2 = g * g
                g3 = g2 * g
            S = tl.sum(a, axis=1)  # (BLOCK_C,) sum over space of each channel
            alpha = g2 / (2.0 * g2 + S[:, None] * g3 + EPS)
            alpha = tl.where(g != 0.0, alpha, 0.0)
            weights = tl.sum(alpha * tl.maximum(g, 0.0), axis=1)  # (BLOCK_C,)
            cam += tl.sum(weights[:, None] * a, axis=0)
        acc += tl.maximum(cam, 0.0)
    acc = acc / copies

    # ------------------------------------------- bilinear upsampling (align_corners=False), min-max
    n_out = H_out * W_out
    out_base = Out_ptr + pid.to(tl.int64) * n_out
    lo = tl.full([BLOCK_OUT], float("inf"), dtype=tl.float32)
    hi = tl.full([BLOCK_OUT], float("-inf"), dtype=tl.float32)
    for o0 in range(0, n_out, BLOCK_OUT):
        offs_o = o0 + tl.arange(0, BLOCK_OUT)  # (BLOCK_OUT,)
        pixels = _bilinear(acc, qy, qx, offs_o, h, w, W_out, scale_y, scale_x)
        lo = tl.minimum(lo, tl.where(offs_o < n_out, pixels, float("inf")))
        hi = tl.maximum(hi, tl.where(offs_o < n_out, pixels, float("-inf")))
    low = tl.min(lo, axis=0)
    span = GUARD + (tl.max(hi, axis=0) - low)
    for o0 in range(0, n_out, BLOCK_OUT):  # recomputing the pixels is cheaper than re-reading them
        offs_o = o0 + tl.arange(0, BLOCK_OUT)
        pixels = _bilinear(acc, qy, qx, offs_o, h, w, W_out, scale_y, scale_x)
        tl.store(out_base + offs_o, (pixels - low) / span, mask=offs_o < n_out)


@triton.jit
def _bilinear(acc, qy, qx, offs_o, h, w, W_out, scale_y, scale_x):
    """Output pixels ``offs_o`` (BLOCK_OUT,) of the (h, w) map ``acc`` (BLOCK_HW,) upsampled bilinearly.

    PyTorch's align_corners=False mapping: src = max((dst + 0.5) * in / out - 0.5, 0), neighbours
    floor(src) and floor(src) + 1 clamped to the map, weights 1 - frac and frac.
    """
    src_y = tl.maximum(((offs_o // W_out).to(tl.float32) + 0.5) * scale_y - 0.5, 0.0)
    src_x = tl.maximum(((offs_o % W_out).to(tl.float32) + 0.5) * scale_x - 0.5, 0.0)
    y0 = tl.minimum(src_y.to(tl.int32), h - 1)  # truncation is floor: src >= 0
    x0 = tl.minimum(src_x.to(tl.int32), w - 1)
    y1 = tl.minimum(y0 + 1, h - 1)
    x1 = tl.minimum(x0 + 1, w - 1)
    ly = tl.minimum(tl.maximum(src_y - y0.to(tl.float32), 0.0), 1.0)
    lx = tl.minimum(tl.maximum(src_x - x0.to(tl.float32), 0.0), 1.0)
    # Where a neighbour is clamped onto the other (the last row / column), weight exactly 1, not
    # (1 - l) + l: a constant map must stay exactly constant, or its min-max scaling amplifies noise.
    ly = tl.where(y1 == y0, 0.0, ly)
    lx = tl.where(x1 == x0, 0.0, lx)
    # (BLOCK_OUT, BLOCK_HW) separable weights, at most four non-zero per row, rows summing to 1
    wy = tl.where(qy[None, :] == y0[:, None], 1.0 - ly[:, None], 0.0)
    wy += tl.where(qy[None, :] == y1[:, None], ly[:, None], 0.0)
    wx = tl.where(qx[None, :] == x0[:, None], 1.0 - lx[:, None], 0.0)
    wx += tl.where(qx[None, :] == x1[:, None], lx[:, None], 0.0)
    return tl.sum(wy * wx * acc[None, :], axis=1)


def combine_triton(
    A: torch.Tensor,
    g: torch.Tensor,
    *,
    copies: int,
    size: tuple[int, int],
    g2: torch.Tensor | None = None,
    g3: torch.Tensor | None = None,
) -> torch.Tensor:
    """``base.combine`` as one Triton launch; same arguments, same (B, T, H, W) float32 result.

    Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``.
    """
    check_combine_args(A, g, copies, size, g2, g3)
    N, C, h, w = A.shape
    T = g.shape[0]
    if h * w > TRITON_MAX_HW:
        raise ValueError(
            f"feature map {h}x{w} is larger than the kernel's {TRITON_MAX_HW} positions; use combine_torch"
        )
    # check_combine_args: g2 and g3 come together or not at all
    if g.device != A.device or (g2 is not None and g3 is not None and not (g2.device == g3.device == A.device)):
        raise ValueError("activations and gradients must be on the same device")
    if g2 is not None and g3 is not None and not (g.stride() == g2.stride() == g3.stride()):
        g, g2, g3 = g.contiguous(), g2.contiguous(), g3.contiguous()  # the kernel takes one set of strides
    H, W = (int(s) for s in size)
    out = torch.empty((N // copies, T, H, W), dtype=torch.float32, device=A.device)

    BLOCK_HW = triton.next_power_of_2(h * w)
    BLOCK_C = max(1, min(64, 4096 // BLOCK_HW))
    BLOCK_OUT = max(16, min(1024, 8192 // BLOCK_HW))
    grid = lambda meta: (out.shape[0] * T,)  # noqa: E731
    _gradcampp_kernel[grid](
        A, g, g2 if g2 is not None else g, g3 if g3 is not None else g, out,
        T, C, h, w, H, W, copies, _ratio(h, H), _ratio(w, W),
        *A.stride(),
        *g.stride(),
        EPS=EPS, GUARD=SCALE_GUARD, SMOOTH_DERIVATIVES=g2 is not None,
        BLOCK_C=BLOCK_C, BLOCK_HW=BLOCK_HW, BLOCK_OUT=BLOCK_OUT,
        num_warps=4,
    )  # fmt: skip
    return out


def _ratio(size_in: int, size_out: int) -> float:
    """in / out rounded once to float32, as PyTorch computes the bilinear scale for float32 maps."""
    return (torch.tensor(size_in, dtype=torch.float32) / size_out).item()
