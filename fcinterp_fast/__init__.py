"""fcinterp_fast: a fast interpretation of the final fully connected layer of a classifier.

For every class row of a head it fits the Asymmetric Laplace model (Algorithm 1 of arXiv
2205.11908 plus an exact ALD maximum likelihood fit), splits the row into sub-groups of neurons,
and explains what a group sees with Smooth Grad-CAM++ through a masked head. The behaviour is
fixed by docs/spec.md.

Example:
    >>> import fcinterp_fast
    >>> fit = fcinterp_fast.fit(fcinterp_fast.models.load())       # doctest: +SKIP
    >>> fit.members("tricycle", "+*")                              # doctest: +SKIP
"""

import logging

from . import models
from ._version import __version__
from .api import fit
from .backends.registry import available as available_backends
from .cam.methods import explain
from .config import FitConfig
from .diagnostics import FitWarning
from .heads.find import head_weight
from .nulls import null_head
from .result import AldFit, HeadFit

# The library logs to "fcinterp_fast" and prints nothing unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "fit",
    "explain",
    "head_weight",
    "null_head",
    "available_backends",
    "HeadFit",
    "AldFit",
    "FitConfig",
    "FitWarning",
    "models",
    "__version__",
]
