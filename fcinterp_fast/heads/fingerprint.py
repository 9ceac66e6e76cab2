"""What a head was when it was read, so that a later read can tell that it changed.

A ``HeadFit`` keeps per-node thresholds, not the weights: ``mask`` / ``members`` (and explanations
through them) read the head's rows again. Had the head changed since the fit, those rows would give
other neurons than the fit found, without any error. Every ``HeadSource`` therefore carries a
fingerprint that each read checks, and raises when the head is no longer what the fit read:

* ``TensorFingerprint``: the tensor's version counter (bumped by every in-place change made through
  any tensor sharing it: ``W.mul_(-1)``, ``copy_``, optimiser steps) and its data pointer (moved when
  the storage is resized or freed). Changes made through ``W.data`` bypass the counter; ``HeadFit``
  compares the node sizes it rebuilds with the fit's, which catches those in all but contrived cases.
* ``FileFingerprint``: the file's size and modification time when it was opened, and the crc32 of
  every row as first read (by the fit, in the reader thread, block by block: no extra pass over the
  file). A row read again must give the same crc32, so a file replaced by one of the same size and
  time is caught where it matters. crc32 detects accidental change, not a crafted collision. A
  deleted file raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import errno
import zlib
from pathlib import Path

import torch

__all__ = ["Fingerprint", "TensorFingerprint", "FileFingerprint", "row_crc32s"]

_REFIT = "masks and members read from it would not be the fit's; fit it again"


def row_crc32s(data, row_bytes: int) -> list[int]:
    """The crc32 of each row in ``data`` (bytes-like: consecutive rows of ``row_bytes`` raw,
    little-endian bytes each): the one row checksum of a file fingerprint and of ``HeadFit.save``."""
    view = memoryview(data).cast("B")
    return [zlib.crc32(view[i : i + row_bytes]) for i in range(0, len(view) - row_bytes + 1, row_bytes)]


class Fingerprint:
    """The state of a head when it was opened; ``check()`` raises if it changed since."""

    def check(self) -> None:
        raise NotImplementedError


class TensorFingerprint(Fingerprint):
    """Version counter and data pointer of a (private, detached) view of a head tensor.

    The view's shape and strides cannot change (no one else holds it); its storage, shared with the
    user's tensor, can: in place (version counter) or by being resized or freed (data pointer).
    """

    def __init__(self, tensor: torch.Tensor):
        self._tensor = tensor
        self._version, self._data_ptr = tensor._version, tensor.data_ptr()

    def check(self) -> None:
        version, data_ptr = self._tensor._version, self._tensor.data_ptr()
        if version != self._version:
            raise ValueError(
                f"the head was modified in place after it was fitted (tensor version {self._version} -> "
                f"{version}): {_REFIT}"
            )
        if data_ptr != self._data_ptr:
            raise ValueError(f"the head's storage was resized or freed after it was fitted: {_REFIT}")


class FileFingerprint(Fingerprint):
    """Size and modification time of a head file, and the crc32 of each of its K rows as first read.

    Attributes:
        path: the file.
        crc32: (K,) int64, each row's crc32 as first read; -1 where the row has not been read yet.
    """

    def __init__(self, path: Path, rows: int):
        stat = path.stat()
        self.path = path
        self._size, self._mtime_ns = stat.st_size, stat.st_mtime_ns
        self.crc32 = torch.full((rows,), -1, dtype=torch.int64)

    def check(self) -> None:
        """Raise if the file was deleted, or its size or modification time changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT,
                f"the head file {self.path} was deleted after it was opened; masks and members read its rows "
                f"again, so it must stay in place until they are done",
            ) from None
        if stat.st_size != self._size:
            change = "shrank" if stat.st_size < self._size else "grew"
            raise ValueError(
                f"{self.path} {change} after it was opened ({self._size} -> {stat.st_size} bytes): {_REFIT}"
            )
        if stat.st_mtime_ns != self._mtime_ns:
            raise ValueError(f"{self.path} was modified after it was opened (its modification time changed): {_REFIT}")

    def check_rows(self, first_row: int, data: memoryview, row_bytes: int) -> None:
        """Record the crc32 of rows read for the first time; raise if a row read before differs.

        Args:
            first_row: index of the first row in ``data``.
            data: the raw bytes of consecutive rows, ``row_bytes`` each.
        """
        crcs = torch.tensor(row_crc32s(data, row_bytes), dtype=torch.int64)
        count = len(crcs)
        before = self.crc32[first_row : first_row + count]
        changed = ((before >= 0) & (before != crcs)).nonzero()
        if changed.numel():
            row = first_row + int(changed[0])
            raise ValueError(
                f"row {row} of {self.path} is not what was read from it before (its crc32 differs): the "
                f"file was replaced or modified after it was opened; {_REFIT}"
            )
        unseen = before < 0
        before[unseen] = crcs[unseen]
