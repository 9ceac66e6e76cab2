"""``BaseCAM``: what every CAM method shares (docs/spec.md section 5), as pytorch-grad-cam's ``base_cam.py``.

The base owns the hooks (``hooks.py``), the targets (``targets.py``), the forward and backward passes,
and the post-processing; a method (``methods.py``) says only which inputs it explains and how their
maps are combined. How a batch is explained (all T targets together):

1. The images (tensors, or PIL images / paths through the model's own preprocessing) and, for Smooth
   Grad-CAM++, n noisy copies of each go through the model once.
2. The activations A of the target layer are reshaped to a (N, C, h, w) grid (ViT / Swin tokens).
3. Gradients g_t = ds_t/dA of every target score s_t = v_t . f (``targets.score_vectors``):
   * closed form: when A feeds only global average pooling on its way to the head input f, g_t is
     v_t / (h w) everywhere, so no backward runs at all. Whether that holds is probed once per shape
     of A: the part of the model after A is applied to a random A and compared with its spatial mean;
   * otherwise one backward from f to A batched over the T targets (``is_grads_batched``); the graph
     starts at A, so nothing before the target layer is differentiated.
4. ``combine``: alpha, weights, channel sum, relu, mean over copies, upsampling and min-max scaling
   of every map (``gradcampp.py``), as one Triton kernel on CUDA (``gradcampp_triton.py``).

Requirements: the model must be in eval mode (``model.eval()``; in training mode batch norm would mix
the noisy copies and dropout would make maps random) and is never modified: no mode switch, no
parameter gradients, hooks only on the target layer / the head, inert outside calls and removed by
``release()``.

Threads: calls on one model from several threads at once, through one CAM object or several, are
correct and run in parallel (no lock): the hooks of a call record only the forward its own thread
runs (``hooks.LayerHooks``); what else a call writes (the mean-pool probe's cache, a default fit)
is the same whichever thread writes it.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .. import _triton
from ..classes import class_names as model_class_names
from ..classes import resolve_class_names
from ..heads.find import head_module, head_weight
from ..models import transform
from .gradcampp import TRITON_MAX_HW, check_combine_args, combine_torch
from .hooks import LayerHooks, TimmForward, is_timm
from .options import CamOptions
from .targets import Target, check_fit, parse_targets, score_vectors

__all__ = ["BaseCAM", "TargetLayers", "combine", "prepare_images", "to_grid", "model_device_dtype"]

# Seed of the random activations that probe whether the rest of the model is a mean pool.
_PROBE_SEED = 20220524
Reshape = Callable[[torch.Tensor], torch.Tensor]
#: The target layer: a submodule of the model or its dotted name, alone or in a one-element list.
TargetLayers = nn.Module | str | Sequence[nn.Module | str]


class BaseCAM:
    """Maps of targets (class, node) of a classifier head, reusable on one model.

    Args:
        model: a timm classifier (reached through ``forward_features`` and
            ``forward_head(pre_logits=True)``; CNNs, EfficientNet, ViT, Swin) or any ``nn.Module``
            with ``target_layers`` (and ``head`` where ``fcinterp_fast.heads.head_module`` cannot
            find it). It must be in eval mode; it is never modified.
        target_layers: the submodule of ``model`` whose output is A, or its dotted name
            (``"layer4"``, ``"blocks.11.norm1"``), alone or as a one-element list
            (pytorch-grad-cam's form). None: timm's ``forward_features`` output, except for
            transformers that pool the class token (timm ``global_pool="token"``, e.g. ViT, DeiT),
            whose patch tokens get no gradient there: then ``model.blocks[-1].norm1``, as
            pytorch-grad-cam recommends.
        reshape_transform: maps the target layer's output (or its gradient) to (N, C, h, w); None:
            NCHW as is, NHWC for timm models with ``output_fmt == "NHWC"`` (Swin), tokens (N, L, C)
            without the model's ``num_prefix_tokens`` laid on the grid of the image's aspect ratio.
        options: the method and its options (``CamOptions``; the method classes build it).
        fit: the ``HeadFit`` of the model's head giving the nodes; None fits it with the defaults
            of ``fcinterp_fast.fit`` the first time a node is asked for.
        head: the head module (``nn.Linear`` / conv 1x1) or its dotted name; its input is f. None:
            ``fcinterp_fast.heads.head_module(model)``.
        class_names: names for classes given by name (anything ``fit(class_names=...)`` takes);
            None: the fit's, else the model's.

    Precision: float16 / bfloat16 models work; activations and gradients are converted to float32
    before alpha (g^3 underflows in float16), and the backward propagates each score vector scaled
    by a power of two to max |v| = 1 (undone exactly afterwards) to keep half-precision gradients
    out of the subnormal range.

    Calls from several threads at once are correct (see the module's docstring). Under
    ``torch.inference_mode()`` a call leaves inference mode for its own work, since the gradient
    needs autograd; a model built in inference mode works only where no gradient goes through its
    parameters (a ``ValueError`` says so otherwise).
    """

    #: The ``CamOptions.method`` this class computes.
    method: str

    def __init__(
        self,
        model: nn.Module,
        target_layers: TargetLayers | None = None,
        reshape_transform: Reshape | None = None,
        *,
        options: CamOptions,
        fit=None,
        head: nn.Module | str | None = None,
        class_names=None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.options = options
        head_mod = head if isinstance(head, nn.Module) else head_module(model, head)
        self._W = head_weight(head_mod)  # (K, D) view of the head's weight
        self._fit = None if fit is None else check_fit(fit, self._W)
        target_layer = _target_layer(model, target_layers)
        if target_layer is None:
            target_layer = _class_token_layer(model)
        if target_layer is None and not is_timm(model):
            raise ValueError(
                f"{type(model).__name__} has no forward_features / forward_head (timm); pass "
                f"target_layer=<the module whose output to explain> (and head=... if needed)"
            )
        self._reach = TimmForward(model) if target_layer is None else LayerHooks(model, target_layer, head_mod)
        self._reshape = reshape_transform
        K = self._W.shape[0]
        self._class_names: list[str] | None
        if class_names is not None:
            self._class_names = resolve_class_names(class_names, K)
        else:
            self._class_names = (fit.class_names if fit is not None else None) or model_class_names(model, K)
        self._mean_pooled: dict[tuple, bool] = {}
        self._released = False

    @classmethod
    def from_options(cls, model: nn.Module, options: CamOptions, **kwargs) -> BaseCAM:
        """This method built with the fields of ``options`` it uses; ``kwargs`` as for the constructor."""
        raise NotImplementedError

    # --------------------------------------------------------------------------- life cycle
    def release(self) -> None:
        """Remove the hooks; the object cannot be called afterwards."""
        self._reach.release()
        self._released = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> Literal[False]:
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
    def maps(self, images, targets, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Maps of every target for every image.

        Args:
            images: (B, C, H, W) float tensor (already preprocessed), or a PIL image, a path, or a
                list of them (then ``fcinterp_fast.models.transform(model)`` is applied).
            targets: list of ``(class, node)``: class an index or a name (when the model or fit
                knows class names), node a name of the fit (``"+++"``, ``"+-"``), ``"+*"`` / ``"-*"``
                (the deepest node of that chain for that class) or None (every neuron).
            generator: ``torch.Generator`` for the noise of smoothing methods (reproducible maps);
                None uses the global RNG.

        Returns:
            (B, T, H, W) float32 maps in [0, 1] on the model's device.
        """
        if self._released:
            raise RuntimeError(f"this {type(self).__name__} was released; create a new one")
        if self.model.training:
            raise ValueError(
                f"the model is in training mode; call model.eval() first ({type(self).__name__} never switches it)"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        # The gradient needs autograd, which inference mode switches off for the whole thread. A call
        # may leave it: it modifies nothing, inference tensors it is given (images) can be read
        # outside it, and what it returns is an ordinary tensor. Only tensors the graph from A to f
        # saves must not be inference tensors: never the images, but the parameters of the layers
        # after the target layer if the model was built in inference mode.
        with torch.inference_mode(False):
            device, dtype = model_device_dtype(self.model)
            x = prepare_images(images, self.model, device, dtype)
            V, _ = self._score_vectors(targets)
            try:
                return self._maps(x, V.to(device), generator)
            except RuntimeError as error:
                if any(t.is_inference() for t in (*self.model.parameters(), *self.model.buffers())):
                    raise ValueError(
                        "the model's parameters are inference tensors (it was built or loaded under "
                        "torch.inference_mode()), which the gradient from the head to the target layer cannot "
                        "go through; build or load it outside inference mode (inference mode around the "
                        "explanation itself is fine)"
                    ) from error
                raise

    def resolve(self, targets) -> list[Target]:
        """The targets as ``maps`` reads them: class index, node name in the fit, number of neurons."""
        return self._score_vectors(targets)[1]

    def _score_vectors(self, targets) -> tuple[torch.Tensor, list[Target]]:
        return score_vectors(self._W, parse_targets(targets), self.options.weights, lambda: self.fit, self._class_names)

    def _maps(self, x: torch.Tensor, V: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, T, H, W) maps of the score vectors ``V`` (T, D) on the images ``x``; a method overrides
        this (or ``_inputs``) to say what it explains."""
        inputs, copies = self._inputs(x, generator)
        size = (x.shape[-2], x.shape[-1])
        A_raw, f = self._reach.forward(inputs, graph=True)
        if self._feeds_mean_pool(A_raw, x):
            A, g = self._closed_form(A_raw, V, size)
        else:
            A, g = self._backward(A_raw, f, V, size)
        return combine(A, g, copies=copies, size=size)

    def _inputs(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
        """What goes through the model for images ``x``, and how many copies of each image that is."""
        return x, 1

    # ----------------------------------------------------------------------------- gradients
    def _closed_form(self, A_raw: torch.Tensor, V: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w) and g (T, N, C, h, w) where A feeds a mean pool: g_t = v_t / (h w), an expanded view."""
        A = self._grid(A_raw.detach(), size)
        N, C, h, w = A.shape
        return A, (V / (h * w))[:, None, :, None, None].expand(V.shape[0], N, C, h, w)

    def _gradients(self, inputs: torch.Tensor, V: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w) and g (T, N, C, h, w) from one forward and one backward batched over T."""
        A_raw, f = self._reach.forward(inputs, graph=True)
        return self._backward(A_raw, f, V, size)

    def _backward(
        self, leaf: torch.Tensor, f: torch.Tensor, V: torch.Tensor, size
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
            raise ValueError(
                "the head's input does not depend on the target layer's output; choose another target_layer"
            )
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
            pooled = self._grid(z, (x.shape[-2], x.shape[-1])).float().mean(dim=(2, 3))
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
            raise ValueError(f"reshape_transform must give (N, C, h, w) with N = {t.shape[0]}, got {tuple(grid.shape)}")
        return grid


# ----------------------------------------------------------------------------- post-processing
def combine(
    A: torch.Tensor,
    g: torch.Tensor,
    *,
    copies: int,
    size: tuple[int, int],
    g2: torch.Tensor | None = None,
    g3: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grad-CAM++ maps of every (image, target), averaged over copies, upsampled and scaled.

    Args:
        A: (B * copies, C, h, w) activations of every copy, copies of one image adjacent; any float
            dtype and strides.
        g: (T, B * copies, C, h, w) gradients of the T target scores. Any strides: a gradient that
            is constant in space or shared by all copies may be an expanded view (zero strides);
            such dimensions are computed once.
        copies: copies per image whose relu'd maps are averaged (1 for plain Grad-CAM++).
        size: (H, W) of the output maps.
        g2, g3: Omeiza's averaged g^2 and g^3, shaped like g; None computes g^2, g^3 from g.

    Returns:
        (B, T, H, W) float32 maps in [0, 1], on A's device: the Triton kernel on CUDA (where Triton
        can run and the map fits it), ``gradcampp.combine_torch`` elsewhere.
    """
    check_combine_args(A, g, copies, size, g2, g3)
    if A.is_cuda and A.shape[2] * A.shape[3] <= TRITON_MAX_HW and _triton.unavailable() is None:
        from .gradcampp_triton import combine_triton  # imports triton: only where it can run

        return combine_triton(A, g, copies=copies, size=size, g2=g2, g3=g3)
    return combine_torch(A, g, copies=copies, size=size, g2=g2, g3=g3)


def to_grid(t: torch.Tensor, model: nn.Module, image_size: tuple[int, int]) -> torch.Tensor:
    """The default reshape: activations or gradients of the target layer as (N, C, h, w).

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
                f"cannot lay {L} tokens (after {prefix} prefix tokens) on a grid of aspect {H}:{W}; "
                f"pass reshape_transform=..."
            )
        return tokens.unflatten(1, (h, L // h)).permute(0, 3, 1, 2)
    raise ValueError(
        f"the target layer's output has shape {tuple(t.shape)}; pass reshape_transform=... giving (N, C, h, w)"
    )


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
        if 0 in images.shape[1:]:
            raise ValueError(
                f"images has shape {tuple(images.shape)}: each image needs at least one channel, row and column"
            )
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return images.detach().to(device=device, dtype=dtype)
    items = [images] if _is_image(images) else list(images) if isinstance(images, Sequence) else None
    if not items or not all(_is_image(i) for i in items):
        raise TypeError(
            "images must be a (B, C, H, W) tensor, a PIL image, a path, or a non-empty list of PIL images / paths"
        )
    from PIL import Image

    preprocess = transform(model)
    tensors = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(Path(item)) as opened:
                item = opened.convert("RGB")
        tensors.append(preprocess(item.convert("RGB")))
    return torch.stack(tensors).to(device=device, dtype=dtype)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer (CPU, float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _is_image(x) -> bool:
    from PIL import Image

    return isinstance(x, (str, os.PathLike, Image.Image))


def _target_layer(model: nn.Module, target_layers: TargetLayers | None) -> nn.Module | None:
    """The target layer, given alone or as pytorch-grad-cam's list of layers (one, for now), as a
    submodule of ``model`` or its dotted name; None stays None."""
    if target_layers is None:
        return None
    layer = target_layers
    if isinstance(target_layers, (list, tuple)) and len(target_layers) == 1:
        layer = target_layers[0]
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            close = difflib.get_close_matches(layer, [name for name, _ in model.named_modules() if name], n=5)
            children = [name for name, _ in model.named_children()]
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"its children: {', '.join(children)}"
            raise ValueError(f"target_layer {layer!r} is not a submodule of {type(model).__name__}; {hint}") from None
    if not isinstance(layer, nn.Module):
        raise TypeError(
            f"target_layer must be a submodule of the model or its name (alone or in a one-element list), "
            f"got {target_layers!r}"
        )
    if not any(module is layer for module in model.modules()):
        raise ValueError(
            f"target_layer ({type(layer).__name__}) is not part of the model, so it never runs in its "
            f"forward; pass one of the model's own submodules (e.g. model.layer4) or its name"
        )
    return layer


def _class_token_layer(model: nn.Module) -> nn.Module | None:
    """``blocks[-1].norm1`` of timm transformers whose head reads only the class token (the patch
    tokens of ``forward_features`` get no gradient there); None for other models."""
    if not (is_timm(model) and getattr(model, "global_pool", None) == "token"):
        return None
    try:
        blocks: Any = model.blocks  # duck-typed (timm: nn.Sequential); a mismatch raises, caught below
        return blocks[-1].norm1
    except (AttributeError, IndexError, TypeError):
        raise ValueError(
            f"{type(model).__name__} pools the class token, so forward_features' patch tokens get no "
            f"gradient; pass target_layer=<a layer before the last attention>"
        ) from None


def _probe_input(like: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    return torch.randn(like.shape, generator=generator).to(device=like.device, dtype=like.dtype)
