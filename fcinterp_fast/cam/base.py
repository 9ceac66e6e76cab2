"""``BaseCAM``: what every CAM method shares (docs/spec.md sections 5 and 8), as pytorch-grad-cam's
``base_cam.py``.

The base owns the hooks (``hooks.py``), the targets (``targets.py``), the forward and backward passes,
and the post-processing; a method (``methods.py``) says only which inputs it explains and how their
maps are combined. Two calls share that machinery: ``maps(images, targets)`` (section 5: T targets
for every image, (B, T, H, W)) and ``cam(input_tensor, targets)`` (section 8, pytorch-grad-cam's
call: one target per image, several target layers, ``aug_smooth``, ``eigen_smooth``, (B, H, W)
numpy). How a batch is explained (all T targets together):

1. The images (tensors, or PIL images / paths through the model's own preprocessing) and, for Smooth
   Grad-CAM++, n noisy copies of each go through the model once.
2. The activations A of the target layer are reshaped to a (N, C, h, w) grid (ViT / Swin tokens).
3. Gradients g_t = ds_t/dA of every target score s_t = v_t . f (``targets.score_vectors``; for
   pytorch-grad-cam's ``ClassifierOutputTarget`` v is the head row, where the model returns its
   head's logits; other callable targets take plain autograd of the summed scores):
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

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from .. import _triton
from ..classes import class_names as model_class_names
from ..classes import resolve_class, resolve_class_names
from ..heads.find import head_module, head_weight
from .gradcampp import (
    TRITON_MAX_HW,
    channel_weights,
    check_combine_args,
    combine_torch,
    min_max_scale,
    upsample,
)
from .hooks import LayerHooks, Reached, TimmForward, is_timm, logits_of
from .images import load_images, prepare_images, to_original
from .layers import TargetLayers, class_token_layer, find_target_layer, resolve_target_layers
from .options import CamOptions
from .targets import (
    NodeTarget,
    Target,
    check_fit,
    classifier_output_category,
    parse_targets,
    parse_targets_per_image,
    score_vectors,
)

__all__ = [
    "BaseCAM",
    "TargetLayers",
    "LayerTerms",
    "AUGMENTATIONS",
    "combine",
    "eigen_projection",
    "prepare_images",
    "to_grid",
    "model_device_dtype",
]

# Seed of the random activations that probe whether the rest of the model is a mean pool.
_PROBE_SEED = 20220524
Reshape = Callable[[torch.Tensor], torch.Tensor]


class LayerTerms(NamedTuple):
    """What Grad-CAM++ needs of one target layer: A (N, C, h, w), g (T, N, C, h, w) (any strides),
    Omeiza's averaged g^2, g^3 (or None) and how many adjacent copies of each image N holds."""

    A: torch.Tensor
    g: torch.Tensor
    g2: torch.Tensor | None
    g3: torch.Tensor | None
    copies: int


#: A score: given what the forward reached and the copies per image, either the score vectors
#: (T, N, D) of every input (the fused path) or one scalar whose gradient is wanted (plain autograd).
Score = Callable[[Reached, int], torch.Tensor]

#: pytorch-grad-cam's test-time augmentations for ``aug_smooth`` (ttach: horizontal flip x
#: multiplication by 0.9, 1, 1.1), in ttach's order: (flip, factor).
AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


