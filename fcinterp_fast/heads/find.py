"""``head_weight()``: find the (K, D) weight of a classifier head in whatever the user has."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..classes import class_names as model_class_names
from .files import HEAD_FILE_SUFFIXES, open_file_head, read_file_head
from .names import HEAD_MODULE_NAMES, head_candidates, module_path
from .source import HeadSource, TensorSource, check_head_tensor

__all__ = ["head_weight", "head_module", "open_head"]


def head_weight(obj, name: str | None = None) -> torch.Tensor:
    """The (K, D) weight of a classifier head, without copying or modifying it.

    Args:
        obj: a tensor or numpy array (K, D) / (K, D, 1, 1); an ``nn.Linear`` or conv 1x1 module; a
            timm model (``get_classifier()``, the first of tuple heads such as DeiT's
            ``(head, head_dist)``), a torchvision classifier, a Hugging Face model (its output
            embeddings, e.g. ``lm_head``); or a path to a ``.safetensors`` / ``.pth`` / ``.npy``
            file, a Hugging Face folder or a sharded checkpoint's ``*.index.json``.
        name: for modules, the dotted name of the head submodule or parameter (``"head_dist"``,
            ``"classifier.weight"``); for files, the tensor name (``"lm_head.weight"``).

    Returns:
        (K, D) tensor, a view of the stored weight (conv kernels flattened); numpy views with
        negative strides are copied.

    Raises:
        TypeError / ValueError: unsupported object, missing or ambiguous tensor, wrong shape or
            dtype; file errors list the candidate tensors.
    """
    if isinstance(obj, torch.Tensor):
        return check_head_tensor(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"head array has dtype {obj.dtype}; expected float16, float32 or float64")
        if any(stride < 0 for stride in obj.strides):  # e.g. a[::-1]: torch has no negative strides
            obj = obj.copy()
        return check_head_tensor(torch.from_numpy(obj))
    if isinstance(obj, (str, os.PathLike)):
        return read_file_head(Path(obj), name)
    if isinstance(obj, nn.Module):
        return _module_weight(head_module(obj, name), name)
    raise TypeError(
        f"cannot find a head in a {type(obj).__name__}; pass a tensor, numpy array, nn.Module or a "
        f"path to a {'/'.join(HEAD_FILE_SUFFIXES)} file"
    )


def head_module(model: nn.Module, name: str | None = None) -> nn.Module:
    """The head submodule of ``model`` (see ``head_weight``); ``name`` selects one explicitly."""
    if name is not None:
        target = name[: -len(".weight")] if name.endswith(".weight") else name
        try:
            return model.get_submodule(target) if target else model
        except AttributeError:
            modules = [n for n, m in model.named_modules() if _is_head_like(m)]
            raise ValueError(
                f"{type(model).__name__} has no submodule {target!r}; linear / conv 1x1 candidates: "
                f"{', '.join(modules[-10:]) or 'none'}"
            ) from None
    if _is_head_like(model):
        return model
    # nn.Module types attributes as Tensor | Module; what hasattr finds below is the model's own method
    if hasattr(model, "get_classifier"):  # timm
        head = cast(Callable[[], Any], model.get_classifier)()
        if isinstance(head, (tuple, list)):  # e.g. DeiT distilled: (head, head_dist)
            head = head[0]
        return _last_head_like(head, f"{type(model).__name__}.get_classifier()")
    if hasattr(model, "get_output_embeddings"):  # Hugging Face
        head = cast(Callable[[], Any], model.get_output_embeddings)()
        if head is not None:
            return head
    for attribute in HEAD_MODULE_NAMES:  # torchvision and friends
        if isinstance(getattr(model, attribute, None), nn.Module):
            return _last_head_like(getattr(model, attribute), f"{type(model).__name__}.{attribute}")
    return _named_head(model)


def _named_head(model: nn.Module) -> nn.Module:
    """The one linear / conv 1x1 layer of ``model`` in a module named like a head (whole names:
    ``fc`` is not ``c_fc``), its only such layer, or the last layer of a bare ``Sequential`` (whose
    layers have only indices for names); otherwise a ``ValueError`` listing them."""
    layers = {name: m for name, m in model.named_modules() if _is_head_like(m)}
    if not layers:
        return _last_head_like(model, type(model).__name__)  # raises: no layer at all
    heads = head_candidates(list(layers), HEAD_MODULE_NAMES)
    if len(heads) == 1:
        return layers[heads[0]]
    if not heads and (len(layers) == 1 or all(not module_path(n) for n in layers)):
        return list(layers.values())[-1]  # the only layer, or the last of a bare Sequential
    listed = heads or list(layers)
    shown = ", ".join(f"{n} {tuple(layers[n].weight.shape)}" for n in listed[-12:])
    raise ValueError(
        f"{type(model).__name__} has "
        + (
            f"{len(heads)} possible heads"
            if heads
            else "no classifier head (no module named " + ", ".join(HEAD_MODULE_NAMES) + ")"
        )
        + f"; it holds {len(layers)} linear / conv 1x1 layers ({'the last: ' if len(listed) > 12 else ''}{shown}); "
        f"choose one with name=..."
    )


def _is_head_like(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and module.groups == 1


def _last_head_like(module: nn.Module, where: str) -> nn.Module:
    heads = [m for m in module.modules() if _is_head_like(m)]
    if not heads:
        raise ValueError(
            f"{where} holds no nn.Linear or conv 1x1 layer (a model built with num_classes=0 has no "
            f"head); pass the head module or its weight, or name=..."
        )
    return heads[-1]


def _module_weight(module: nn.Module, name: str | None) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"head module {type(module).__name__} ({name or 'found'}) has no weight tensor")
    return check_head_tensor(weight, what=f"weight of {type(module).__name__}")


def open_head(obj, name: str | None = None, with_names: bool = True) -> tuple[HeadSource, list[str] | None]:
    """A ``HeadSource`` for ``fit`` and the class names when the object knows them (a source
    already opened is passed through: the command line opens a file once to check it first).
    ``with_names=False`` skips looking for names (the caller has its own)."""
    if isinstance(obj, HeadSource):
        return obj, None
    if isinstance(obj, (str, os.PathLike)):
        return open_file_head(Path(obj), name), None
    source = TensorSource(head_weight(obj, name))
    names = model_class_names(obj, source.shape[0]) if with_names and isinstance(obj, nn.Module) else None
    return source, names
