"""Targets of an explanation: ``(class, node)`` pairs and the score vector of each (docs/spec.md section 5).

The score of target (k, n) is s(x) = sum_{j in n} omega_kj f_j(x), f the pre-logit features, so
ds/df is the vector v with v_j = omega_kj for j in node n and 0 elsewhere: the row k of the head
masked by the node. ``score_vectors`` builds the (T, D) matrix of those vectors.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence

import torch

from ..classes import resolve_class
from ..config import check_choice
from ..result import HeadFit
from .options import WEIGHTS, CamOptions

__all__ = [
    "Target",
    "NodeTarget",
    "parse_targets",
    "parse_targets_per_image",
    "score_vectors",
    "check_fit",
    "lazy_fit",
    "classifier_output_category",
]

# omega of every ``WEIGHTS`` choice, from the class's row of W (a fresh tensor: never a view of W).
_OMEGA: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "abs": torch.abs,
    "fc": torch.clone,
    "ones": torch.ones_like,
}
_NODE_CHARS = frozenset("+-*")


@dataclasses.dataclass(frozen=True)
class Target:
    """One resolved target.

    Attributes:
        cls: class index in [0, K).
        node: the node as given (``"+++"``, ``"+*"``) or None for every neuron of the class.
        name: the node's name in the fit (``"+*"`` resolved to the deepest ``+`` node of this
            class), or None.
        size: number of neurons the score sums over.
    """

    cls: int
    node: str | None
    name: str | None
    size: int


@dataclasses.dataclass(frozen=True)
class NodeTarget:
    """One image's target for the pytorch-grad-cam-style call ``cam(input_tensor, targets)``: the
    score s = sum_{j in node} omega_kj f_j of a split node of class ``k`` (docs/spec.md section 5).

    Attributes:
        k: class index or name.
        node: node name (``"+++"``, ``"+*"``, ``"-*"``) or None (every neuron of the class).
        weights: omega: ``"abs"`` |W| (default), ``"fc"`` W, ``"ones"`` 1.
    """

    k: int | str
    node: str | None = None
    weights: str = CamOptions.weights

    def __post_init__(self) -> None:
        check_choice("weights", self.weights, WEIGHTS)
        if not _is_class(self.k):
            raise TypeError(f"NodeTarget's class is an int index or a class name, got {self.k!r}")
        if self.node is not None and not isinstance(self.node, str):
            raise TypeError(f"NodeTarget's node is a name such as '+++', '-*' or None, got {self.node!r}")


def classifier_output_category(target) -> int | None:
    """The class of pytorch-grad-cam's ``ClassifierOutputTarget`` (recognised by its class name and
    ``category`` attribute, without importing pytorch-grad-cam); None for any other target."""
    if type(target).__name__ != "ClassifierOutputTarget" or not hasattr(target, "category"):
        return None
    try:
        return operator.index(target.category)
    except TypeError:
        raise TypeError(f"ClassifierOutputTarget's category must be an int, got {target.category!r}") from None


def parse_targets_per_image(targets) -> list[list[tuple[object, str | None]]] | None:
    """One list of ``(class, node)`` pairs per image when ``targets`` has that form (a list of
    lists, none of which is itself a single ``(class, node)`` pair), else None.

    Every image must have the same number of targets.
    """
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence) or not targets:
        return None
    if not all(isinstance(item, list) for item in targets):
        return None
    if any(len(item) == 2 and _is_class(item[0]) and _is_node(item[1]) for item in targets):
        return None  # a list of [class, node] pairs written as lists
    per_image = [parse_targets(item) for item in targets]
    lengths = {len(pairs) for pairs in per_image}
    if len(lengths) != 1:
        raise ValueError(f"each image needs the same number of targets, got {[len(p) for p in per_image]}")
    return per_image


def parse_targets(targets) -> list[tuple[object, str | None]]:
    """Normalise the ``targets`` argument to a list of ``(class, node)`` pairs.

    Accepted: a list of pairs ``(class, node)`` and bare classes (node None); one pair on its own
    (recognised because its second item is None or a node name made of ``+``, ``-``, ``*``); one
    bare class. A class is an int index or a class name.
    """
    if _is_class(targets) or (isinstance(targets, tuple) and len(targets) == 2 and _is_node(targets[1])):
        targets = [targets]
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        raise TypeError(f"targets must be a list of (class, node) pairs, got {type(targets).__name__}")
    pairs: list[tuple[object, str | None]] = []
    for item in targets:
        if _is_class(item):
            pairs.append((item, None))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and _is_class(item[0]):
            if item[1] is not None and not isinstance(item[1], str):
                raise TypeError(f"a node is a name such as '+++', '-*' or None, got {item[1]!r}")
            pairs.append((item[0], item[1]))
        else:
            raise TypeError(f"a target is (class, node) with class an int or a name, got {item!r}")
    if not pairs:
        raise ValueError("targets is empty; give at least one (class, node) pair")
    return pairs


def score_vectors(
    W: torch.Tensor,
    targets: list[tuple[object, str | None]],
    weights: str,
    get_fit: Callable[[], HeadFit],
    names: Sequence[str] | None,
) -> tuple[torch.Tensor, list[Target]]:
    """The (T, D) float32 vectors ds_t/df of every target, on W's device, and the resolved targets.

    Args:
        W: (K, D) head weight.
        targets: ``(class, node)`` pairs from ``parse_targets``.
        weights: one of ``WEIGHTS``.
        get_fit: returns the ``HeadFit`` of W; called only when some node is not None.
        names: class names for classes given by name (None: only indices).

    Raises:
        ValueError: unknown weights or node, a node with no member in that class, a fit of another head.
        TypeError: a fit that is not a ``HeadFit``.
        IndexError: class index out of range.
    """
    check_choice("weights", weights, WEIGHTS)
    K, D = W.shape
    vectors, resolved = [], []
    for cls, node in targets:
        k = resolve_class(cls, K, names)
        row = W[k].detach().float()
        omega = _OMEGA[weights](row)
        if node is None:
            vectors.append(omega)
            resolved.append(Target(k, None, None, D))
            continue
        fit = check_fit(get_fit(), W)
        column = fit.column(node, k) if node in ("+*", "-*") else fit.column(node)
        size = int(fit.count[k, column])
        if size == 0:
            present = [n for j, n in enumerate(fit.nodes) if fit.count[k, j] > 0]
            raise ValueError(
                f"node {node!r} has no neurons in class {k} (it was not split that deep); its nodes are "
                f"{', '.join(present)}"
            )
        inside = torch.zeros(D, dtype=torch.bool, device=W.device)
        inside[fit.members(k, node).to(W.device)] = True
        vectors.append(torch.where(inside, omega, 0.0))
        resolved.append(Target(k, node, fit.nodes[column], size))
    return torch.stack(vectors), resolved


def check_fit(fit, W: torch.Tensor) -> HeadFit:
    """``fit`` if it is a ``HeadFit`` of a head shaped like ``W`` (K, D); else a TypeError / ValueError."""
    if not isinstance(fit, HeadFit):
        raise TypeError(f"fit must be a HeadFit (from fcinterp_fast.fit) or None, got {type(fit).__name__}")
    if tuple(fit.shape) != tuple(W.shape):
        raise ValueError(
            f"fit is the fit of a ({fit.shape[0]}, {fit.shape[1]}) head, but the model's head is "
            f"{tuple(W.shape)}; pass the fit of this model's head"
        )
    return fit


def lazy_fit(fit, W: torch.Tensor):
    """A function returning ``fit`` (checked against ``W`` now, by ``check_fit``) or, when ``fit``
    is None, the default fit of ``W``, made on the first call only (a target may need no fit)."""
    checked = None if fit is None else check_fit(fit, W)

    def get_fit() -> HeadFit:
        nonlocal checked
        if checked is None:
            from ..api import fit as fit_head  # the api imports cam: fit lazily

            checked = fit_head(W)
        return checked

    return get_fit


def _is_class(x) -> bool:
    if isinstance(x, str):
        return not _is_node(x)
    if isinstance(x, bool):
        return False
    try:
        operator.index(x)
    except TypeError:
        return False
    return True


def _is_node(x) -> bool:
    return x is None or (isinstance(x, str) and bool(x) and set(x) <= _NODE_CHARS)
