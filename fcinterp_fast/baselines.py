"""What the package is measured against: the author's per-class numpy loop, scipy's ALD fit and
pytorch-grad-cam looped over targets and noisy copies.

``author_fit`` is written the way the paper's notebooks work, one class at a time in numpy:
Algorithm 1 on the positive (and negative) weights (sort, log, ``np.polyfit``, R^2), then the
recursive split of each chain at its mean (``+ -> ++ -> +++``, ``- -> -- -> ---``). It computes
the same numbers as ``fit(W, tree="chain", root="zero")``'s line fits (the tests check that), but
no ALD maximum likelihood: ``scipy_ald`` is that part, ``scipy.stats.laplace_asymmetric.fit`` per
row. They exist for ``fcinterp bench``; use ``fcinterp_fast.fit`` for real work.

``masked_head_copy`` and ``gradcam_smooth_maps`` explain a node the way a user of pytorch-grad-cam
would (``benchmarks/bench_explain.py`` times them against ``fcinterp_fast.explain``): for each target
a copy of the model whose head row k is the node's omega_k * mask, then ``GradCAMPlusPlus`` with one
forward and one backward per noisy copy. pytorch-grad-cam (``grad-cam`` on PyPI) is imported only
when they run.
"""

from __future__ import annotations

import copy
from typing import cast

import numpy as np
import torch
from torch import nn

__all__ = ["author_fit", "scipy_ald", "masked_head_copy", "gradcam_smooth_maps"]


def _line_fit(values: np.ndarray, grid: str) -> tuple[float, float, float]:
    """Algorithm 1 on one node: (slope, intercept, r2) of ln|theta| sorted against x_i."""
    v = np.sort(np.abs(values[values != 0]))
    L = len(v)
    if L == 0:
        return np.nan, np.nan, np.nan
    y = np.log(v)
    if L == 1:
        return 0.0, float(y[0]), np.nan
    x = np.arange(L) / (L if grid == "paper" else L - 1)
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1 - ss_res / ss_tot
    return float(slope), float(intercept), r2


def author_fit(
    W: np.ndarray, *, min_size: int = 20, depth: int = 64, grid: str = "paper"
) -> list[dict[str, tuple[int, float, float, float]]]:
    """The chain split tree of every row of ``W`` (K, D), one class at a time.

    Returns:
        For each class, ``{node: (count, slope, intercept, r2)}`` for the nodes of both chains.
    """
    results = []
    for theta in np.asarray(W, dtype=np.float64):
        nodes: dict[str, tuple[int, float, float, float]] = {}
        for name, values in (("+", theta[theta > 0]), ("-", theta[theta < 0])):
            while True:  # one chain: the node, then its strong child at the node's mean
                nodes[name] = (len(values), *_line_fit(values, grid))
                if len(values) == 0 or len(values) < min_size or len(name) >= depth or values.min() == values.max():
                    break
                mu = values.mean()
                name, values = name + name[0], values[values >= mu] if name[0] == "+" else values[values < mu]
        results.append(nodes)
    return results


def scipy_ald(W: np.ndarray) -> np.ndarray:
    """``scipy.stats.laplace_asymmetric.fit`` of every row: (K, 3) float64 of (kappa, loc, scale)."""
    from scipy.stats import laplace_asymmetric

    return np.array([laplace_asymmetric.fit(row) for row in np.asarray(W, dtype=np.float64)])


def masked_head_copy(model: nn.Module, head: nn.Linear, k: int, row: torch.Tensor) -> nn.Module:
    """A deep copy of ``model`` whose ``head`` (a module of ``model``) has row k = ``row`` (D,) and bias[k] 0.

    With ``row`` = |W_k| * mask, class k's logit of the copy is the score of a node of class k
    (docs/spec.md section 5), so pytorch-grad-cam's ``ClassifierOutputTarget(k)`` explains that node.
    """
    path = next(name for name, module in model.named_modules() if module is head)
    clone = copy.deepcopy(model)
    clone_head = cast(nn.Linear, clone.get_submodule(path))
    with torch.no_grad():
        clone_head.weight[k] = row.to(clone_head.weight.dtype).view_as(clone_head.weight[k])
        if clone_head.bias is not None:
            clone_head.bias[k] = 0
    return clone


def gradcam_smooth_maps(model: nn.Module, layer: nn.Module, copies: torch.Tensor, n: int, k: int) -> np.ndarray:
    """Smooth Grad-CAM++ of class k (``smooth="maps"``) from pytorch-grad-cam, one noisy copy at a time.

    Each copy gets one forward and one backward through pytorch-grad-cam's ``GradCAMPlusPlus`` on
    ``layer``; the relu'd per-copy maps of an image are averaged, then scaled to the input size by
    pytorch-grad-cam's ``scale_cam_image``.

    Args:
        model: the classifier in eval mode (e.g. a ``masked_head_copy``).
        layer: the layer whose activations are explained.
        copies: (B * n, C, H, W) noisy copies, the n copies of one image adjacent
            (``fcinterp_fast.cam.noisy_copies``).
        n: copies per image.
        k: the class (``ClassifierOutputTarget(k)``).

    Returns:
        (B, H, W) float32 maps in [0, 1].
    """
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    per_image = copies.unflatten(0, (-1, n))  # (B, n, C, H, W)
    with GradCAMPlusPlus(model, [layer]) as cam:
        targets = [ClassifierOutputTarget(k)] * per_image.shape[0]
        maps = []
        for s in range(n):
            x = per_image[:, s]
            outputs = cam.activations_and_grads(x)
            model.zero_grad()
            sum(target(output) for target, output in zip(targets, outputs, strict=True)).backward()
            A = cam.activations_and_grads.activations[0].numpy()
            g = cam.activations_and_grads.gradients[0].numpy()
            maps.append(np.maximum(cam.get_cam_image(x, layer, targets, A, g), 0))
        size = cam.get_target_width_height(copies)
        scaled = scale_cam_image(np.mean(maps, axis=0).astype(np.float32), size)
        return cam.aggregate_multi_layers([scaled[:, None]])
