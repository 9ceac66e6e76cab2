"""How an explanation reaches into a model: the activations A of the target layers, the head's input f
and the model's output.

Two ways, behind one interface (``forward(x, graph) -> Reached``, ``head_input(z, x1, layer) -> f``,
``release()``):

* ``TimmForward``: timm models, through ``forward_features`` (A) and ``forward_head(A,
  pre_logits=True)`` (f); no hooks at all. One target layer: the ``forward_features`` output.
* ``LayerHooks``: any model, through a forward hook on each target layer and forward hooks on the
  head (its input f and its output). The hooks act only inside ``forward`` / ``head_input`` of their
  own object, and only on the forward run by the thread that called it (inert otherwise), so
  concurrent calls on one model, through one object or several, each see their own A and f.
  ``release()`` removes them.

Both run the model up to the first target layer without autograd; with ``graph`` the rest is
recorded, the first target layer's output being a leaf, so a backward never differentiates what
comes before it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, cast

import torch
from torch import nn

__all__ = ["Reached", "TimmForward", "LayerHooks", "is_timm", "logits_of"]


def is_timm(model: nn.Module) -> bool:
    """Whether ``model`` has timm's ``forward_features`` / ``forward_head`` split."""
    return callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None))


def logits_of(output: Any) -> torch.Tensor | None:
    """The (N, K) logits in a model's output: the tensor itself, or the ``.logits`` of a Hugging Face
    output object; None when neither is there."""
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    return logits if isinstance(logits, torch.Tensor) and logits.ndim == 2 else None


class Reached(NamedTuple):
    """What one forward reached.

    Attributes:
        activations: the raw output of each target layer (N, ...), in the order of the target layers;
            with ``graph``, the first one to run is a leaf and the graph goes from there to
            ``features`` and ``output``.
        features: f (N, D), the head's input (flattened from (N, D, 1, 1)); None without ``graph``
            from ``TimmForward``.
        output: the model's output (usually (N, K) logits).
        head_output: the head's own output (N, K); ``output`` equals it when the model returns its
            head's logits unchanged.
    """

    activations: list[torch.Tensor]
    features: torch.Tensor | None
    output: Any
    head_output: torch.Tensor | None


