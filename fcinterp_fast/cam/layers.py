"""Which layer an explanation looks at: target layers given by the user, and the automatic choice.

``find_target_layer(model)`` finds one where none is given, as torchcam's ``locate_candidate_layer``
does: one forward of a blank image records the output shape of every module, and the layer is the
last one (in the order modules finish) whose output is a 4-D map with a spatial size above 1, i.e.
the last feature map before global pooling (torchvision ``layer4[-1]``, timm EfficientNet ``bn2``,
Hugging Face ResNet's last stage). Transformers whose head reads only the class token (timm
``global_pool="token"``: ViT, DeiT) get ``blocks[-1].norm1`` instead, as pytorch-grad-cam
recommends; models whose last 4-D map is turned into tokens afterwards (a ViT's patch embedding)
have no such layer, and a ValueError asks for ``target_layer``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .hooks import is_timm

__all__ = ["TargetLayers", "find_target_layer", "resolve_target_layers", "class_token_layer"]

#: Target layers: a submodule of the model or its dotted name, alone or in a list (pytorch-grad-cam's form).
TargetLayers = nn.Module | str | Sequence[nn.Module | str]

# Input of the shape-recording forward when the model does not say its own.
_DEFAULT_INPUT = (3, 224, 224)


def find_target_layer(model: nn.Module) -> nn.Module:
    """The layer an explanation of ``model`` looks at when none is given.

    Args:
        model: a classifier in eval mode (torchvision, timm, Hugging Face ``*ForImageClassification``
            or any model taking one (1, C, H, W) image tensor).

    Returns:
        A submodule of ``model``: ``blocks[-1].norm1`` for timm transformers pooling the class
        token, else the last module whose output is a 4-D spatial map (see the module docstring).

    Raises:
        ValueError: the model is in training mode (the probe forward would update batch-norm
            statistics), or it has no 4-D map that is not turned into tokens later (ask for
            ``target_layer``).
    """
    token = class_token_layer(model)
    if token is not None:
        return token
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first (finding the target layer runs it)")
    shapes: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def record(name: str, module: nn.Module):
        def hook(mod, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.append((name, module, tuple(output.shape)))

        return hook

    handles = [
        module.register_forward_hook(record(name, module))
        for name, module in model.named_modules()
        if name and type(module) is not nn.Sequential
    ]
    try:
        parameter = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros((1, *_input_shape(model)), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    for position in range(len(shapes) - 1, -1, -1):
        name, module, shape = shapes[position]
        if len(shape) == 4 and any(v != 1 for v in shape[2:]):
            tokens_after = [n for n, _, s in shapes[position + 1 :] if len(s) == 3]
            if tokens_after:
                break
            return module
    raise ValueError(
        f"{type(model).__name__} has no 4-D feature map before its pooling (a transformer's tokens?), so no "
        f"target layer can be chosen for it; pass target_layer=<the module to explain> (and "
        f"reshape_transform=... to lay its tokens on a grid)"
    )


def resolve_target_layers(model: nn.Module, target_layers: TargetLayers | None) -> list[nn.Module] | None:
    """The target layers as submodules of ``model``: one given alone, or a list of them (modules of
    ``model`` or their dotted names); None stays None."""
    if target_layers is None:
        return None
    items = list(target_layers) if isinstance(target_layers, (list, tuple)) else [target_layers]
    if not items:
        raise ValueError("target_layers is empty; give at least one layer (or None to find one)")
    return [_one_layer(model, item, target_layers) for item in items]


def _one_layer(model: nn.Module, layer, given) -> nn.Module:
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
            f"target_layer must be a submodule of the model or its name (alone or in a list), got {given!r}"
        )
    if not any(module is layer for module in model.modules()):
        raise ValueError(
            f"target_layer ({type(layer).__name__}) is not part of the model, so it never runs in its "
            f"forward; pass one of the model's own submodules (e.g. model.layer4) or its name"
        )
    return layer


def class_token_layer(model: nn.Module) -> nn.Module | None:
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


def _input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model expects: timm's ``pretrained_cfg``, a Hugging Face ``config``, or 3 x 224 x 224."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and len(cfg.get("input_size") or ()) == 3:
        c, h, w = cfg["input_size"]
        return int(c), int(h), int(w)
    config = getattr(model, "config", None)
    size = getattr(config, "image_size", None)
    if isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 2):
        h, w = (size, size) if isinstance(size, int) else size
        return int(getattr(config, "num_channels", 3)), int(h), int(w)
    return _DEFAULT_INPUT
