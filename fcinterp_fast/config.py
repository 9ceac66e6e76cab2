"""Fit options: their defaults, their validation, and the column layout of the split tree.

``FitConfig`` is the one place the options of ``fcinterp_fast.fit`` and their defaults are written
(docs/spec.md sections 2 and 6); ``fit``'s signature and the command line read them from here.
Every backend writes node statistics into the same columns, so the layout lives here once too.

Column layout (``FitConfig.nodes``), level by level, ``+`` side first:

* ``tree="chain"``: level ``l`` (1-based) holds two columns, ``"+" * l`` at ``2 * (l - 1)`` and
  ``"-" * l`` at ``2 * (l - 1) + 1``.
* ``tree="full"``: level ``l`` holds ``2 ** l`` columns starting at ``2 ** l - 2``; the node at
  position ``i`` of a level is named by the bits of ``i`` (most significant first, ``0 -> "+"``,
  ``1 -> "-"``), so its children are ``2 * i`` (upper, ``+``) and ``2 * i + 1`` (lower, ``-``).
  Within a level this is the order of decreasing values.
"""

from __future__ import annotations

import dataclasses
import operator

__all__ = [
    "FitConfig",
    "MAX_CHAIN_LEVELS",
    "MAX_FULL_DEPTH",
    "DEFAULT_BACKEND",
    "DEFAULT_MAX_MEMORY",
    "NULL_KINDS",
    "DEFAULT_NULL_SEED",
    "TREES",
    "ROOTS",
    "GRIDS",
    "node_names",
    "check_choice",
]

#: Deepest level a chain is split to when ``depth=None`` (docs/spec.md section 2 allows a cap of 64 levels).
MAX_CHAIN_LEVELS = 64
#: Deepest full tree (docs/spec.md section 2): level 10 alone has 1024 nodes per class.
MAX_FULL_DEPTH = 10
#: Largest ``min_size`` (the kernels take it as an int64; any value above the row length splits nothing).
MAX_MIN_SIZE = 2**63 - 1
#: ``fit(backend=...)`` when not given: the fastest backend available for the fitting device.
DEFAULT_BACKEND = "auto"
#: Working-memory budget of one row block when ``max_memory`` is not given (bytes).
DEFAULT_MAX_MEMORY = 512 * 2**20
#: Null heads ``fit(null=...)`` can fit beside the head (docs/spec.md section 7), and their base seed.
NULL_KINDS = ("normal", "laplace", "ald")
DEFAULT_NULL_SEED = 0

TREES = ("chain", "full")
ROOTS = ("zero", "mean")
GRIDS = ("paper", "linspace")


def node_names(tree: str, levels: int) -> list[str]:
    """Names of every column of a tree with ``levels`` levels, in column order."""
    if tree == "chain":
        return [sign * level for level in range(1, levels + 1) for sign in "+-"]
    names = []
    for level in range(1, levels + 1):
        for i in range(2**level):
            bits = format(i, f"0{level}b")
            names.append(bits.replace("0", "+").replace("1", "-"))
    return names


def n_columns(tree: str, levels: int) -> int:
    return 2 * levels if tree == "chain" else 2 ** (levels + 1) - 2


def level_columns(tree: str, level: int) -> slice:
    """Columns of one level (1-based)."""
    if tree == "chain":
        return slice(2 * (level - 1), 2 * level)
    return slice(2**level - 2, 2 ** (level + 1) - 2)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Validated options of one fit; shared by every backend.

    Attributes:
        tree: ``"chain"`` (only the strong child expands) or ``"full"``.
        root: ``"zero"`` (``+`` = theta > 0, ``-`` = theta < 0) or ``"mean"`` (split at the row mean).
        grid: ``"paper"`` (x_i = i / L) or ``"linspace"`` (x_i = i / (L - 1)).
        min_size: a node is split only if it has at least this many elements.
        depth: deepest level produced, or None (chain only: up to ``MAX_CHAIN_LEVELS``).
    """

    # plain str, as fit() and the command line pass them: __post_init__ checks them against TREES, ROOTS, GRIDS
    tree: str = "chain"
    root: str = "zero"
    grid: str = "paper"
    min_size: int = 20
    depth: int | None = None

    def __post_init__(self):
        check_choice("tree", self.tree, TREES)
        check_choice("root", self.root, ROOTS)
        check_choice("grid", self.grid, GRIDS)
        # Plain ints in the range the kernels take (int64), so that no backend ever sees another.
        object.__setattr__(self, "min_size", check_int("min_size", self.min_size, 0, MAX_MIN_SIZE))
        if self.depth is not None:
            object.__setattr__(self, "depth", check_int("depth", self.depth, 1, None, or_none=True))
        if self.tree == "full":
            if self.depth is None:
                raise ValueError(
                    f"tree='full' needs an explicit depth (1..{MAX_FULL_DEPTH}): level d alone has "
                    f"2**d nodes per class; pass e.g. depth=3"
                )
            if self.depth > MAX_FULL_DEPTH:
                raise ValueError(
                    f"depth={self.depth} is too large for tree='full' (it would have "
                    f"{2 ** (self.depth + 1) - 2} nodes per class); use depth <= {MAX_FULL_DEPTH} "
                    f"or tree='chain'"
                )
        elif self.depth is not None and self.depth > MAX_CHAIN_LEVELS:
            raise ValueError(f"depth={self.depth} exceeds the chain cap of {MAX_CHAIN_LEVELS} levels")

    @property
    def levels(self) -> int:
        """Most levels any row can have under this configuration."""
        return self.depth if self.depth is not None else MAX_CHAIN_LEVELS

    @property
    def nodes(self) -> list[str]:
        """Column names for ``levels`` levels (a fit may trim unused chain levels)."""
        return node_names(self.tree, self.levels)

    @property
    def n_columns(self) -> int:
        return n_columns(self.tree, self.levels)

    def level_columns(self, level: int) -> slice:
        return level_columns(self.tree, level)


def check_int(what: str, value, low: int, high: int | None, or_none: bool = False) -> int:
    """``value`` as a plain int in ``low..high`` (any integer type but bool); else a one-line
    TypeError / ValueError naming ``what``."""
    allowed = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
    allowed += " or None" if or_none else ""
    try:
        if isinstance(value, bool):  # an int to Python, never meant as a count
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be {allowed}, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{what} must be {allowed}, got {number}")
    return number


def check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")
