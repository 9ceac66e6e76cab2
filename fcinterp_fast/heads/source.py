"""Where the rows of a head come from: a validated (K, D) view read in row blocks.

``fit`` and ``HeadFit.mask`` never hold more of the head than one block beyond what the caller
already has in memory; file-backed sources read their blocks lazily. Every read first checks the
source's fingerprint (``fingerprint.py``): a head changed since it was opened raises instead of
giving rows the fit did not see.
"""

from __future__ import annotations

import torch

from .fingerprint import Fingerprint, TensorFingerprint

__all__ = ["HeadSource", "TensorSource", "FLOAT_DTYPES", "check_head_tensor", "check_block"]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# float64 statistics stay finite for |x| <= this / D (sums of D terms, weighted gap sums of the ALD).
_FLOAT64_LIMIT = torch.finfo(torch.float64).max / 4


class HeadSource:
    """A (K, D) head read in blocks of rows.

    Attributes:
        shape: (K, D).
        dtype: one of ``FLOAT_DTYPES``.
        device: where ``rows`` returns its blocks.
        on_disk: True when every block is read from storage (``fit`` then reads one block ahead
            into buffers it reuses); False when ``rows`` returns views of memory already held.
        fingerprint: the head's state when the source was opened (``check_unchanged``).
        description: what the head is, for people (``str(source)``): for a file, which tensor of
            which file, and why it was chosen when it is not stored as a head (a tied embedding).
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    on_disk: bool = False
    fingerprint: Fingerprint
    description: str = "a head"

    def __str__(self) -> str:
        return self.description

    def check_unchanged(self) -> None:
        """Raise (naming what changed) if the head is no longer what this source opened; every
        read checks this, and ``HeadFit`` once more when the fit is done."""
        self.fingerprint.check()

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as a (stop - start, D) tensor (a view where possible; never written)."""
        raise NotImplementedError

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """Copy rows ``start:stop`` into ``out``, a (stop - start, D) CPU tensor of ``dtype``; returns ``out``."""
        return out.copy_(self.rows(start, stop))


class TensorSource(HeadSource):
    """A head that is already a tensor in memory."""

    def __init__(self, weight: torch.Tensor):
        self.weight = check_head_tensor(weight)
        K, D = self.weight.shape
        self.shape = (K, D)
        self.dtype = self.weight.dtype
        self.device = self.weight.device
        self.fingerprint = TensorFingerprint(self.weight)
        self.description = f"a {K}x{D} {str(self.dtype).replace('torch.', '')} tensor on {self.device}"

    def rows(self, start: int, stop: int) -> torch.Tensor:
        self.check_unchanged()
        return self.weight[start:stop]


def check_head_tensor(weight: torch.Tensor, what: str = "head") -> torch.Tensor:
    """Validate dtype and shape (docs/spec.md section 1) and return a (K, D) view; never copies or modifies."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{what} has dtype {weight.dtype}; expected one of float16, bfloat16, float32, float64")
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):  # conv 1x1 head (K, D, 1, 1)
        weight = weight.flatten(1)
    if weight.dim() != 2:
        raise ValueError(
            f"{what} must be a (K, D) matrix or a (K, D, 1, 1) conv 1x1 kernel, got shape {tuple(weight.shape)}"
        )
    if weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(weight.shape)} (need K >= 1 classes and D >= 1 features)")
    return weight.detach()


def check_block(block: torch.Tensor, first_row: int) -> None:
    """Raise ``ValueError`` naming the first row that is not finite (or too large for float64)."""
    # NaN and inf propagate through a sum in any order, so a row's sum is finite unless the row holds
    # one or its finite values overflow; only those rows are checked element by element (a full
    # isfinite pass costs more than some backends' whole fit).
    suspects = (~torch.isfinite(block.sum(dim=1))).nonzero().flatten()
    if suspects.numel():
        finite = torch.isfinite(block[suspects]).all(dim=1)
        if not bool(finite.all()):
            bad = int(suspects[(~finite).nonzero()[0]])
            raise ValueError(
                f"row {first_row + bad} of the head contains NaN or infinite values; every weight must be finite"
            )
    if block.dtype == torch.float64:
        limit = _FLOAT64_LIMIT / block.shape[1]
        too_big = (block.abs() > limit).any(dim=1)
        if bool(too_big.any()):
            bad = int(too_big.nonzero()[0])
            raise ValueError(
                f"row {first_row + bad} of the head has a value with |x| > {limit:.3g}; float64 sums "
                f"of its {block.shape[1]} values could overflow"
            )
