"""pytorch-grad-cam references for the explanation tests.

Imports nothing of fcinterp_fast (the benchmark's baseline, ``fcinterp_fast.baselines``, is checked
against this file in tests/test_bench.py): a node's score is reproduced the way a user of pytorch-grad-cam
would, on a copy of the model whose head row k is omega_k * mask (bias 0), with
``ClassifierOutputTarget(k)``; Smooth Grad-CAM++ loops over targets and noisy copies, one forward and
one backward per copy, and combines with pytorch-grad-cam's own ``get_cam_image`` and scaling.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def masked_head_copy(model: torch.nn.Module, head: torch.nn.Module, k: int, row: torch.Tensor):
    """A deep copy of ``model`` whose head row k is ``row`` and bias[k] 0, and the copied head."""
    path = next(name for name, module in model.named_modules() if module is head)
    clone = copy.deepcopy(model)
    clone_head = clone.get_submodule(path)
    with torch.no_grad():
        clone_head.weight[k] = row.to(clone_head.weight.dtype).view_as(clone_head.weight[k])
        if clone_head.bias is not None:
            clone_head.bias[k] = 0
    return clone


def gradcampp(model, layer, x: torch.Tensor, k: int, reshape=None) -> np.ndarray:
    """pytorch-grad-cam's ``GradCAMPlusPlus`` with ``ClassifierOutputTarget(k)``: (B, H, W) float32."""
    with GradCAMPlusPlus(model, [layer], reshape_transform=reshape) as cam:
        return cam(x, [ClassifierOutputTarget(k)] * x.shape[0])


def smooth_maps(model, layer, copies: torch.Tensor, n: int, k: int, reshape=None, clean=None) -> np.ndarray:
    """Smooth Grad-CAM++ of class k from pytorch-grad-cam's pieces, one noisy copy at a time.

    Args:
        copies: (B * n, C, H, W) noisy copies, copies of one image adjacent.
        clean: None for ``smooth="maps"`` (mean of the relu'd per-copy maps); the (B, C, H, W) clean
            images for ``smooth="derivatives"`` (mean g, g^2, g^3 over copies, A from the clean input).

    Returns:
        (B, H, W) float32 maps, scaled by pytorch-grad-cam's ``scale_cam_image`` and aggregation.
    """
    per_image = copies.unflatten(0, (-1, n))  # (B, n, C, H, W)
    with GradCAMPlusPlus(model, [layer], reshape_transform=reshape) as cam:
        targets = [ClassifierOutputTarget(k)] * per_image.shape[0]
        maps, grads = [], []
        for s in range(n):
            x = per_image[:, s]
            outputs = cam.activations_and_grads(x)
            model.zero_grad()
            sum(target(output) for target, output in zip(targets, outputs, strict=True)).backward()
            A = cam.activations_and_grads.activations[0].numpy()
            g = cam.activations_and_grads.gradients[0].numpy()
            if clean is None:
                maps.append(np.maximum(cam.get_cam_image(x, layer, targets, A, g), 0))
            else:
                grads.append(g.astype(np.float64))
        if clean is None:
            mean_map = np.mean(maps, axis=0)
        else:
            with torch.no_grad():
                cam.activations_and_grads(clean)
            A = cam.activations_and_grads.activations[0].numpy().astype(np.float64)
            mean_map = np.maximum(_derivative_cam(A, *(np.mean([g**p for g in grads], axis=0) for p in (1, 2, 3))), 0)
        size = cam.get_target_width_height(copies)
        return cam.aggregate_multi_layers([scale_cam_image(mean_map.astype(np.float32), size)[:, None]])


def _derivative_cam(A, g1, g2, g3, eps=1e-6):
    """Omeiza's Smooth Grad-CAM++ channel sum (before relu) from averaged derivatives, float64 numpy."""
    S = A.sum(axis=(2, 3), keepdims=True)
    alpha = np.where(g1 != 0, g2 / (2 * g2 + S * g3 + eps), 0)
    weights = (alpha * np.maximum(g1, 0)).sum(axis=(2, 3))
    return (weights[:, :, None, None] * A).sum(axis=1)