class _TimmModel(Protocol):
    """What ``TimmForward`` calls on a timm model."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...


class TimmForward:
    """A = ``forward_features(x)``, f = ``forward_head(A, pre_logits=True)``: no hooks needed."""

    def __init__(self, model: nn.Module, head: nn.Module):
        # nn.Module types its attributes as Tensor | Module; BaseCAM builds a TimmForward only for
        # models where is_timm(model) holds, so both methods exist
        self.model = cast(_TimmModel, model)
        self.head = head

    def forward(self, x: torch.Tensor, *, graph: bool) -> Reached:
        """A (a leaf, without autograd history), the output and, with ``graph``, f with a graph from A."""
        with torch.no_grad():
            A = self.model.forward_features(x)
        if not graph:
            with torch.no_grad():
                return Reached([A], None, self.model.forward_head(A), None)
        A.requires_grad_()
        # the output's graph (for targets that read it) goes through the head's parameters, which a
        # model built in inference mode cannot save for backward: such a model gets its output
        # without a graph (f, which the fused path needs, goes through no parameters of a timm head)
        head_frozen = any(p.is_inference() for p in self.head.parameters())
        with torch.enable_grad():
            f = self.model.forward_head(A, pre_logits=True)
            with torch.set_grad_enabled(not head_frozen):
                output = self.model.forward_head(A)
        with torch.no_grad():
            head_output = self.head(f)
        return Reached([A], f, output, head_output)

    def head_input(self, z: torch.Tensor, x1: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """f when the target layer outputs ``z``."""
        with torch.no_grad():
            return self.model.forward_head(z, pre_logits=True)

    def release(self) -> None:
        pass


class _Call(threading.local):
    """The state of a ``LayerHooks`` call, one per thread (class attributes are each thread's start).

    Attributes:
        mode: None (no call of this object runs in this thread: hooks inert), ``"plain"``,
            ``"graph"``, or ``(layer index, tensor)``: a tensor substituted for that layer's output.
        captured: each target layer's output once it ran; features: f once the head ran;
        head_output: the head's output.
    """

    mode: str | tuple[int, torch.Tensor] | None = None
    captured: list[torch.Tensor | None] = []
    features: torch.Tensor | None = None
    head_output: torch.Tensor | None = None


class LayerHooks:
    """A = output of each target layer, f = input of ``head``, caught by hooks during a forward.

    The hooks act only inside ``forward`` / ``head_input``, and record only the forward run by the
    calling thread: the call's state is thread-local, and a module runs its hooks in the thread of
    the forward. Two threads explaining one model (with one ``LayerHooks`` or one each) therefore
    never see each other's activations. The forward runs without autograd up to the first target
    layer; with ``graph`` its hook switches autograd on and returns a detached leaf, so the graph
    spans only target layers -> head and output. A later target layer whose output is in that graph
    stays in it (its gradient is the part flowing through it); one that is not becomes a leaf too.
    """

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module], head: nn.Module):
        self.model = model
        self.n_layers = len(target_layers)
        self._call = _Call()
        self._handles = [layer.register_forward_hook(self._on_target(i)) for i, layer in enumerate(target_layers)]
        self._handles += [head.register_forward_pre_hook(self._on_head), head.register_forward_hook(self._on_head_out)]

    def _on_target(self, index: int):
        def hook(module, inputs, output):
            call = self._call
            if call.mode is None:
                return None
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"target layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
            if call.captured[index] is not None:
                raise ValueError(
                    f"target layer {type(module).__name__} ran twice in one forward; choose a module used once"
                )
            if isinstance(call.mode, tuple):
                if call.mode[0] == index:
                    output = call.mode[1]
            elif call.mode == "graph" and not output.requires_grad:
                torch.set_grad_enabled(True)  # restored by the no_grad context of _run (grad mode is per thread)
                output = output.detach().requires_grad_()
            call.captured[index] = output
            return output

        return hook

    def _on_head(self, module, inputs):
        call = self._call
        if call.mode is None:
            return None
        if all(c is None for c in call.captured):
            raise ValueError("the head ran before the target layer; the target layer must come before the head")
        f = inputs[0]
        call.features = f.flatten(1) if f.ndim == 4 and tuple(f.shape[2:]) == (1, 1) else f
        return None

    def _on_head_out(self, module, inputs, output):
        call = self._call
        if call.mode is not None and isinstance(output, torch.Tensor):
            call.head_output = output.flatten(1) if output.ndim == 4 else output
        return None

    def _run(self, x: torch.Tensor, mode: str | tuple[int, torch.Tensor]) -> Reached:
        call = self._call
        call.mode, call.captured, call.features, call.head_output = mode, [None] * self.n_layers, None, None
        try:
            with torch.no_grad():
                output = self.model(x)
            captured = call.captured
            if any(c is None for c in captured) or call.features is None:
                missing = [i for i, c in enumerate(captured) if c is None]
                what = f"target layer(s) {missing}" if missing else "the head"
                raise ValueError(f"{what} did not run in the model's forward")
            return Reached([cast(torch.Tensor, c) for c in captured], call.features, output, call.head_output)
        finally:
            call.mode, call.captured, call.features, call.head_output = None, [], None, None

    def forward(self, x: torch.Tensor, *, graph: bool) -> Reached:
        return self._run(x, "graph" if graph else "plain")

    def head_input(self, z: torch.Tensor, x1: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """f for image ``x1`` (1, C, H, W) when target layer ``layer`` outputs ``z``."""
        features = self._run(x1, (layer, z)).features
        assert features is not None  # _run raises otherwise
        return features

    def release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
