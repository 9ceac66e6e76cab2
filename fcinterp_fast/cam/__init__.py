"""Explanations: Grad-CAM++ and Smooth Grad-CAM++ through the neurons of split nodes of a classifier
head (docs/spec.md section 5), laid out as pytorch-grad-cam: a base that owns hooks and
post-processing (``base``, ``hooks``), one small class per method (``methods``), targets
(``targets``), the formula (``gradcampp``) and its Triton kernel (``gradcampp_triton``).

``explain(model, images, targets)`` for one call; ``GradCAMPlusPlus(model)`` /
``SmoothGradCAMPlusPlus(model)`` (context managers) for many calls on one model.
"""

from .base import BaseCAM
from .methods import GradCAMPlusPlus, SmoothGradCAMPlusPlus, explain, noisy_copies
from .options import CamOptions
from .targets import Target

__all__ = ["explain", "BaseCAM", "GradCAMPlusPlus", "SmoothGradCAMPlusPlus", "CamOptions", "Target", "noisy_copies"]
