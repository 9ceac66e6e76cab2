"""The CAM methods, one small class each over ``BaseCAM``, and ``explain`` (docs/spec.md section 5).

* ``GradCAMPlusPlus``: Grad-CAM++ (Chattopadhyay et al., arXiv 1710.11063) of the clean images.
* ``SmoothGradCAMPlusPlus``: Smooth Grad-CAM++ (Omeiza et al., arXiv 1908.01224): the same over n
  noisy copies of each image, averaging either the maps (``smooth="maps"``) or the derivatives g,
  g^2, g^3 before alpha, with the clean activations (``smooth="derivatives"``, Omeiza's definition).
  Where the target layer feeds only global average pooling, g does not depend on the input, so
  ``"derivatives"`` equals plain Grad-CAM++ (and no noisy copy is evaluated).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BaseCAM, LayerTerms, Reshape, Score, TargetLayers
from .options import CamOptions

__all__ = ["GradCAMPlusPlus", "SmoothGradCAMPlusPlus", "METHOD_CLASSES", "cam_for", "explain", "noisy_copies"]


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ maps; see ``BaseCAM`` for the arguments and the two ways to call it.

    A drop-in for pytorch-grad-cam's ``GradCAMPlusPlus`` (same constructor and call, equal maps):
    ``from fcinterp_fast.cam import GradCAMPlusPlus`` instead of ``from pytorch_grad_cam import
    GradCAMPlusPlus``.

    Args:
        weights: omega in the score of ``maps``' targets: ``"abs"`` |W| (default), ``"fc"`` W (the
            masked logit without bias), ``"ones"`` 1. (The call's ``ClassifierOutputTarget`` is the
            logit; ``NodeTarget`` carries its own weights.)

    Example:
        >>> with GradCAMPlusPlus(model, target_layers=[model.layer4]) as cam:       # doctest: +SKIP
        ...     grayscale = cam(input_tensor, [ClassifierOutputTarget(281)] * len(input_tensor))
        >>> model = fcinterp_fast.models.load("efficientnet_lite0")                  # doctest: +SKIP
        >>> with GradCAMPlusPlus(model) as cam:                                      # doctest: +SKIP
        ...     maps = cam.maps(["dog.jpg"], [("tricycle", "+*"), ("tricycle", "-*")])
    """

    method = "gradcam++"

    def __init__(
        self,
        model: nn.Module,
        target_layers: TargetLayers | None = None,
        reshape_transform: Reshape | None = None,
        *,
        weights: str = CamOptions.weights,
        fit=None,
        head: nn.Module | str | None = None,
        class_names=None,
    ):
        options = CamOptions(method=self.method, weights=weights)
        super().__init__(
            model, target_layers, reshape_transform, options=options, fit=fit, head=head, class_names=class_names
        )

    @classmethod
    def from_options(cls, model: nn.Module, options: CamOptions, **kwargs) -> BaseCAM:
        return cls(model, weights=options.weights, **kwargs)


