"""Does a node matter? Two checks of what a split node's neurons do for a class.

* ``node_ablation``: the change of class k's logit when the node's neurons are zeroed at the head's
  input, Delta = -sum_{j in node} W_kj f_j(x) (exact: the logit is linear in f), against the same
  for random sets of as many neurons (a seeded baseline). All targets come from one forward of the
  images to the head's input. If the split finds what the paper says, zeroing the ``+`` chain's
  neurons lowers the logit far more than random neurons do, and zeroing the ``-`` chain's raises it.
* ``confidence_change``: pytorch-grad-cam's ``CamMultImageConfidenceChange`` for our targets: the
  target score s_t = sum_{j in node} omega_kj f_j of the image multiplied by its map, minus that of
  the image (no ROAD imputation), with ``DropInConfidence`` = max(-change, 0) and
  ``IncreaseInConfidence`` = change > 0. A map that shows what the node sees keeps its score.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..classes import class_names as model_class_names
from ..heads.find import head_module, head_weight
from .base import model_device_dtype, prepare_images
from .options import CamOptions
from .targets import Target, lazy_fit, parse_targets, score_vectors

__all__ = ["NodeAblation", "ConfidenceChange", "node_ablation", "confidence_change", "head_features"]


@dataclasses.dataclass(frozen=True)
class NodeAblation:
    """Logit changes of ``node_ablation``; B images, T targets.

    Attributes:
        targets: the T resolved targets (class, node name, size).
        logit: (B, T) float64, class k's logit of each image (with bias).
        delta: (B, T) float64, the logit's change when the node's neurons are zeroed.
        random_delta: (B, T) float64, its mean over ``n_random`` random sets of as many neurons.
        random_std: (B, T) float64, its standard deviation over those sets.
    """

    targets: list[Target]
    logit: torch.Tensor
    delta: torch.Tensor
    random_delta: torch.Tensor
    random_std: torch.Tensor

    @property
    def z(self) -> torch.Tensor:
        """(B, T) how many random-set standard deviations the node's change lies from their mean
        (NaN where the random sets do not vary: a node of every neuron)."""
        spread = torch.where(self.random_std > 1e-12 * self.delta.abs().clamp(min=1), self.random_std, torch.nan)
        return (self.delta - self.random_delta) / spread


@dataclasses.dataclass(frozen=True)
class ConfidenceChange:
    """pytorch-grad-cam-style confidence metrics of maps; B images, T targets.

    Attributes:
        score: (B, T) float64 target score s_t of each image.
        change: (B, T) float64 s_t(image * map) - s_t(image).
        drop: (B, T) max(-change, 0) (pytorch-grad-cam's ``DropInConfidence``).
        increase: (B, T) 1.0 where change > 0 else 0.0 (its ``IncreaseInConfidence``).
    """

    score: torch.Tensor
    change: torch.Tensor
    drop: torch.Tensor
    increase: torch.Tensor


def head_features(model: nn.Module, images, head: nn.Module | str | None = None) -> torch.Tensor:
    """f (B, D): the head's input for ``images`` (tensor, PIL image(s) or path(s)), from one forward."""
    head_mod = head if isinstance(head, nn.Module) else head_module(model, head)
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first")
    device, dtype = model_device_dtype(model)
    x = prepare_images(images, model, device, dtype)
    captured: list[torch.Tensor] = []

    def hook(module, inputs):
        captured.append(inputs[0])

    handle = head_mod.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"the head ran {len(captured)} times in one forward; pass head=<the classifier>")
    f = captured[0]
    return f.flatten(1) if f.ndim == 4 else f


