"""``NodeCAM`` and ``explain``: Smooth Grad-CAM++ through the neurons of split nodes (SPEC section 5).

How a batch is explained (all T targets together):

1. The images (tensors, or PIL images / paths through the model's own preprocessing) and, for
   ``method="smooth"``, n noisy copies of each (``noisy_copies``) go through the model once.
2. The activations A of the target layer are reshaped to a (N, C, h, w) grid (ViT / Swin tokens).
3. Gradients g_t = ds_t/dA of every target score s_t = v_t . f (``targets.score_vectors``):
   * closed form: when A feeds only global average pooling on its way to the head input f, g_t is
     v_t / (h w) everywhere, so no backward runs at all. Whether that holds is probed once per image
     size: the part of the model after A is applied to a random A and compared with its spatial mean;
   * otherwise one backward from f to A batched over the T targets (``is_grads_batched``); the graph
     starts at A, so nothing before the target layer is differentiated.
4. ``gradcampp.combine``: alpha, weights, channel sum, relu, mean over copies, upsampling and
   min-max scaling of every map, as one Triton kernel on CUDA.

Requirements: the model must be in eval mode (``model.eval()``; in training mode batch norm would mix
the noisy copies and dropout would make maps random) and is never modified: no mode switch, no
parameter gradients, hooks only on ``target_layer`` / the head, inert outside calls and removed by
``release()``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .._config import check_choice
from .gradcampp import combine
from .targets import WEIGHTS, Target, parse_targets, score_vectors

__all__ = ["NodeCAM", "explain", "noisy_copies", "METHODS", "SMOOTHS"]

METHODS = ("gradcam++", "smooth")
SMOOTHS = ("maps", "derivatives")
# Seed of the random activations that probe whether the rest of the model is a mean pool.
_PROBE_SEED = 20220524


class NodeCAM:
    """Grad-CAM++ / Smooth Grad-CAM++ maps of nodes of a classifier head, reusable on one model.

    Args:
        model: a timm classifier (reached through ``forward_features`` and
            ``forward_head(pre_logits=True)``; CNNs, EfficientNet, ViT, Swin) or any ``nn.Module``
            with ``target_layer`` (and ``head`` where ``fcinterp_fast.heads.head_module`` cannot
            find it). It must be in eval mode; it is never modified.
        method: ``"gradcam++"`` (the clean image only) or ``"smooth"`` (Smooth Grad-CAM++).
        n_samples: noisy copies per image for ``"smooth"`` (>= 1).
        noise: noise level: sigma = noise * (max(x) - min(x)) per image (>= 0).
        smooth: ``"maps"`` averages the relu'd per-copy maps, each with its copy's own activations;
            ``"derivatives"`` (Omeiza's definition) averages g, g^2, g^3 over the copies and uses the
            clean activations. Where A feeds only global average pooling, g does not depend on the
            input, so ``"derivatives"`` equals plain Grad-CAM++ (no noisy copy is evaluated).
        weights: omega in the target score: ``"abs"`` |W| (default), ``"fc"`` W (the masked logit
            without bias), ``"ones"`` 1.
        fit: the ``HeadFit`` of the model's head giving the nodes; None fits it with the defaults of
            ``fcinterp_fast.fit`` the first time a node is asked for.
        target_layer: module whose output is A. None: timm's ``forward_features`` output, except
            for transformers that pool the class token (timm ``global_pool="token"``, e.g. ViT,
            DeiT), whose patch tokens get no gradient there: then ``model.blocks[-1].norm1``, as
            pytorch-grad-cam recommends.
        head: the head module (``nn.Linear`` / conv 1x1) or its dotted name; its input is f. None:
            ``fcinterp_fast.heads.head_module(model)``.
        reshape: maps the target layer's output (or its gradient) to (N, C, h, w); None: NCHW as is,
            NHWC for timm models with ``output_fmt == "NHWC"`` (Swin), tokens (N, L, C) without the
            model's ``num_prefix_tokens`` laid on the grid of the image's aspect ratio.

    Call it as ``cam(images, targets, generator=None) -> (B, T, H, W)``; see ``explain``. Release the
    hooks with ``release()`` or use it as a context manager. Hooks exist only with a
    ``target_layer`` (the ``forward_features`` route needs none) and do nothing outside calls.

    Precision: float16 / bfloat16 models work; activations and gradients are converted to float32
    before alpha (g^3 underflows in float16), and the backward propagates each score vector scaled
    by a power of two to max |v| = 1 (undone exactly afterwards) to keep half-precision gradients
    out of the subnormal range.

    Example:
        >>> model = fcinterp_fast.models.load("efficientnet_lite0")             # doctest: +SKIP
        >>> with NodeCAM(model) as cam:                                         # doctest: +SKIP
        ...     maps = cam(["dog.jpg"], [("tricycle", "+*"), ("tricycle", "-*")])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        method: str = "smooth",
        n_samples: int = 16,
        noise: float = 0.15,
        smooth: str = "maps",
        weights: str = "abs",
        fit=None,
        target_layer: nn.Module | None = None,
        head: nn.Module | str | None = None,
        reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        _check_options(method, n_samples, noise, smooth, weights)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        from ..heads import head_module, head_weight
        from ..models import class_names

        self.model = model
        self.method, self.n_samples, self.noise, self.smooth, self.weights = method, n_samples, noise, smooth, weights
        self._fit = fit
        head_mod = head_module(model, head) if not isinstance(head, nn.Module) else head
        self._W = head_weight(head_mod)  # (K, D) view of the head's weight
        if target_layer is None:
            target_layer = _class_token_layer(model)
        if target_layer is None and not _is_timm(model):
            raise ValueError(
                f"{type(model).__name__} has no forward_features / forward_head (timm); pass "
                f"target_layer=<the module whose output to explain> (and head=... if needed)"
            )
        self._reach = _TimmForward(model) if target_layer is None else _LayerHooks(model, target_layer, head_mod)
        self._reshape = reshape
        self._class_names = (fit.class_names if fit is not None else None) or class_names(model)
        self._mean_pooled: dict[tuple, bool] = {}
        self._released = False

    # --------------------------------------------------------------------------- life cycle
    def release(self) -> None:
        """Remove the hooks; the object cannot be called afterwards."""
        self._reach.release()
        self._released = True

    def __enter__(self) -> "NodeCAM":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    @property
    def class_names(self) -> list[str] | None:
        """Class names of the fit or the model (timm ImageNet models), used for classes given by name."""
        return self._class_names

    @property
    def fit(self):
        """The ``HeadFit`` whose nodes are explained (fitted with defaults on first use)."""
        if self._fit is None:
            from ..api import fit

            self._fit = fit(self._W)
        return self._fit

    # ------------------------------------------------------------------------------ the call
    def __call__(self, images, targets, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Maps of every target for every image.

        Args:
            images: (B, C, H, W) float tensor (already preprocessed), or a PIL image, a path, or a
                list of them (then ``fcinterp_fast.models.transform(model)`` is applied).
            targets: list of ``(class, node)``: class an index or a name (when the model or fit
                knows class names), node a name of the fit (``"+++"``, ``"+-"``), ``"+*"`` / ``"-*"``
                (the deepest node of that chain for that class) or None (every neuron).
            generator: ``torch.Generator`` for the noise (reproducible maps); None uses the global RNG.

        Returns:
            (B, T, H, W) float32 maps in [0, 1] on the model's device.
        """
        return self._explain(images, targets, generator)[0]

    def explain_targets(self, images, targets, *, generator=None) -> tuple[torch.Tensor, list[Target]]:
        """Like calling the object, and also the resolved targets (node names, sizes)."""
        return self._explain(images, targets, generator)

    def _explain(self, images, targets, generator):
        if self._released:
            raise RuntimeError("this NodeCAM was released; create a new one")
        if self.model.training:
            raise ValueError("the model is in training mode; call model.eval() first (NodeCAM never switches it)")
        device, dtype = _device_dtype(self.model)
        x = prepare_images(images, self.model, device, dtype)
        V, resolved = score_vectors(self._W, parse_targets(targets), self.weights, lambda: self.fit, self._class_names)
        V = V.to(device)
        size = tuple(x.shape[-2:])
        smooth = self.method == "smooth"

        if smooth and self.smooth == "derivatives":
            A_raw, _ = self._reach.forward(x, graph=False)
            if not self._feeds_mean_pool(A_raw, x):
                _, g = self._gradients(noisy_copies(x, self.n_samples, self.noise, generator), V, size)
                g = g.float().unflatten(1, (x.shape[0], self.n_samples))  # (T, B, n, C, h, w)
                g1, g2, g3 = ((g**p).mean(dim=2) for p in (1, 2, 3))
                return combine(self._grid(A_raw, size), g1, copies=1, size=size, g2=g2, g3=g3), resolved
            inputs, copies = x, 1  # g does not depend on the input: plain Grad-CAM++ on the clean image
        else:
            inputs, copies = (noisy_copies(x, self.n_samples, self.noise, generator), self.n_samples) if smooth else (x, 1)
            A_raw, f = self._reach.forward(inputs, graph=True)
            if not self._feeds_mean_pool(A_raw, x):
                return combine(*self._backward(A_raw, f, V, size), copies=copies, size=size), resolved
        A = self._grid(A_raw.detach(), size)
        N, C, h, w = A.shape
        g = (V / (h * w))[:, None, :, None, None].expand(V.shape[0], N, C, h, w)  # the closed form
        return combine(A, g, copies=copies, size=size), resolved

    # ----------------------------------------------------------------------------- gradients
    def _gradients(self, inputs: torch.Tensor, V: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w) and g (T, N, C, h, w) from one forward and one backward batched over T."""
        return self._backward(*self._reach.forward(inputs, graph=True), V, size)

    def _backward(self, leaf: torch.Tensor, f: torch.Tensor, V: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w) and g_t = d(V_t . f)/dA (T, N, C, h, w) in one backward batched over targets."""
        self._check_features(f)
        T = V.shape[0]
        # g is linear in v: back-propagate v scaled by a power of two to max |v| ~ 1 (exact in
        # float32; keeps float16 / bfloat16 gradients out of the subnormal range) and scale back.
        scale = torch.exp2(torch.log2(V.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)).round())
        v = (V / scale[:, None]).to(f.dtype)
        if T == 1:
            (grad,) = torch.autograd.grad(f, leaf, v[0].expand_as(f), allow_unused=True)
            grad = None if grad is None else grad[None]
        else:
            (grad,) = torch.autograd.grad(
                f, leaf, v[:, None, :].expand(T, *f.shape), is_grads_batched=True, allow_unused=True
            )
        if grad is None:
            raise ValueError("the head's input does not depend on the target layer's output; choose another target_layer")
        g = self._grid(grad.flatten(0, 1), size).unflatten(0, (T, leaf.shape[0]))
        return self._grid(leaf.detach(), size), g.float() * scale[:, None, None, None, None]

    def _feeds_mean_pool(self, A_raw: torch.Tensor, x: torch.Tensor) -> bool:
        """Whether the head input is the spatial mean of the grid of A (probed once per shape of A).

        The part of the model after the target layer is applied to random activations z, and its
        output compared with the channel means of z's grid: a mean pool gives them up to rounding.
        """
        key = (tuple(A_raw.shape[1:]), A_raw.dtype, A_raw.device)
        if key not in self._mean_pooled:
            z = _probe_input(A_raw[:1])
            f = self._reach.head_input(z, x[:1])
            self._check_features(f)
            pooled = self._grid(z, tuple(x.shape[-2:])).float().mean(dim=(2, 3))
            tolerance = 16 * torch.finfo(z.dtype).eps * float(z.abs().max())
            self._mean_pooled[key] = f.shape == pooled.shape and bool((f.float() - pooled).abs().max() <= tolerance)
        return self._mean_pooled[key]

    def _check_features(self, f: torch.Tensor) -> None:
        if f.ndim != 2 or f.shape[1] != self._W.shape[1]:
            raise ValueError(
                f"the head's input has shape {tuple(f.shape)}, but the head weight is {tuple(self._W.shape)}: "
                f"expected (N, {self._W.shape[1]}); pass the right head=..."
            )

    def _grid(self, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        grid = self._reshape(t) if self._reshape is not None else to_grid(t, self.model, size)
        if grid.ndim != 4 or grid.shape[0] != t.shape[0]:
            raise ValueError(f"reshape must give (N, C, h, w) with N = {t.shape[0]}, got {tuple(grid.shape)}")
        return grid


def explain(
    model: nn.Module,
    images,
    targets,
    *,
    method: str = "smooth",
    n_samples: int = 16,
    noise: float = 0.15,
    smooth: str = "maps",
    weights: str = "abs",
    fit=None,
    target_layer: nn.Module | None = None,
    generator: torch.Generator | None = None,
    head: nn.Module | str | None = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Smooth Grad-CAM++ maps of what the neurons of split nodes see (SPEC section 5).

    Args:
        model: a timm classifier, or any model with ``target_layer`` (and ``head``); in eval mode.
        images: (B, C, H, W) preprocessed float tensor, or PIL image(s) / path(s).
        targets: list of ``(class, node)``, class an index or name, node ``"+++"``, ``"-*"`` ... or None.
        method, n_samples, noise, smooth, weights, fit, target_layer, head, reshape: see ``NodeCAM``.
        generator: ``torch.Generator`` making the noise reproducible.

    Returns:
        (B, T, H, W) float32 maps in [0, 1].

    Example:
        >>> model = fcinterp_fast.models.load("efficientnet_lite0")                     # doctest: +SKIP
        >>> maps = fcinterp_fast.explain(model, "grace_hopper.jpg",                     # doctest: +SKIP
        ...                              [("military uniform", "+*"), ("military uniform", None)],
        ...                              generator=torch.Generator().manual_seed(0))
    """
    options = dict(method=method, n_samples=n_samples, noise=noise, smooth=smooth, weights=weights, fit=fit)
    with NodeCAM(model, target_layer=target_layer, head=head, reshape=reshape, **options) as cam:
        return cam(images, targets, generator=generator)


# ------------------------------------------------------------------------------------ helpers
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


def to_grid(t: torch.Tensor, model: nn.Module, image_size: tuple[int, int]) -> torch.Tensor:
    """The default ``reshape``: activations or gradients of the target layer as (N, C, h, w).

    (N, C, h, w) stays; (N, h, w, C) for timm models with ``output_fmt == "NHWC"`` (Swin) is
    permuted; tokens (N, L, C) lose the model's ``num_prefix_tokens`` (class / distillation /
    register tokens) and are laid on an h x w grid of the image's aspect ratio.
    """
    if t.ndim == 4:
        return t.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else t
    if t.ndim == 3:
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        tokens = t[:, prefix:]
        L = tokens.shape[1]
        H, W = image_size
        h = max(1, round(math.sqrt(L * H / W)))
        if L == 0 or L % h:
            raise ValueError(
                f"cannot lay {L} tokens (after {prefix} prefix tokens) on a grid of aspect {H}:{W}; pass reshape=..."
            )
        return tokens.unflatten(1, (h, L // h)).permute(0, 3, 1, 2)
    raise ValueError(f"the target layer's output has shape {tuple(t.shape)}; pass reshape=... giving (N, C, h, w)")


def prepare_images(images, model: nn.Module, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, H, W) tensor on the model's device and dtype; PIL images / paths go through the model's
    own preprocessing (``fcinterp_fast.models.transform``). The input is never modified."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            hint = " (one image: images[None])" if images.ndim == 3 else ""
            raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}{hint}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a float tensor (preprocessed), got {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return images.detach().to(device=device, dtype=dtype)
    items = [images] if _is_image(images) else list(images) if isinstance(images, Sequence) else None
    if not items or not all(_is_image(i) for i in items):
        raise TypeError(
            "images must be a (B, C, H, W) tensor, a PIL image, a path, or a non-empty list of PIL images / paths"
        )
    from PIL import Image

    from ..models import transform

    preprocess = transform(model)
    tensors = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(Path(item)) as opened:
                item = opened.convert("RGB")
        tensors.append(preprocess(item.convert("RGB")))
    return torch.stack(tensors).to(device=device, dtype=dtype)


def _is_image(x) -> bool:
    from PIL import Image

    return isinstance(x, (str, os.PathLike, Image.Image))


def _check_options(method, n_samples, noise, smooth, weights) -> None:
    check_choice("method", method, METHODS)
    check_choice("smooth", smooth, SMOOTHS)
    check_choice("weights", weights, WEIGHTS)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _is_timm(model: nn.Module) -> bool:
    return callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None))


def _class_token_layer(model: nn.Module) -> nn.Module | None:
    """``blocks[-1].norm1`` of timm transformers whose head reads only the class token (the patch
    tokens of ``forward_features`` get no gradient there); None for other models."""
    if not (_is_timm(model) and getattr(model, "global_pool", None) == "token"):
        return None
    try:
        return model.blocks[-1].norm1
    except (AttributeError, IndexError, TypeError):
        raise ValueError(
            f"{type(model).__name__} pools the class token, so forward_features' patch tokens get no "
            f"gradient; pass target_layer=<a layer before the last attention>"
        ) from None


def _probe_input(like: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    return torch.randn(like.shape, generator=generator).to(device=like.device, dtype=like.dtype)


class _TimmForward:
    """A = ``forward_features(x)``, f = ``forward_head(A, pre_logits=True)``: no hooks needed."""

    def __init__(self, model: nn.Module):
        self.model = model

    def forward(self, x: torch.Tensor, *, graph: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A (a leaf, without autograd history) and, with ``graph``, f with a graph from A."""
        with torch.no_grad():
            A = self.model.forward_features(x)
        if not graph:
            return A, None
        A.requires_grad_()
        with torch.enable_grad():
            return A, self.model.forward_head(A, pre_logits=True)

    def head_input(self, z: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """f when the target layer outputs ``z``."""
        with torch.no_grad():
            return self.model.forward_head(z, pre_logits=True)

    def release(self) -> None:
        pass


class _LayerHooks:
    """A = output of ``target_layer``, f = input of ``head``, caught by hooks during a forward.

    The hooks act only inside ``forward`` / ``head_input``. The forward runs without autograd up to
    the target layer; with ``graph`` its hook switches autograd on and returns a detached leaf, so
    the graph spans only target layer -> head.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module, head: nn.Module):
        self.model = model
        self._mode = None  # None (hooks inert), "plain", "graph" or a tensor substituted for A
        self._captured: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        self._handles = [
            target_layer.register_forward_hook(self._on_target),
            head.register_forward_pre_hook(self._on_head),
        ]

    def _on_target(self, module, inputs, output):
        if self._mode is None:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"target layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
        if self._captured is not None:
            raise ValueError(f"target layer {type(module).__name__} ran twice in one forward; choose a module used once")
        if isinstance(self._mode, torch.Tensor):
            output = self._mode
        elif self._mode == "graph":
            torch.set_grad_enabled(True)  # restored by the no_grad context of _run
            output = output.detach().requires_grad_()
        self._captured = output
        return output

    def _on_head(self, module, inputs):
        if self._mode is None:
            return None
        if self._captured is None:
            raise ValueError("the head ran before the target layer; the target layer must come before the head")
        f = inputs[0]
        self._features = f.flatten(1) if f.ndim == 4 and tuple(f.shape[2:]) == (1, 1) else f
        return None

    def _run(self, x: torch.Tensor, mode) -> tuple[torch.Tensor, torch.Tensor]:
        self._mode, self._captured, self._features = mode, None, None
        try:
            with torch.no_grad():
                self.model(x)
            if self._captured is None or self._features is None:
                raise ValueError("the target layer or the head did not run in the model's forward")
            return self._captured, self._features
        finally:
            self._mode, self._captured, self._features = None, None, None

    def forward(self, x: torch.Tensor, *, graph: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        A, f = self._run(x, "graph" if graph else "plain")
        return A, f if graph else None

    def head_input(self, z: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self._run(x1, z)[1]

    def release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
