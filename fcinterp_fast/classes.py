"""Class names and class lookup: a class given by index or by (ImageNet-style) name.

``class_names(model)`` reads the names a model carries; ``resolve_class`` turns what a user typed
(an index, a negative index, a name or one of its comma-separated synonyms) into a row index.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Sequence

from torch import nn

__all__ = ["class_names", "find_class", "resolve_class", "class_from_text"]


def class_names(model: nn.Module) -> list[str] | None:
    """ImageNet class descriptions for timm models trained on an ImageNet subset, else None."""
    if not hasattr(model, "pretrained_cfg"):
        return None
    import timm.data

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
