"""Explanations: Grad-CAM++ and Smooth Grad-CAM++ through the neurons of split nodes of a classifier
head (docs/spec.md sections 5 and 8), laid out as pytorch-grad-cam: a base that owns hooks and
post-processing (``base``, ``hooks``), one small class per method (``methods``), targets
(``targets``), target layers (``layers``), images in and maps out (``images``), the formula
(``gradcampp``) and its Triton kernel (``gradcampp_triton``).

``explain(model, images, targets)`` for one call; ``GradCAMPlusPlus(model, target_layers)`` /
``SmoothGradCAMPlusPlus(...)`` (context managers) for many calls on one model, called as
pytorch-grad-cam's classes (``cam(input_tensor, targets)``) or with ``cam.maps(images, targets)``.
"""

from .base import BaseCAM
from .faithfulness import ConfidenceChange, NodeAblation, confidence_change, node_ablation
from .layers import find_target_layer
from .methods import GradCAMPlusPlus, SmoothGradCAMPlusPlus, explain, noisy_copies
from .options import CamOptions
from .overlay import overlay
from .targets import NodeTarget, Target

__all__ = [
    "explain",
    "BaseCAM",
    "GradCAMPlusPlus",
    "SmoothGradCAMPlusPlus",
    "CamOptions",
    "NodeTarget",
    "Target",
    "find_target_layer",
    "node_ablation",
    "NodeAblation",
    "confidence_change",
    "ConfidenceChange",
    "overlay",
    "noisy_copies",
]
