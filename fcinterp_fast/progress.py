"""The one progress bar of the package (fits count rows, table writers count classes)."""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["progress_bar"]


class _NoBar:
    def update(self, n: int) -> None:
        pass


def progress_bar(total: int, progress: bool | None, desc: str, unit: str = "rows"):
    """A tqdm bar counting ``unit`` (``unit``/s), or a silent stand-in; a context manager either way.

    Args:
        total: how many units the work has.
        progress: True: always shown; False: never; None: only where someone watches (stderr is a
            terminal, not under CI), and only once the work has taken a second.
        desc: the bar's label.
    """
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
        delay = 1.0
    else:
        delay = 0.0
    if not progress:
        return contextlib.nullcontext(_NoBar())
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, delay=delay, leave=False, smoothing=0.1)
