"""How an explanation reaches into a model: the activations A of the target layer and the head's input f.

Two ways, behind one interface (``forward(x, graph) -> (A, f)``, ``head_input(z, x1) -> f``,
``release()``):

* ``TimmForward``: timm models, through ``forward_features`` (A) and ``forward_head(A,
  pre_logits=True)`` (f); no hooks at all.
* ``LayerHooks``: any model, through a forward hook on the target layer and a forward pre-hook on
  the head. The hooks act only inside ``forward`` / ``head_input`` of their own object, and only
  on the forward run by the thread that called it (inert otherwise), so concurrent calls on one
  model, through one object or several, each see their own A and f. ``release()`` removes them.

Both run the model up to A without autograd; with ``graph`` the part from A to f is recorded, with A
as a leaf, so a backward never differentiates what comes before the target layer.
"""

from __future__ import annotations

import threading
from typing import Literal, Protocol, cast, overload

import torch
from torch import nn

__all__ = ["TimmForward", "LayerHooks", "is_timm"]


def is_timm(model: nn.Module) -> bool:
    """Whether ``model`` has timm's ``forward_features`` / ``forward_head`` split."""
    return callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None))


class _TimmModel(Protocol):
    """What ``TimmForward`` calls on a timm model."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...


class TimmForward:
    """A = ``forward_features(x)``, f = ``forward_head(A, pre_logits=True)``: no hooks needed."""

    def __init__(self, model: nn.Module):
        # nn.Module types its attributes as Tensor | Module; BaseCAM builds a TimmForward only for
        # models where is_timm(model) holds, so both methods exist
        self.model = cast(_TimmModel, model)

    @overload
    def forward(self, x: torch.Tensor, *, graph: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def forward(self, x: torch.Tensor, *, graph: Literal[False]) -> tuple[torch.Tensor, None]: ...

    def forward(self, x: torch.Tensor, *, graph: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A (a leaf, without autograd history) and, with ``graph``, f with a graph from A."""
        with torch.no_grad():
            A = self.model.forward_features(x)
        if not graph:
            return A, None
        A.requires_grad_()
        with torch.enable_grad():
            return A, self.model.forward_head(A, pre_logits=True)

    def head_input(self, z: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """f when the target layer outputs ``z``."""
        with torch.no_grad():
            return self.model.forward_head(z, pre_logits=True)

    def release(self) -> None:
        pass


class _Call(threading.local):
    """The state of a ``LayerHooks`` call, one per thread (class attributes are each thread's start).

    Attributes:
        mode: None (no call of this object runs in this thread: hooks inert), ``"plain"``,
            ``"graph"``, or a tensor substituted for A.
        captured: A once the target layer ran; features: f once the head ran.
    """

    mode: str | torch.Tensor | None = None
    captured: torch.Tensor | None = None
    features: torch.Tensor | None = None


class LayerHooks:
    """A = output of ``target_layer``, f = input of ``head``, caught by hooks during a forward.

    The hooks act only inside ``forward`` / ``head_input``, and record only the forward run by the
    calling thread: the call's state is thread-local, and a module runs its hooks in the thread of
    the forward. Two threads explaining one model (with one ``LayerHooks`` or one each) therefore
    never see each other's activations. The forward runs without autograd up to the target layer;
    with ``graph`` its hook switches autograd on and returns a detached leaf, so the graph spans only
    target layer -> head.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module, head: nn.Module):
        self.model = model
        self._call = _Call()
        self._handles = [
            target_layer.register_forward_hook(self._on_target),
            head.register_forward_pre_hook(self._on_head),
        ]

    def _on_target(self, module, inputs, output):
        call = self._call
        if call.mode is None:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"target layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
        if call.captured is not None:
            raise ValueError(
                f"target layer {type(module).__name__} ran twice in one forward; choose a module used once"
            )
        if isinstance(call.mode, torch.Tensor):
            output = call.mode
        elif call.mode == "graph":
            torch.set_grad_enabled(True)  # restored by the no_grad context of _run (grad mode is per thread)
            output = output.detach().requires_grad_()
        call.captured = output
        return output

    def _on_head(self, module, inputs):
        call = self._call
        if call.mode is None:
            return None
        if call.captured is None:
            raise ValueError("the head ran before the target layer; the target layer must come before the head")
        f = inputs[0]
        call.features = f.flatten(1) if f.ndim == 4 and tuple(f.shape[2:]) == (1, 1) else f
        return None

    def _run(self, x: torch.Tensor, mode: str | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        call = self._call
        call.mode, call.captured, call.features = mode, None, None
        try:
            with torch.no_grad():
                self.model(x)
            if call.captured is None or call.features is None:
                raise ValueError("the target layer or the head did not run in the model's forward")
            return call.captured, call.features
        finally:
            call.mode, call.captured, call.features = None, None, None

    @overload
    def forward(self, x: torch.Tensor, *, graph: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def forward(self, x: torch.Tensor, *, graph: Literal[False]) -> tuple[torch.Tensor, None]: ...

    def forward(self, x: torch.Tensor, *, graph: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        A, f = self._run(x, "graph" if graph else "plain")
        return A, f if graph else None

    def head_input(self, z: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self._run(x1, z)[1]

    def release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
