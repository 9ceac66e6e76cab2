"""Class names and class lookup: a class given by index or by (ImageNet-style) name.

Where names come from, first found wins (docs/spec.md section 6):

1. what the user passes (``fit(..., class_names=)``, ``explain``, ``fcinterp fit --class-names``):
   ``resolve_class_names``;
2. a Hugging Face model's ``config.id2label``, or the ``config.json`` of a checkpoint folder (or
   beside a checkpoint file) for heads given by path, unless its labels are the generic
   ``LABEL_0``, ``LABEL_1`` ... that ``transformers`` invents;
3. torchvision's weight metadata (``weights.meta["categories"]``) for a torchvision classifier
   whose head has that many rows (every torchvision ImageNet weight has the same 1000 categories);
4. timm's ImageNet class descriptions (``timm.data.ImageNetInfo``, shipped with timm) for a timm
   model whose head has the rows of an ImageNet subset (1000, 21843, ...).

``resolve_class`` turns what a user typed (an index, a negative index, a name or one of its
comma-separated synonyms) into a row index.
"""

from __future__ import annotations

import difflib
import functools
import json
import operator
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from .diagnostics import logger, warn

__all__ = [
    "class_names",
    "resolve_class_names",
    "config_class_names",
    "find_class",
    "resolve_class",
    "class_from_text",
]

# The kinds of torchvision models that are not classifiers (their heads are not ImageNet's).
_TORCHVISION_NOT_CLASSIFIERS = ("detection", "segmentation", "video", "optical_flow")


def class_names(model: nn.Module, n_classes: int | None = None) -> list[str] | None:
    """The class names ``model`` carries (sources 2 to 4 of the module docstring), or None.

    Args:
        model: a Hugging Face, torchvision or timm model (any other gives None).
        n_classes: K of the head that is fitted; names of another length are not this head's
            (e.g. a language model's generic ``id2label``): a ``FitWarning`` and None.
    """
    found = _model_names(model)
    if found is None:
        return None
    names, origin = found
    if n_classes is not None and len(names) != n_classes:
        warn(f"{origin} gives {len(names)} class names but the head has {n_classes} rows: the names are not used")
        return None
    logger.info("class names: %s", origin)
    return names


def _model_names(model: nn.Module) -> tuple[list[str], str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, Mapping):
        try:
            names = _id2label_names(id2label, f"{type(model).__name__}.config.id2label")
        except ValueError as error:  # the head can be fitted without names, as for a config.json
            warn(f"the class names of {type(model).__name__}.config.id2label are not used: {error}")
            names = None
        if names is not None:
            return names, f"{type(model).__name__}.config.id2label"
    module = type(model).__module__
    if module.startswith("torchvision.models.") and not any(
        f".{kind}" in module for kind in _TORCHVISION_NOT_CLASSIFIERS
    ):
        n_classes = _torchvision_classes(model)
        if n_classes is not None and n_classes in _torchvision_categories():
            return list(_torchvision_categories()[n_classes]), "torchvision's weight metadata (categories)"
    if hasattr(model, "pretrained_cfg"):
        import timm.data

        subset = timm.data.infer_imagenet_subset(model)
        if subset is not None:
            return list(timm.data.ImageNetInfo(subset).label_descriptions()), f"timm's ImageNet info ({subset})"
    return None


def _torchvision_classes(model: nn.Module) -> int | None:
    """Rows of a torchvision classifier's head: its last linear or conv 1x1 layer."""
    heads = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return heads[-1].weight.shape[0] if heads else None


@functools.cache
def _torchvision_categories() -> dict[int, tuple[str, ...]]:
    """The categories of torchvision's classification weights by their count, where they agree."""
    import torchvision.models

    found: dict[int, set[tuple[str, ...]]] = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        for weights in torchvision.models.get_model_weights(name):
            categories = weights.meta.get("categories")
            if categories:
                found.setdefault(len(categories), set()).add(tuple(categories))
    return {n: next(iter(lists)) for n, lists in found.items() if len(lists) == 1}