def node_ablation(
    model: nn.Module,
    images,
    targets,
    *,
    fit=None,
    n_random: int = 200,
    seed: int = 0,
    head: nn.Module | str | None = None,
) -> NodeAblation:
    """The change of class k's logit when the neurons of a node are zeroed in the head, and a random
    baseline of the same size.

    Args:
        model: a classifier in eval mode (its head found by ``fcinterp_fast.heads.head_module``).
        images: (B, C, H, W) preprocessed tensor, or PIL image(s) / path(s).
        targets: list of ``(class, node)`` as for ``explain`` (node None: every neuron).
        fit: the ``HeadFit`` giving the nodes (None: ``fcinterp_fast.fit`` with its defaults).
        n_random: random neuron sets per target (drawn among all D neurons, without replacement).
        seed: seed of the random sets (``torch.Generator().manual_seed(seed)``).
        head: the head module or its name, if ``head_module`` cannot find it.

    Returns:
        ``NodeAblation`` with (B, T) float64 tensors.
    """
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 2:
        raise ValueError(f"n_random must be an int >= 2, got {n_random!r}")
    head_mod = head if isinstance(head, nn.Module) else head_module(model, head)
    W = head_weight(head_mod)
    get_fit = lazy_fit(fit, W)

    names = (fit.class_names if fit is not None else None) or model_class_names(model)
    V, resolved = score_vectors(W, parse_targets(targets), "fc", get_fit, names)  # (T, D): W_kj on the node
    f = head_features(model, images, head_mod).double()  # (B, D)
    Wd = W.detach().double().to(f.device)
    bias = getattr(head_mod, "bias", None)
    classes = torch.tensor([t.cls for t in resolved], device=f.device)
    logit = f @ Wd[classes].T
    if isinstance(bias, torch.Tensor):
        logit = logit + bias.detach().double().to(f.device).flatten()[classes]
    delta = -(f @ V.double().to(f.device).T)  # (B, T)
    generator = torch.Generator().manual_seed(seed)
    D = W.shape[1]
    random_deltas = []
    for target in resolved:
        sets = torch.rand((n_random, D), generator=generator).argsort(dim=1)[:, : target.size]  # (n_random, size)
        masks = torch.zeros((n_random, D), dtype=torch.float64).scatter_(1, sets, 1.0).to(f.device)
        random_deltas.append(-(f @ (masks * Wd[target.cls]).T))  # (B, n_random)
    stacked = torch.stack(random_deltas, dim=1)  # (B, T, n_random)
    return NodeAblation(resolved, logit.cpu(), delta.cpu(), stacked.mean(dim=2).cpu(), stacked.std(dim=2).cpu())


def confidence_change(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets,
    *,
    weights: str = CamOptions.weights,
    fit=None,
    head: nn.Module | str | None = None,
) -> ConfidenceChange:
    """pytorch-grad-cam's ``CamMultImageConfidenceChange`` for targets ``(class, node)``.

    Args:
        model: a classifier in eval mode.
        images: (B, C, H, W) preprocessed tensor (the maps' grid).
        maps: (B, T, H, W) maps in [0, 1] of the T targets (``explain``'s output for ``images``).
        targets: the T ``(class, node)`` targets of the maps.
        weights: omega of the target score, as in ``explain``.
        fit, head: as for ``node_ablation``.

    Returns:
        ``ConfidenceChange`` with (B, T) float64 tensors; the perturbed images (B * T of them) go
        through the model in one forward.
    """
    if not isinstance(images, torch.Tensor) or not isinstance(maps, torch.Tensor):
        raise TypeError("images and maps must be tensors: (B, C, H, W) images and (B, T, H, W) maps")
    if maps.ndim != 4 or images.ndim != 4 or maps.shape[0] != images.shape[0] or maps.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"maps must be (B, T, H, W) on the images' grid {tuple(images.shape)}, got {tuple(maps.shape)}"
        )
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values (maps of a photo at its original size cannot be used)")
    head_mod = head if isinstance(head, nn.Module) else head_module(model, head)
    W = head_weight(head_mod)
    get_fit = lazy_fit(fit, W)

    names = (fit.class_names if fit is not None else None) or model_class_names(model)
    V, resolved = score_vectors(W, parse_targets(targets), weights, get_fit, names)
    B, T = maps.shape[:2]
    if len(resolved) != T:
        raise ValueError(f"maps has {T} targets per image but {len(resolved)} targets were given")
    x = images.detach()
    perturbed = (x[:, None] * maps.to(x)[:, :, None]).flatten(0, 1)  # (B * T, C, H, W)
    f = head_features(model, torch.cat([x, perturbed]), head_mod).double()
    V = V.double().to(f.device)
    score = f[:B] @ V.T  # (B, T)
    after = (f[B:].unflatten(0, (B, T)) * V[None]).sum(dim=2)  # (B, T)
    change = (after - score).cpu()
    return ConfidenceChange(score.cpu(), change, change.neg().clamp(min=0), (change > 0).double())