class BaseCAM:
    """Maps of targets of a classifier head, reusable on one model.

    Two ways to call it:

    * ``cam.maps(images, targets)``: docs/spec.md section 5, (B, T, H, W) torch maps of targets
      ``(class, node)``, each scaled to [0, 1] on its own.
    * ``cam(input_tensor, targets=None, aug_smooth=False, eigen_smooth=False)``: pytorch-grad-cam's
      call (docs/spec.md section 8), one target per image, (B, H, W) float32 numpy.

    Args:
        model: a timm classifier (reached through ``forward_features`` and
            ``forward_head(pre_logits=True)``; CNNs, EfficientNet, ViT, Swin) or any ``nn.Module``
            (torchvision, Hugging Face). It must be in eval mode; it is never modified.
        target_layers: the submodule(s) of ``model`` whose output is A, or their dotted names
            (``"layer4"``, ``"blocks.11.norm1"``), alone or in a list (pytorch-grad-cam's form; several
            layers are combined as pytorch-grad-cam combines them: each layer's map scaled to
            [0, 1], upsampled, averaged, scaled again). None: for timm models the
            ``forward_features`` output, except for transformers that pool the class token (timm
            ``global_pool="token"``, e.g. ViT, DeiT), whose patch tokens get no gradient there: then
            ``model.blocks[-1].norm1``, as pytorch-grad-cam recommends; for other models
            ``layers.find_target_layer(model)`` (the last 4-D feature map, as torchcam finds it).
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
        generator: ``torch.Generator`` for the noise of smoothing methods in calls that do not pass
            their own (``cam(...)`` takes none, as pytorch-grad-cam's call); None: the global RNG.

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
        generator: torch.Generator | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        _check_generator(generator)
        self.model = model
        self.options = options
        self._generator = generator
        head_mod = head if isinstance(head, nn.Module) else head_module(model, head)
        self._W = head_weight(head_mod)  # (K, D) view of the head's weight
        self._fit = None if fit is None else check_fit(fit, self._W)
        layers = resolve_target_layers(model, target_layers)
        if layers is None:
            token = class_token_layer(model)
            if token is not None:
                layers = [token]
            elif not is_timm(model):
                layers = [find_target_layer(model)]
        #: The target layers (None: timm's ``forward_features`` output).
        self.target_layers = layers
        self._reach = TimmForward(model, head_mod) if layers is None else LayerHooks(model, layers, head_mod)
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

    # ------------------------------------------------------------------ docs/spec.md section 5
    def maps(
        self, images, targets=None, *, generator: torch.Generator | None = None, scaled: bool = True
    ) -> torch.Tensor | list[torch.Tensor]:
        """Maps of every target for every image.

        Args:
            images: (B, C, H, W) float tensor (already preprocessed), or a PIL image, a path, or a
                list of them (then ``fcinterp_fast.models.transform(model)`` is applied, and the
                maps are returned at each original image's size, see Returns).
            targets: the same targets for every image: a list of ``(class, node)``, class an index
                or a name (when the model or fit knows class names), node a name of the fit
                (``"+++"``, ``"+-"``), ``"+*"`` / ``"-*"`` (the deepest node of that chain for that
                class) or None (every neuron); or one list of such targets per image (all of one
                length T); or None: each image's top-1 class (T = 1, node None).
            generator: ``torch.Generator`` for the noise of smoothing methods (reproducible maps);
                None uses the constructor's (or the global RNG).
            scaled: False returns the relu'd maps before the final min-max scaling (upsampled, in
                units of score x activation), so that maps can share one colour scale.

        Returns:
            (B, T, H, W) float32 maps in [0, 1] on the model's device, for tensor images. For PIL
            images / paths, each image's maps (T, H0, W0) at its original size: mapped back through
            the preprocessing's resize and centre crop, NaN where the crop cut the image away (the
            model did not see it); stacked to (B, T, H0, W0) when all images have one size, else a
            list of B tensors.
        """
        self._check_ready()
        _check_generator(generator)
        if not isinstance(scaled, bool):
            raise TypeError(f"scaled must be a bool, got {scaled!r}")
        if self.target_layers is not None and len(self.target_layers) > 1:
            raise ValueError(
                f"maps() explains one target layer, got {len(self.target_layers)}; call the object "
                f"(cam(input_tensor, targets)) to combine several layers as pytorch-grad-cam does"
            )
        with torch.inference_mode(False):
            device, dtype = model_device_dtype(self.model)
            x, geometries = load_images(images, self.model, device, dtype)
            V = self._target_vectors(targets, x)[0].to(device)  # (T, B, D)
            size = (x.shape[-2], x.shape[-1])

            def score(reached: Reached, copies: int) -> torch.Tensor:
                return _per_copy(V, copies)

            with self._inference_tensor_error():
                (terms,) = self._layer_terms(x, score, generator or self._generator)
            maps = combine(terms.A, terms.g, copies=terms.copies, size=size, g2=terms.g2, g3=terms.g3, scaled=scaled)
        if geometries is None:
            return maps
        originals = [to_original(m, geometry) for m, geometry in zip(maps, geometries, strict=True)]
        if len({tuple(m.shape) for m in originals}) == 1:
            return torch.stack(originals)
        return originals

    def resolve(self, targets) -> list[Target]:
        """The targets (one list for every image) as ``maps`` reads them: class index, node name in
        the fit, number of neurons."""
        return self._score_vectors(parse_targets(targets))[1]

    def _score_vectors(self, pairs) -> tuple[torch.Tensor, list[Target]]:
        return score_vectors(self._W, pairs, self.options.weights, lambda: self.fit, self._class_names)

    def _target_vectors(self, targets, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """(T, B, D) score vectors of ``maps``' targets for images ``x`` and the resolved targets."""
        B = x.shape[0]
        if targets is None:
            classes = self._top1(x)
            V, resolved = self._score_vectors([(k, None) for k in classes])  # (B, D)
            return V[None], resolved
        per_image = parse_targets_per_image(targets)
        if per_image is None:
            V, resolved = self._score_vectors(parse_targets(targets))
            return V[:, None].expand(V.shape[0], B, V.shape[1]), resolved
        if len(per_image) != B:
            raise ValueError(f"targets has {len(per_image)} lists (one per image) but there are {B} images")
        T = len(per_image[0])
        V, resolved = self._score_vectors([pair for pairs in per_image for pair in pairs])
        return V.unflatten(0, (B, T)).transpose(0, 1), [resolved[b * T : (b + 1) * T] for b in range(B)]

    def _top1(self, x: torch.Tensor) -> list[int]:
        """Each image's top-1 class, from the model's output."""
        logits = logits_of(self._reach.forward(x, graph=False).output)
        if logits is None:
            raise ValueError(
                "targets=None takes each image's top-1 class, but the model's output is not (N, K) logits; "
                "pass the targets"
            )
        return [int(k) for k in logits.argmax(dim=-1)]

    # --------------------------------------------------------------- docs/spec.md section 8
    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """pytorch-grad-cam's call: one map per image, (B, H, W) float32 numpy in [0, 1].

        Args:
            input_tensor: (B, C, H, W) preprocessed float tensor.
            targets: one target per image, or None (each image's top-1 class): pytorch-grad-cam's
                ``ClassifierOutputTarget(k)`` (recognised by its class name and ``category``, so
                pytorch-grad-cam need not be installed; the class logit through the head's row k:
                fused, no backward where the layer feeds global average pooling), ``NodeTarget(k,
                node, weights)`` (a split node's score, fused), or any callable of one image's
                model output (its logits) returning a scalar (plain autograd, one backward).
            aug_smooth: pytorch-grad-cam's test-time augmentation: the mean of the maps of the
                image flipped or not, times 0.9, 1, 1.1 (all six in one forward), flipped back.
            eigen_smooth: the first principal component of the weighted activations instead of
                their channel sum (pytorch-grad-cam's ``get_2d_projection``, numpy's SVD).

        Returns:
            (B, H, W) float32 numpy: per layer relu, min-max scaled to [0, 1], upsampled bilinearly
            (align_corners=False); the mean over layers min-max scaled again (pytorch-grad-cam's
            ``scale_cam_image`` and ``aggregate_multi_layers``).
        """
        self._check_ready()
        if not isinstance(input_tensor, torch.Tensor):
            raise TypeError(
                f"input_tensor must be a (B, C, H, W) tensor, got {type(input_tensor).__name__} (for PIL images "
                f"or paths use .maps(...) or fcinterp_fast.explain)"
            )
        for name, flag in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        with torch.inference_mode(False):
            device, dtype = model_device_dtype(self.model)
            x = prepare_images(input_tensor, self.model, device, dtype)
            B = x.shape[0]
            kinds = None if targets is None else self._dropin_targets(targets, B)
            if aug_smooth:
                x = torch.cat([_augment(x, flip, factor) for flip, factor in AUGMENTATIONS])
                kinds = None if kinds is None else kinds * len(AUGMENTATIONS)
            with self._inference_tensor_error():
                cams = self._dropin_cams(x, kinds, eigen_smooth)  # (N, H, W)
            if aug_smooth:
                per_aug = cams.unflatten(0, (len(AUGMENTATIONS), B))
                cams = torch.stack(
                    [m.flip(-1) if flip else m for m, (flip, _) in zip(per_aug, AUGMENTATIONS, strict=True)]
                ).mean(dim=0)
        return cams.cpu().numpy().astype(np.float32)

    def _dropin_targets(self, targets, B: int) -> list[tuple[str, Any]]:
        """Each image's target as ("logit", k), ("vector", v (D,)) or ("callable", target)."""
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
            raise TypeError(f"targets must be a list with one target per image or None, got {type(targets).__name__}")
        if len(targets) != B:
            raise ValueError(f"targets has {len(targets)} entries but input_tensor has {B} images; give one per image")
        kinds: list[tuple[str, Any]] = []
        for target in targets:
            category = classifier_output_category(target)
            if category is not None:
                kinds.append(("logit", resolve_class(category, self._W.shape[0], None)))
            elif isinstance(target, NodeTarget):
                V, _ = score_vectors(
                    self._W, [(target.k, target.node)], target.weights, lambda: self.fit, self._class_names
                )
                kinds.append(("vector", V[0]))
            elif callable(target):
                kinds.append(("callable", target))
            else:
                raise TypeError(
                    f"a target is pytorch-grad-cam's ClassifierOutputTarget(k), fcinterp_fast.cam.NodeTarget(k, node) "
                    f"or a callable of one image's model output, got {target!r}"
                )
        return kinds

    def _dropin_cams(self, x: torch.Tensor, kinds: list[tuple[str, Any]] | None, eigen_smooth: bool) -> torch.Tensor:
        """(N, H, W) maps of one target per image, combined over layers as pytorch-grad-cam does."""
        size = (x.shape[-2], x.shape[-1])
        if kinds is None and self.options.method != "gradcam++":  # the copies share the clean image's top class
            kinds = [("logit", k) for k in self._top1(x)]
        W = self._W

        def score(reached: Reached, copies: int) -> torch.Tensor:
            logits = logits_of(reached.output)
            own = kinds
            if own is None:
                if logits is None:
                    raise ValueError("targets=None takes each image's top-1 class; the model's output is not logits")
                own = [("logit", int(k)) for k in logits.argmax(dim=-1)]
            per_input = [kind for kind in own for _ in range(copies)]
            f, head_output = reached.features, reached.head_output
            assert f is not None  # forward(graph=True) always gives f
            # the logit's gradient is the head row's only where the model returns its head's output
            fused_logits = logits is not None and head_output is not None and torch.equal(logits, head_output)
            if all(k == "vector" or (k == "logit" and fused_logits) for k, _ in per_input):
                rows = [W[value].detach().float() if k == "logit" else value for k, value in per_input]
                return torch.stack(rows).to(f.device)[None]  # (1, N, D)
            # plain autograd: one scalar whose gradient per image is that image's target's
            if logits is None and any(k == "logit" for k, _ in per_input):
                raise ValueError(
                    f"ClassifierOutputTarget reads the model's logits, but its output is "
                    f"{type(reached.output).__name__}, not an (N, K) tensor (nor an object with .logits)"
                )
            outputs = logits if logits is not None else reached.output
            total = f.new_zeros((), dtype=torch.float32)
            for n, (k, value) in enumerate(per_input):
                if k == "vector":
                    total = total + (value.to(f.device) * f[n].float()).sum()
                elif k == "logit":
                    total = total + outputs[n, value].float()
                else:
                    total = total + torch.as_tensor(value(outputs[n])).float().sum()
            return total

        per_layer = []
        for terms in self._layer_terms(x, score, self._generator):
            weights = channel_weights(terms.A, terms.g, terms.g2, terms.g3)[0]  # (N, C)
            if eigen_smooth:
                cam = eigen_projection(weights, terms.A)
            else:
                cam = torch.einsum("nc,nchw->nhw", weights, terms.A.float())
            cam = cam.clamp(min=0)
            cam = cam.unflatten(0, (-1, terms.copies)).mean(dim=1)  # (B, h, w)
            per_layer.append(upsample(min_max_scale(cam)[:, None], size)[:, 0])
        return min_max_scale(torch.stack(per_layer).clamp(min=0).mean(dim=0))

    # ----------------------------------------------------------------------------- gradients
    def _check_ready(self) -> None:
        if self._released:
            raise RuntimeError(f"this {type(self).__name__} was released; create a new one")
        if self.model.training:
            raise ValueError(
                f"the model is in training mode; call model.eval() first ({type(self).__name__} never switches it)"
            )

    @contextlib.contextmanager
    def _inference_tensor_error(self):
        # The gradient needs autograd, which inference mode switches off for the whole thread. A call
        # may leave it: it modifies nothing, inference tensors it is given (images) can be read
        # outside it, and what it returns is an ordinary tensor. Only tensors the graph from A to f
        # saves must not be inference tensors: never the images, but the parameters of the layers
        # after the target layer if the model was built in inference mode.
        try:
            yield
        except RuntimeError as error:
            if any(t.is_inference() for t in (*self.model.parameters(), *self.model.buffers())):
                raise ValueError(
                    "the model's parameters are inference tensors (it was built or loaded under "
                    "torch.inference_mode()), which the gradient from the head to the target layer cannot "
                    "go through; build or load it outside inference mode (inference mode around the "
                    "explanation itself is fine)"
                ) from error
            raise

    def _layer_terms(self, x: torch.Tensor, score: Score, generator: torch.Generator | None) -> list[LayerTerms]:
        """A and g of every target layer for images ``x``; a method overrides this (or ``_inputs``)
        to say what it explains."""
        inputs, copies = self._inputs(x, generator)
        size = (x.shape[-2], x.shape[-1])
        return [LayerTerms(A, g, None, None, copies) for A, g in self._gradients(inputs, score, copies, size)]

    def _inputs(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
        """What goes through the model for images ``x``, and how many copies of each image that is."""
        return x, 1

    def _gradients(
        self, inputs: torch.Tensor, score: Score, copies: int, size
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A (N, C, h, w) and g (T, N, C, h, w) of every target layer from one forward and at most one
        backward (none for layers that feed only a mean pool, when the score is a vector)."""
        reached = self._reach.forward(inputs, graph=True)
        s = score(reached, copies)
        activations = reached.activations
        if s.ndim == 0:  # plain autograd of one scalar
            grads = torch.autograd.grad(s, activations, allow_unused=True)
            return [
                (self._grid(A.detach(), size), self._grid(_used(g), size).float()[None])
                for A, g in zip(activations, grads, strict=True)
            ]
        assert reached.features is not None  # forward(graph=True) always gives f
        self._check_features(reached.features)
        pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(activations)
        needed = []
        for i, A in enumerate(activations):
            if self._feeds_mean_pool(i, A, inputs):
                pairs[i] = self._closed_form(A, s, size)
            else:
                needed.append(i)
        if needed:
            backward = self._backward([activations[i] for i in needed], reached.features, s, size)
            for i, pair in zip(needed, backward, strict=True):
                pairs[i] = pair
        return [cast(tuple[torch.Tensor, torch.Tensor], pair) for pair in pairs]

    def _closed_form(self, A_raw: torch.Tensor, V: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w) and g (T, N, C, h, w) where A feeds a mean pool: g_t = v_t / (h w), an expanded view."""
        A = self._grid(A_raw.detach(), size)
        N, C, h, w = A.shape
        return A, (V / (h * w))[:, :, :, None, None].expand(V.shape[0], N, C, h, w)

    def _backward(
        self, leaves: list[torch.Tensor], f: torch.Tensor, V: torch.Tensor, size
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A (N, C, h, w) and g_t = d(V_t . f)/dA (T, N, C, h, w) of each of ``leaves`` in one
        backward batched over the T score vectors ``V`` (T, N, D)."""
        T = V.shape[0]
        # g is linear in v: back-propagate v scaled by a power of two to max |v| ~ 1 (exact in
        # float32; keeps float16 / bfloat16 gradients out of the subnormal range) and scale back.
        scale = torch.exp2(torch.log2(V.abs().amax(dim=(1, 2)).clamp(min=torch.finfo(torch.float32).tiny)).round())
        v = (V / scale[:, None, None]).to(f.dtype)
        if T == 1:
            grads = [None if g is None else g[None] for g in torch.autograd.grad(f, leaves, v[0], allow_unused=True)]
        else:
            grads = list(torch.autograd.grad(f, leaves, v, is_grads_batched=True, allow_unused=True))
        pairs = []
        for leaf, grad in zip(leaves, grads, strict=True):
            g = self._grid(_used(grad).flatten(0, 1), size).unflatten(0, (T, leaf.shape[0]))
            pairs.append((self._grid(leaf.detach(), size), g.float() * scale[:, None, None, None, None]))
        return pairs

    def _feeds_mean_pool(self, layer: int, A_raw: torch.Tensor, x: torch.Tensor) -> bool:
        """Whether the head input is the spatial mean of the grid of target layer ``layer``'s output
        (probed once per layer and shape of A).

        The part of the model after the target layer is applied to random activations z, and its
        output compared with the channel means of z's grid: a mean pool gives them up to rounding.
        """
        key = (layer, tuple(A_raw.shape[1:]), A_raw.dtype, A_raw.device)
        if key not in self._mean_pooled:
            z = _probe_input(A_raw[:1])
            f = self._reach.head_input(z, x[:1], layer)
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


def eigen_projection(weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ``eigen_smooth``: the projection of the weighted activations (N, C, h, w)
    on their first principal component, per image, (N, h, w) float32.

    Computed as pytorch-grad-cam's ``get_2d_projection`` does it, with numpy's SVD on the CPU: the
    sign of a singular vector is the LAPACK routine's choice, so another SVD could flip maps.
    """
    weighted = (weights[:, :, None, None] * A.float()).cpu().numpy()
    weighted[np.isnan(weighted)] = 0
    projections = []
    for activations in weighted:
        rows = activations.reshape(activations.shape[0], -1).transpose()
        rows = rows - rows.mean(axis=0)
        _, _, VT = np.linalg.svd(rows, full_matrices=True)
        projections.append((rows @ VT[0, :]).reshape(activations.shape[1:]))
    return torch.from_numpy(np.stack(projections).astype(np.float32)).to(A.device)


def _per_copy(V: torch.Tensor, copies: int) -> torch.Tensor:
    """(T, B, D) -> (T, B * copies, D): each image's vectors repeated for its adjacent copies."""
    if copies == 1:
        return V
    T, B, D = V.shape
    return V[:, :, None].expand(T, B, copies, D).reshape(T, B * copies, D)


def _augment(x: torch.Tensor, flip: bool, factor: float) -> torch.Tensor:
    """ttach's HorizontalFlip then Multiply, as pytorch-grad-cam's ``aug_smooth`` applies them."""
    if flip:
        x = x.flip(3)
    return x * factor if factor != 1 else x


def _used(grad: torch.Tensor | None) -> torch.Tensor:
    if grad is None:
        raise ValueError("the target score does not depend on the target layer's output; choose another target_layer")
    return grad


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


# ----------------------------------------------------------------------------- post-processing
def combine(
    A: torch.Tensor,
    g: torch.Tensor,
    *,
    copies: int,
    size: tuple[int, int],
    g2: torch.Tensor | None = None,
    g3: torch.Tensor | None = None,
    scaled: bool = True,
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
        scaled: False leaves out the final min-max scaling (``gradcampp.combine_torch``).

    Returns:
        (B, T, H, W) float32 maps in [0, 1], on A's device: the Triton kernel on CUDA (where Triton
        can run and the map fits it), ``gradcampp.combine_torch`` elsewhere.
    """
    check_combine_args(A, g, copies, size, g2, g3)
    if scaled and A.is_cuda and A.shape[2] * A.shape[3] <= TRITON_MAX_HW and _triton.unavailable() is None:
        from .gradcampp_triton import combine_triton  # imports triton: only where it can run

        return combine_triton(A, g, copies=copies, size=size, g2=g2, g3=g3)
    return combine_torch(A, g, copies=copies, size=size, g2=g2, g3=g3, scaled=scaled)


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


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer (CPU, float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _probe_input(like: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    return torch.randn(like.shape, generator=generator).to(device=like.device, dtype=like.dtype)