def _id2label_names(id2label: Mapping, origin: str) -> list[str] | None:
    """Names from an ``id2label`` mapping (keys 0..K-1, as ints or their text); None for the generic
    ``LABEL_k`` labels. Raises ValueError when the keys are not 0..K-1 or a label is not text."""
    try:
        labels = {operator.index(k) if not isinstance(k, str) else int(k): v for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{origin} must map class indices 0..K-1 to names, got keys {list(id2label)[:5]}") from None
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(
            f"{origin} must map every class index 0..{len(labels) - 1} to a name, got {sorted(labels)[:10]}"
        )
    if not all(isinstance(v, str) for v in labels.values()):
        raise ValueError(f"{origin} must map class indices to str names")
    names = [labels[k] for k in range(len(labels))]
    if not names or names == [f"LABEL_{k}" for k in range(len(names))]:
        return None
    return names


def config_class_names(path: str | os.PathLike, n_classes: int) -> list[str] | None:
    """Names from the ``id2label`` of the ``config.json`` in the folder ``path`` (a Hugging Face
    checkpoint folder) or beside the file ``path``; None where there is none (or it is generic).

    A folder's names of another length than ``n_classes`` get a ``FitWarning``; a file's neighbour
    may describe another model, so a mismatch there is only logged.
    """
    path = Path(path)
    config = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if not config.is_file():
        return None
    try:
        id2label = json.loads(config.read_text()).get("id2label")
    except (OSError, ValueError, AttributeError) as error:
        warn(f"cannot read class names from {config}: {error}")
        return None
    if not isinstance(id2label, Mapping):
        return None
    try:
        names = _id2label_names(id2label, f"{config}: id2label")
    except ValueError as error:  # the head can be fitted without names
        warn(f"the class names of {config} are not used: {error}")
        return None
    if names is None:
        return None
    if len(names) != n_classes:
        message = f"{config} gives {len(names)} class names but the head has {n_classes} rows: the names are not used"
        if path.is_dir():
            warn(message)
        else:
            logger.info(message)
        return None
    logger.info("class names: %s (id2label)", config)
    return names


def resolve_class_names(spec: object, n_classes: int) -> list[str]:
    """The K class names a user gave, checked.

    Args:
        spec: a sequence (or numpy array) of K str; a mapping ``{index: name}`` over 0..K-1 (a
            Hugging Face ``id2label``); the path of a UTF-8 text file, one name a line; the name of
            an ImageNet subset that timm knows (``"imagenet-1k"``, ``"imagenet-21k-goog"``, ...);
            or a torchvision weights enum member (its ``meta["categories"]``, e.g.
            ``torchvision.models.ResNet18_Weights.IMAGENET1K_V1``).
        n_classes: K, the rows of the head.

    Raises:
        ValueError: not K names (the message gives both counts), an empty line in a file.
        TypeError: a name that is not a str, or a ``spec`` of none of these kinds.
        FileNotFoundError: a path (not an ImageNet subset name) that does not exist.
    """
    if isinstance(spec, (str, os.PathLike)):
        names, origin = _names_from_text_or_file(spec)
    elif isinstance(spec, Mapping):
        origin = "class_names (a mapping)"
        names = _id2label_names(spec, origin) or [str(v) for _, v in sorted(spec.items())]
    elif isinstance(getattr(spec, "meta", None), Mapping) and "categories" in spec.meta:  # type: ignore[attr-defined]
        names, origin = list(spec.meta["categories"]), f"{spec} (weight metadata)"  # type: ignore[attr-defined]
    elif isinstance(spec, (Sequence, np.ndarray)):
        names, origin = list(spec), f"the {len(spec)} names given"
    else:
        raise TypeError(
            "class_names must be a list of str, a {index: name} mapping, a text file (one name a line), an "
            f"ImageNet subset name such as 'imagenet-1k' or torchvision weights, got {type(spec).__name__}"
        )
    bad = next((i for i, name in enumerate(names) if not isinstance(name, str)), None)
    if bad is not None:
        raise TypeError(f"class name {bad} must be a str, got {type(names[bad]).__name__} {names[bad]!r}")
    if len(names) != n_classes:
        raise ValueError(f"{origin} has {len(names)} class names but the head has {n_classes} rows (classes)")
    logger.info("class names: %s", origin)
    return names


def _names_from_text_or_file(spec: str | os.PathLike) -> tuple[list[str], str]:
    path = Path(spec)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"class-name file {path} is not UTF-8 text: {error}") from None
        while lines and not lines[-1].strip():  # a blank last line is the end of the file, not a name
            lines.pop()
        names = [line.strip() for line in lines]
        empty = next((i for i, name in enumerate(names) if not name), None)
        if empty is not None:
            raise ValueError(f"class-name file {path}: line {empty + 1} is empty (one name a line)")
        return names, f"class-name file {path}"
    if isinstance(spec, str) and not path.exists():
        import timm.data

        try:
            info = timm.data.ImageNetInfo(spec)
        except AssertionError:  # timm's check of the subset name
            pass
        else:
            return list(info.label_descriptions()), f"timm's ImageNet info ({spec})"
    raise FileNotFoundError(
        f"no class-name file {str(spec)!r} (nor an ImageNet subset timm knows, such as 'imagenet-1k')"
    )


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
            f"class name {query!r} is ambiguous: "
            + "; ".join(f"{k}: {names[k]}" for k in exact)
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


def resolve_class(cls: object, n_classes: int, class_names: Sequence[str] | None = None) -> int:
    """Index in ``range(n_classes)`` of a class given by index (any integer: int, numpy or 0-d
    tensor; negative counts from the end) or by (case-insensitive) name.

    Raises:
        ValueError: an unknown name (with the closest names), or a name where there are no names.
        TypeError: neither an integer nor a string.
        IndexError: an index out of range.
    """
    if isinstance(cls, str):
        if class_names is None:
            raise ValueError(f"class {cls!r} given by name, but this head has no class names; pass its index")
        return find_class(class_names, cls)
    try:
        if isinstance(cls, bool):  # an int to Python, never meant as a class
            raise TypeError
        k = operator.index(cls)  # type: ignore[arg-type]  # anything with __index__; others raise
    except TypeError:
        raise TypeError(f"a class is an int index or a name, got {cls!r}") from None
    if not -n_classes <= k < n_classes:
        raise IndexError(f"class index {k} out of range for a head of {n_classes} classes")
    return k % n_classes


def class_from_text(text: str) -> int | str:
    """A class typed on a command line: ``"-3"`` -> -3 (an index), anything else stays a name."""
    return int(text) if re.fullmatch(r"\s*-?\d+\s*", text) else text
