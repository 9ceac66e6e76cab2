"""fcinterp_fast: a fast interpretation of the final fully connected layer of a classifier.

For every class row of a head it fits the Asymmetric Laplace model (Algorithm 1 of arXiv
2205.11908 plus an exact ALD maximum likelihood fit), splits the row into sub-groups of neurons,
and explains what a group sees with Smooth Grad-CAM++ through a masked head.
"""
from . import models
from .api import fit
from .backends.registry import available as _available
from .heads import head_weight
from .result import AldFit, HeadFit

__version__ = "0.1.0"
__all__ = ["fit", "explain", "head_weight", "HeadFit", "AldFit", "backends", "models", "__version__"]


def backends() -> dict[str, str]:
    """Every backend and whether it can run here: ``{"cpu": "available", "triton": "<reason>", ...}``."""
    return _available()


def explain(*args, **kwargs):
    """Smooth Grad-CAM++ through the neurons of split nodes; see ``fcinterp_fast.cam.explain``."""
    from .cam import explain as _explain

    return _explain(*args, **kwargs)
