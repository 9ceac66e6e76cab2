"""The backend registry.

A backend is one module of ``fcinterp_fast.backends`` (which imports them all) that calls
:func:`register_backend` at import with a
function ``fit_rows(W, cfg) -> RowFit`` over a block of rows (``RowFit`` lives in
``fcinterp_fast.result``). Everything around it (validation, row blocks, exact re-computation of
undecidable rows, assembling a ``HeadFit``) lives in ``fcinterp_fast.api`` so that backends stay
small and interchangeable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..config import FitConfig
from ..result import RowFit

__all__ = ["Backend", "register_backend", "get_backend", "available", "resolve", "exact_backend", "names"]


@dataclasses.dataclass(frozen=True)
class Backend:
    """One registered implementation of docs/spec.md sections 2-4.

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


# Filled by the backend modules as ``fcinterp_fast.backends`` imports them, in the order listed to users.
_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` under its name (a backend module calls this once, when it is imported)."""
    _REGISTRY[backend.name] = backend
    return backend


def names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, _REGISTRY))}")
    return _REGISTRY[name]


def exact_backend() -> Backend:
    """The fastest available exact CPU backend (``cpu`` when built, else ``reference``)."""
    candidates = [b for b in _REGISTRY.values() if b.exact and "cpu" in b.devices and b.unavailable() is None]
    return min(candidates, key=lambda b: float("inf") if b.auto_rank is None else b.auto_rank)


def available() -> dict[str, str]:
    """``{name: "available" or the reason it is not}`` for every backend."""
    return {name: (b.unavailable() or "available") for name, b in _REGISTRY.items()}


def resolve(name: str, device: torch.device) -> Backend:
    """The backend ``name`` (or the fastest available one for ``device`` when ``"auto"``)."""
    if name == "auto":
        candidates = [
            b
            for b in _REGISTRY.values()
            if b.auto_rank is not None and device.type in b.devices and b.unavailable() is None
        ]
        if not candidates:
            raise ValueError(
                f"no available backend runs on {device.type} tensors; move the head to the CPU or a "
                f"CUDA device (backends here: {available()})"
            )
        return min(candidates, key=lambda b: float("inf") if b.auto_rank is None else b.auto_rank)
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