class SmoothGradCAMPlusPlus(BaseCAM):
    """Smooth Grad-CAM++ maps of targets ``(class, node)``; see ``BaseCAM`` for the arguments.

    Args:
        n_samples: noisy copies per image (>= 1).
        noise: noise level: sigma = noise * (max(x) - min(x)) per image (>= 0).
        smooth: ``"maps"`` averages the relu'd per-copy maps, each with its copy's own activations;
            ``"derivatives"`` averages g, g^2, g^3 over the copies and uses the clean activations.
        generator: ``torch.Generator`` of the noise of calls that pass none (``cam(...)``).
        weights: as for ``GradCAMPlusPlus``.
    """

    method = "smooth"

    def __init__(
        self,
        model: nn.Module,
        target_layers: TargetLayers | None = None,
        reshape_transform: Reshape | None = None,
        *,
        n_samples: int = CamOptions.n_samples,
        noise: float = CamOptions.noise,
        smooth: str = CamOptions.smooth,
        generator: torch.Generator | None = None,
        weights: str = CamOptions.weights,
        fit=None,
        head: nn.Module | str | None = None,
        class_names=None,
    ):
        options = CamOptions(method=self.method, n_samples=n_samples, noise=noise, smooth=smooth, weights=weights)
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            options=options,
            fit=fit,
            head=head,
            generator=generator,
            class_names=class_names,
        )

    @classmethod
    def from_options(cls, model: nn.Module, options: CamOptions, **kwargs) -> BaseCAM:
        return cls(
            model,
            n_samples=options.n_samples,
            noise=options.noise,
            smooth=options.smooth,
            weights=options.weights,
            **kwargs,
        )

    def _inputs(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
        n = self.options.n_samples
        return noisy_copies(x, n, self.options.noise, generator), n

    def _layer_terms(self, x: torch.Tensor, score: Score, generator: torch.Generator | None) -> list[LayerTerms]:
        if self.options.smooth == "maps":
            return super()._layer_terms(x, score, generator)
        # Omeiza's definition: g, g^2, g^3 averaged over the noisy copies, A of the clean image.
        size = (x.shape[-2], x.shape[-1])
        clean = self._reach.forward(x, graph=False)
        if all(self._feeds_mean_pool(i, A, x) for i, A in enumerate(clean.activations)):
            V = score(clean, 1)
            if V.ndim == 3:  # g does not depend on the input: plain Grad-CAM++ of the clean images
                return [LayerTerms(*self._closed_form(A, V, size), None, None, 1) for A in clean.activations]
        n = self.options.n_samples
        terms = []
        copies = noisy_copies(x, n, self.options.noise, generator)
        for A, (_, g) in zip(clean.activations, self._gradients(copies, score, n, size), strict=True):
            g = g.unflatten(1, (x.shape[0], n))  # (T, B, n, C, h, w)
            g1, g2, g3 = ((g**p).mean(dim=2) for p in (1, 2, 3))
            terms.append(LayerTerms(self._grid(A, size), g1, g2, g3, 1))
        return terms


#: The method classes by ``CamOptions.method`` name.
METHOD_CLASSES: dict[str, type[BaseCAM]] = {c.method: c for c in (GradCAMPlusPlus, SmoothGradCAMPlusPlus)}


def cam_for(model: nn.Module, options: CamOptions, **kwargs) -> BaseCAM:
    """The method class of ``options.method`` built with ``options``; ``kwargs`` as for its constructor
    (``target_layers``, ``reshape_transform``, ``fit``, ``head``)."""
    return METHOD_CLASSES[options.method].from_options(model, options, **kwargs)


def explain(
    model: nn.Module,
    images,
    targets=None,
    *,
    method: str = CamOptions.method,
    n_samples: int = CamOptions.n_samples,
    noise: float = CamOptions.noise,
    smooth: str = CamOptions.smooth,
    weights: str = CamOptions.weights,
    fit=None,
    target_layer: nn.Module | str | None = None,
    generator: torch.Generator | None = None,
    head: nn.Module | str | None = None,
    reshape_transform: Reshape | None = None,
    class_names=None,
) -> torch.Tensor | list[torch.Tensor]:
    """Smooth Grad-CAM++ maps of what the neurons of split nodes see (docs/spec.md section 5).

    Args:
        model: a timm classifier, or any model with ``target_layer`` (and ``head``); in eval mode.
        images: (B, C, H, W) preprocessed float tensor, or PIL image(s) / path(s) (maps come back
            at the original size, NaN where the preprocessing's crop cut the image away).
        targets: list of ``(class, node)`` for every image, class an index or name, node
            ``"+++"``, ``"-*"`` ... or None; one such list per image; or None (default): each
            image's top-1 class, every neuron.
        method: ``"smooth"`` (``SmoothGradCAMPlusPlus``) or ``"gradcam++"`` (``GradCAMPlusPlus``).
        n_samples, noise, smooth: Smooth Grad-CAM++'s options (see ``SmoothGradCAMPlusPlus``).
        weights: omega in the target score (see ``GradCAMPlusPlus``).
        fit, target_layer, head, reshape_transform: see ``BaseCAM`` (``target_layer`` is its
            ``target_layers``: a submodule of ``model`` or its name, e.g. ``"layer4"``; None finds
            one: timm's features, else ``find_target_layer(model)``).
        generator: ``torch.Generator`` making the noise reproducible.
        class_names: names for classes given by name in ``targets`` (as ``fit(class_names=...)``
            takes them); None: the fit's, else the model's (``fcinterp_fast.classes``).

    Returns:
        (B, T, H, W) float32 maps in [0, 1] (see ``BaseCAM.maps`` for PIL images / paths).

    Example:
        >>> model = fcinterp_fast.models.load("efficientnet_lite0")                     # doctest: +SKIP
        >>> maps = fcinterp_fast.explain(model, "grace_hopper.jpg",                     # doctest: +SKIP
        ...                              [("military uniform", "+*"), ("military uniform", None)],
        ...                              generator=torch.Generator().manual_seed(0))
    """
    options = CamOptions(method=method, n_samples=n_samples, noise=noise, smooth=smooth, weights=weights)
    with cam_for(
        model,
        options,
        target_layers=target_layer,
        reshape_transform=reshape_transform,
        fit=fit,
        head=head,
        class_names=class_names,
    ) as cam:
        return cam.maps(images, targets, generator=generator)


def noisy_copies(x: torch.Tensor, n: int, noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B * n, C, H, W): n copies of each image plus N(0, sigma^2), sigma = noise * (max - min) of the image.

    The noise is drawn as one ``torch.randn((B, n, C, H, W), dtype=float32)`` on the generator's
    device (the images' device without a generator), so a seeded generator reproduces it; copies of
    one image are adjacent. Computed in float32, returned in x's dtype.
    """
    B = x.shape[0]
    x32 = x.float()
    sigma = noise * (x32.amax(dim=(1, 2, 3)) - x32.amin(dim=(1, 2, 3)))  # (B,)
    device = generator.device if generator is not None else x.device
    eps = torch.randn((B, n, *x.shape[1:]), generator=generator, device=device, dtype=torch.float32).to(x.device)
    copies = x32[:, None] + sigma[:, None, None, None, None] * eps
    return copies.flatten(0, 1).to(x.dtype)
