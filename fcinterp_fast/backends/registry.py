"""Backend registry and the per-chunk result every backend returns.

A backend is one module in this package that calls :func:`register_backend` at import with a
function ``fit_rows(W, cfg) -> RowFit`` over a block of rows. Everything around it (validation,
row chunking, exact re-computation of undecidable rows, assembling a ``HeadFit``) lives in
``fcinterp_fast.api`` so that backends stay small and interchangeable.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import torch

from .._config import FitConfig

__all__ = ["Backend", "RowFit", "register_backend", "get_backend", "available", "resolve", "exact_backend"]

NODE_FIELDS = ("count", "mean", "lo", "hi", "slope", "intercept", "r2")
ALD_FIELDS = ("loc", "scale", "kappa", "loglik")


@dataclasses.dataclass
class RowFit:
    """Statistics of a block of R rows over the ``N = cfg.n_columns`` node columns.

    Attributes:
        count: (R, N) int64, members of each node (0 where the node is absent).
        mean, lo, hi: (R, N) float64, the node's mean (its split threshold), min and max value.
        slope, intercept, r2: (R, N) float64, the Algorithm 1 line fit of the node (SPEC 3).
        loc, scale, kappa, loglik: (R,) float64, the row's ALD maximum likelihood fit (SPEC 4).
        ambiguous: (R,) bool, rows where some element lies so close to a split threshold that the
            float64 rounding bound of a fast summation cannot decide its side. ``fit`` recomputes
            those rows with ``exact_backend()`` (``cpu`` when built, else ``reference``), so every
            backend agrees on every membership. Backends that decide exactly leave it all False.
    """

    count: torch.Tensor
    mean: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    slope: torch.Tensor
    intercept: torch.Tensor
    r2: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    kappa: torch.Tensor
    loglik: torch.Tensor
    ambiguous: torch.Tensor

    @classmethod
    def empty(cls, rows: int, columns: int, device=None) -> "RowFit":
        """Every node absent (count 0, statistics NaN), ALD NaN, nothing ambiguous."""
        nan = dict(dtype=torch.float64, device=device)
        return cls(
            count=torch.zeros(rows, columns, dtype=torch.int64, device=device),
            **{f: torch.full((rows, columns), float("nan"), **nan) for f in NODE_FIELDS[1:]},
            **{f: torch.full((rows,), float("nan"), **nan) for f in ALD_FIELDS},
            ambiguous=torch.zeros(rows, dtype=torch.bool, device=device),
        )

    @property
    def rows(self) -> int:
        return self.count.shape[0]

    @property
    def columns(self) -> int:
        return self.count.shape[1]

    def fields(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> "RowFit":
        return RowFit(**{name: fn(name, t) for name, t in self.fields().items()})

    def to(self, device) -> "RowFit":
        return self.map(lambda _, t: t.to(device))

    def keep_columns(self, columns: int) -> "RowFit":
        """The first ``columns`` node columns; the rest must be absent (count 0)."""
        return self.map(lambda name, t: t[:, :columns] if name in NODE_FIELDS else t)

    def pad_columns(self, columns: int) -> "RowFit":
        """Append absent node columns up to ``columns``."""
        extra = columns - self.columns
        if extra <= 0:
            return self
        pad = RowFit.empty(self.rows, extra, self.count.device)
        return self.map(
            lambda name, t: torch.cat([t, getattr(pad, name)], dim=1) if name in NODE_FIELDS else t
        )

    def deepest_column(self) -> int:
        """Number of leading columns holding any present node (for trimming chain levels)."""
        present = (self.count > 0).any(dim=0).nonzero()
        return int(present.max()) + 1 if present.numel() else 0

    def assign_rows(self, rows: torch.Tensor, other: "RowFit") -> None:
        """Overwrite ``rows`` (LongTensor) with ``other``'s rows, in place."""
        for name, t in self.fields().items():
            t[rows] = getattr(other, name).to(t.device)

    @staticmethod
    def cat(parts: list["RowFit"]) -> "RowFit":
        columns = max(p.columns for p in parts)
        parts = [p.pad_columns(columns) for p in parts]
        return RowFit(**{n: torch.cat([getattr(p, n) for p in parts]) for n in parts[0].fields()})


@dataclasses.dataclass(frozen=True)
class Backend:
    """One registered implementation of SPEC sections 2-4.

    Attributes:
        name: the ``backend=`` string.
        fit_rows: ``(W (R, D) float tensor, cfg) -> RowFit`` on W's device.
        devices: device types it accepts (``"cpu"``, ``"cuda"``).
        bytes_per_element: working memory per input element, for sizing row chunks.
        unavailable: ``() -> str | None``: why it cannot run here, or None.
        auto_rank: lower is preferred by ``backend="auto"``; None = never chosen automatically.
        exact: decides every split exactly (never sets ``RowFit.ambiguous``); such a backend on
            the CPU recomputes the rows a fast backend flags.
    """

    name: str
    fit_rows: Callable[[torch.Tensor, FitConfig], RowFit]
    devices: frozenset
    bytes_per_element: int
    unavailable: Callable[[], str | None] = lambda: None
    auto_rank: int | None = None
    exact: bool = False


_REGISTRY: dict[str, Backend] = {}
# Modules that register a backend when imported, in the order they are listed to users.
_MODULES = ("reference", "torch_vec", "cpu", "triton_fit")


def register_backend(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def _load_all() -> dict[str, Backend]:
    if len(_REGISTRY) < len(_MODULES):
        for module in _MODULES:
            importlib.import_module(f"{__package__}.{module}")
    return _REGISTRY


def names() -> list[str]:
    return list(_load_all())


def get_backend(name: str) -> Backend:
    registry = _load_all()
    if name not in registry:
        raise ValueError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, registry))}")
    return registry[name]


def exact_backend() -> Backend:
    """The fastest available exact CPU backend (``cpu`` when built, else ``reference``)."""
    candidates = [
        b for b in _load_all().values() if b.exact and "cpu" in b.devices and b.unavailable() is None
    ]
    return min(candidates, key=lambda b: float("inf") if b.auto_rank is None else b.auto_rank)


def available() -> dict[str, str]:
    """``{name: "available" or the reason it is not}`` for every backend."""
    return {name: (b.unavailable() or "available") for name, b in _load_all().items()}


def resolve(name: str, device: torch.device) -> Backend:
    """The backend ``name`` (or the fastest available one for ``device`` when ``"auto"``)."""
    if name == "auto":
        candidates = [
            b
            for b in _load_all().values()
            if b.auto_rank is not None and device.type in b.devices and b.unavailable() is None
        ]
        if not candidates:
            raise ValueError(
                f"no available backend runs on {device.type} tensors; move the head to the CPU or a "
                f"CUDA device (backends here: {available()})"
            )
        return min(candidates, key=lambda b: b.auto_rank)
    backend = get_backend(name)
    reason = backend.unavailable()
    if reason is not None:
        raise RuntimeError(f"backend {name!r} is not available: {reason}")
    if device.type not in backend.devices:
        raise ValueError(
            f"backend {name!r} runs on {'/'.join(sorted(backend.devices))} tensors, but the head is "
            f"on {device.type}; move it with .to(...) or choose backend='auto'"
        )
    return backend
