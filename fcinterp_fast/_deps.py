"""Optional dependencies: imported where they are needed, with a message saying what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependency", "require"]


class MissingDependency(ImportError):
    """An optional package that a feature needs is not installed; the message says how to get it."""


def require(module: str, feature: str, install: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``MissingDependency`` naming what to install.

    Args:
        module: the module to import (``"pyarrow.parquet"``).
        feature: what needs it, for the message (``"HeadFit.to_parquet"``).
        install: the pip requirement that provides it (default: the top-level package name).

    Example:
        >>> pd = require("pandas", "HeadFit.to_pandas")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = install or module.split(".")[0]
        raise MissingDependency(f"{feature} needs {package}: pip install {package} ({error})") from error
