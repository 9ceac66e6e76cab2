"""Backends: one module each, registered in ``registry`` and chosen by ``fit(backend=...)``.

Importing this package imports every backend module, and each registers itself (in this order,
which is the order ``fcinterp_fast.available_backends()`` lists them in). A backend that cannot
run here (no compiler built the C++ extension, no Triton or CUDA) still registers and says why.
"""

# Each module registers itself when imported, in this order: the order users see them listed in.
# isort: off
from . import reference  # noqa: F401
from . import torch_vec  # noqa: F401
from . import cpu  # noqa: F401
from . import triton_fit  # noqa: F401

# isort: on
from .registry import Backend, available, exact_backend, get_backend, names, register_backend, resolve

__all__ = ["Backend", "available", "exact_backend", "get_backend", "names", "register_backend", "resolve"]
