"""Explanations: Smooth Grad-CAM++ through the neurons of split nodes of a classifier head (SPEC 5).

``explain(model, images, targets)`` for one call, ``NodeCAM(model)`` for many calls on one model.
``fcinterp_fast.cam.figure.chain_figure`` draws the maps of every level of the ``+`` and ``-`` chains.
"""
from .base import NodeCAM, explain, noisy_copies
from .targets import Target

__all__ = ["explain", "NodeCAM", "Target", "noisy_copies"]
