"""The one Triton gate: whether Triton kernels (the ``triton`` backend and the Grad-CAM++ kernel) can run.

Triton is optional (``pip install 'fcinterp-fast[gpu]'``). Its kernels need triton >= 3.4 (``tl.sort``,
``tl.gather`` and reverse scans, and an interpreter that computes them correctly) and a CUDA device,
or ``TRITON_INTERPRET=1`` set before triton is imported (the kernels then run slowly on the CPU).
"""

from __future__ import annotations

import os

import torch

__all__ = ["MIN_TRITON", "interpreting", "unavailable"]

#: Oldest Triton whose ``tl.sort``, ``tl.gather``, reverse scans and interpreter the kernels rely on.
MIN_TRITON = (3, 4)


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _version() -> tuple[int, int] | str:
    """(major, minor) of the installed Triton, or why it cannot be imported."""
    try:
        import triton
    except ImportError as err:
        return f"triton is not installed ({err}); install it with pip install 'fcinterp-fast[gpu]'"
    try:
        major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    except ValueError:
        return f"cannot read the triton version {triton.__version__!r}"
    return major, minor


def unavailable() -> str | None:
    """Why Triton kernels cannot run here (not installed, too old, no CUDA device), or None."""
    version = _version()
    if isinstance(version, str):
        return version
    if version < MIN_TRITON:
        return (
            f"triton {version[0]}.{version[1]} is too old; fcinterp_fast's kernels need triton >= "
            f"{MIN_TRITON[0]}.{MIN_TRITON[1]}"
        )
    if not interpreting() and not torch.cuda.is_available():
        return "no CUDA device (set TRITON_INTERPRET=1 to run its kernels slowly on the CPU interpreter)"
    return None
