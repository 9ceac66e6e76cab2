"""The head behind a fit loaded by ``HeadFit.load``: row checksums, and the sources that use them.

A saved fit keeps its thresholds, not the weights, so ``mask`` / ``members`` of a loaded fit need
the head again. ``HeadFit.save`` stores the crc32 of every row (the raw bytes of the row in the
head's dtype, as ``fingerprint.FileFingerprint`` computes them); the head given back on load is
wrapped in a ``VerifiedSource`` that checks each row it reads against them, so a loaded fit never
gives the members of another head. Without a head, a ``DetachedSource`` says how to give one.
"""

from __future__ import annotations

import numpy as np
import torch

from .fingerprint import Fingerprint, row_crc32s
from .source import HeadSource

__all__ = ["row_crc32", "VerifiedSource", "DetachedSource"]

# Rows read at a time when checksums must be computed.
_BLOCK_ROWS = 4096


def row_crc32(source: HeadSource) -> np.ndarray:
    """(K,) int64: the crc32 of each row's raw bytes. Rows whose checksum the source already
    knows (a file source after a fit, a loaded fit's head) are not read again."""
    K = source.shape[0]
    known = getattr(source, "crc32", None)
    if known is None and getattr(source, "path", None) == getattr(source.fingerprint, "path", False):
        # a file fingerprint's checksums are those of the file's rows: only a source that reads
        # that file may use them (a null head of the file shares its fingerprint, not its rows)
        known = getattr(source.fingerprint, "crc32", None)
    if isinstance(known, torch.Tensor):
        known = known.cpu().numpy()
    crc = np.full(K, -1, dtype=np.int64) if known is None else np.array(known, dtype=np.int64)  # a copy
    missing = np.flatnonzero(crc < 0)
    for start in range(0, K, _BLOCK_ROWS) if missing.size else ():
        stop = min(start + _BLOCK_ROWS, K)
        if (crc[start:stop] < 0).any():
            crc[start:stop] = _block_crc32(source.rows(start, stop))
    return crc


def _block_crc32(rows: torch.Tensor) -> np.ndarray:
    """(R,) int64 crc32 of each row of an (R, D) tensor, over its little-endian bytes."""
    raw = rows.detach().cpu().contiguous().view(torch.uint8).numpy()  # (R, D * itemsize)
    return np.array(row_crc32s(raw.data, raw.shape[1]), dtype=np.int64)


class _Unchecked(Fingerprint):
    def check(self) -> None:
        pass


class VerifiedSource(HeadSource):
    """``inner`` (the head given to ``HeadFit.load``), whose rows must have the saved checksums.

    Raises ``ValueError`` naming the first row read whose crc32 differs from the fitted head's.
    """

    def __init__(self, inner: HeadSource, crc32: np.ndarray, origin: str):
        self.inner, self.crc32, self.origin = inner, crc32, origin
        self.shape, self.dtype, self.device = inner.shape, inner.dtype, inner.device
        self.on_disk, self.fingerprint = inner.on_disk, inner.fingerprint
        for attribute in ("path", "name"):
            if hasattr(inner, attribute):
                setattr(self, attribute, getattr(inner, attribute))

    def rows(self, start: int, stop: int) -> torch.Tensor:
        rows = self.inner.rows(start, stop)
        differ = np.flatnonzero(_block_crc32(rows) != self.crc32[start:stop])
        if differ.size:
            raise ValueError(
                f"row {start + int(differ[0])} of the head given to HeadFit.load is not the row that was fitted "
                f"(its crc32 differs from the one saved in {self.origin}): pass the head the fit was made on"
            )
        return rows


class DetachedSource(HeadSource):
    """The head of a loaded fit that was not given back: shape and dtype only; reading raises."""

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, crc32: np.ndarray, reason: str):
        self.shape, self.dtype, self.device = shape, dtype, torch.device("cpu")
        self.crc32, self.reason = crc32, reason
        self.fingerprint = _Unchecked()

    def rows(self, start: int, stop: int) -> torch.Tensor:
        raise ValueError(self.reason)
