"""The options of an explanation, their defaults and their checks, written once (docs/spec.md section 5).

``CamOptions`` is read by ``explain``, the method classes, the Fig. 5 figure and the command line.
"""

from __future__ import annotations

import dataclasses
import math

from ..config import check_choice

__all__ = ["CamOptions", "METHODS", "SMOOTHS", "WEIGHTS", "WEIGHT_LABELS", "SCALES"]

#: ``"gradcam++"``: the clean image only; ``"smooth"``: Smooth Grad-CAM++ over noisy copies.
METHODS = ("gradcam++", "smooth")
#: ``"maps"`` averages per-copy maps; ``"derivatives"`` averages g, g^2, g^3 (Omeiza et al.).
SMOOTHS = ("maps", "derivatives")
#: omega: |W| (default), W (the exact masked-FC logit without bias) or 1 (the author's notebook).
WEIGHTS = ("abs", "fc", "ones")
#: Colour scale of a figure's maps: ``"shared"`` one scale for all maps of the figure (nodes can be
#: compared), ``"panel"`` each map min-max scaled on its own (docs/spec.md section 5's maps).
SCALES = ("shared", "panel")
#: How figures and reports write each omega.
WEIGHT_LABELS = {"abs": "|W|", "fc": "W", "ones": "1"}


@dataclasses.dataclass(frozen=True)
class CamOptions:
    """Validated options of an explanation.

    Attributes:
        method: one of ``METHODS``.
        n_samples: noisy copies per image for ``"smooth"`` (>= 1).
        noise: sigma = noise * (max(x) - min(x)) per image (finite, >= 0).
        smooth: one of ``SMOOTHS``.
        weights: omega in the target score, one of ``WEIGHTS``.
        scale: colour scale of figures, one of ``SCALES`` (``explain`` returns each map scaled on
            its own whatever this says).
    """

    method: str = "smooth"
    n_samples: int = 16
    noise: float = 0.15
    smooth: str = "maps"
    weights: str = "abs"
    scale: str = "shared"

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("smooth", self.smooth, SMOOTHS)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("scale", self.scale, SCALES)
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {self.n_samples!r}")
        noise = self.noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")

    def describe(self) -> str:
        """The method and its options in words, for figure titles and reports."""
        if self.method == "gradcam++":
            return f"Grad-CAM++, omega = {WEIGHT_LABELS[self.weights]}"
        return (
            f"Smooth Grad-CAM++ ({self.n_samples} noisy copies, noise {self.noise:g}, {self.smooth} averaged), "
            f"omega = {WEIGHT_LABELS[self.weights]}"
        )
