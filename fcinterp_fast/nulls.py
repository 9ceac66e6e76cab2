"""Null heads (docs/spec.md section 7): noise with each row's own moments or fitted distribution.

A null head has the shape and dtype of the head it imitates; its row k is drawn i.i.d. from

* ``"normal"``: N(mean_k, std_k^2) (row k's mean and ddof-0 standard deviation);
* ``"laplace"``: Laplace(median_k, b_k), b_k = mean |theta_k - median_k| (row k's Laplace MLE);
* ``"ald"``: row k's fitted ALD (docs/spec.md section 4): what a perfectly ALD-like head gives.

Fitting it with the same options gives the baseline the real fit is compared with (``fit(null=...)``,
``HeadFit.summary``). Rows are drawn in chunks of ``CHUNK_ROWS`` rows on the CPU (row parameters in
float64, the draws in float64 for float64 heads and in float32 for the others), chunk c from its
own generator seeded by (seed, kind, c), then rounded to the head's dtype: the same seed
gives the same head whatever block size reads it, on any device. ``NullSource`` draws the chunks a
block needs when ``fit`` reads it, so the null of a file head is streamed like the head itself.
Rows whose model is degenerate (zero spread; an ALD with scale 0 or kappa 0 / inf) are constant
(their median).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .backends.torch_vec import ald_rows
from .config import NULL_KINDS, check_choice, check_int
from .gof import ald_ppf, ald_valid
from .heads.find import open_head
from .heads.source import HeadSource

__all__ = ["null_head", "NullSource", "CHUNK_ROWS", "check_null_kinds", "chunk_seed"]

#: Rows drawn from one seed; a null head's rows depend on (seed, kind, row // CHUNK_ROWS) only.
CHUNK_ROWS = 256


def check_null_kinds(null) -> tuple[str, ...]:
    """``null`` (None, one kind, or a sequence of kinds) as a tuple of distinct kinds of ``NULL_KINDS``."""
    if null is None:
        return ()
    kinds = (null,) if isinstance(null, str) else null
    if not isinstance(kinds, Sequence) or not all(isinstance(k, str) for k in kinds):
        raise TypeError(f"null must be None, a kind or a sequence of kinds ({', '.join(NULL_KINDS)}), got {null!r}")
    for kind in kinds:
        check_choice("null kind", kind, NULL_KINDS)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"null names a kind twice: {list(kinds)}")
    return tuple(kinds)


def chunk_seed(seed: int, kind: str, chunk: int) -> int:
    """The generator seed of chunk ``chunk`` of a null head of ``kind`` drawn from base ``seed``."""
    words = np.random.SeedSequence([seed, NULL_KINDS.index(kind), chunk]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def draw_rows(real: torch.Tensor, kind: str, generator: torch.Generator, dtype: torch.dtype = torch.float64):
    """Null rows for the rows ``real`` (R, D) float64 CPU: (R, D) CPU tensor of ``dtype`` (float32 or
    float64: the precision of the draws), drawn from ``generator``. Row parameters are float64."""
    rows, D = real.shape
    if kind == "normal":
        std, mean = torch.std_mean(real, dim=1, keepdim=True, correction=0)
        return torch.randn(rows, D, dtype=dtype, generator=generator).mul_(std.to(dtype)).add_(mean.to(dtype))
    u = torch.rand(rows, D, dtype=dtype, generator=generator)
    xs = real.sort(dim=1).values
    half = D // 2
    median = xs[:, half : half + 1] if D % 2 else (xs[:, half - 1 : half] + xs[:, half : half + 1]) / 2
    if kind == "laplace":
        b = (real - median).abs().mean(1, keepdim=True).to(dtype)
        # inverse cdf on u - 1/2 in (-1/2, 1/2); u == 0 would give -inf: draw it at the median
        centred = torch.where(u > 0, u - 0.5, 0.0)
        return median.to(dtype) - b * centred.sign() * torch.log1p(-2 * centred.abs())
    loc, scale, kappa, _ = ald_rows(xs)
    valid = ald_valid(scale, kappa)[:, None]
    one = torch.ones_like(kappa)[:, None]
    scale, kappa = torch.where(valid, scale[:, None], 0.0), torch.where(valid, kappa[:, None], one)
    loc, scale, kappa = loc[:, None].to(dtype), scale.to(dtype), kappa.to(dtype)
    q = torch.where(u > 0, u, 0.5)  # 0 < q < 1
    return torch.where(valid, ald_ppf(q, loc, scale, kappa), median.to(dtype))


class NullSource(HeadSource):
    """The null head of ``kind`` of the head ``source``, drawn from ``seed``, read in row blocks.

    Shape, dtype and device are the head's. Its fingerprint is the head's: a null of a head that
    changed since it was opened raises like the head would (its rows would not be the fit's).
    """

    def __init__(self, source: HeadSource, kind: str, seed: int):
        check_choice("null kind", kind, NULL_KINDS)
        self.source, self.kind = source, kind
        self.seed = check_int("null seed", seed, 0, 2**63 - 1)
        self.shape, self.dtype, self.device = source.shape, source.dtype, source.device
        self.on_disk = source.on_disk
        self.fingerprint = source.fingerprint
        self._cached: tuple[int, torch.Tensor] | None = None  # (chunk, its rows): blocks may share a chunk

    def _chunk(self, chunk: int) -> torch.Tensor:
        if self._cached is not None and self._cached[0] == chunk:
            return self._cached[1]
        start, stop = chunk * CHUNK_ROWS, min((chunk + 1) * CHUNK_ROWS, self.shape[0])
        real = self.source.rows(start, stop).to("cpu", torch.float64)
        generator = torch.Generator().manual_seed(chunk_seed(self.seed, self.kind, chunk))
        work = torch.float64 if self.dtype == torch.float64 else torch.float32  # enough for the head's dtype
        drawn = draw_rows(real, self.kind, generator, work)
        # stay inside what the fit accepts: finite in the head's dtype, float64 sums that cannot overflow
        info = torch.finfo(self.dtype)
        limit = info.max if self.dtype != torch.float64 else info.max / (4 * self.shape[1])
        rows = drawn.clamp_(-limit, limit).to(self.dtype)
        self._cached = (chunk, rows)
        return rows

    def rows(self, start: int, stop: int) -> torch.Tensor:
        self.check_unchanged()
        out = torch.empty(max(stop - start, 0), self.shape[1], dtype=self.dtype)
        for chunk in range(start // CHUNK_ROWS, (stop - 1) // CHUNK_ROWS + 1 if stop > start else 0):
            first = chunk * CHUNK_ROWS
            a, b = max(start, first), min(stop, first + CHUNK_ROWS)
            out[a - start : b - start] = self._chunk(chunk)[a - first : b - first]
        return out.to(self.device)


def null_head(W, kind: str, *, generator: torch.Generator | None = None, name: str | None = None) -> torch.Tensor:
    """A null head of ``W`` (docs/spec.md section 7): W's shape and dtype, row k drawn i.i.d. from
    row k's normal (``kind="normal"``), Laplace MLE (``"laplace"``) or fitted ALD (``"ald"``).

    Args:
        W: anything ``fit`` takes (tensor, numpy array, head module, model, file path).
        kind: ``"normal"``, ``"laplace"`` or ``"ald"``.
        generator: a CPU ``torch.Generator``: one base seed is drawn from it (None: torch's global
            generator), and every chunk of ``CHUNK_ROWS`` rows from a seed derived from that.
        name: which tensor or submodule holds the head (files and models; see ``head_weight``).

    Returns:
        (K, D) tensor (W's shape for a tensor of shape (K, D, 1, 1)) of the head's dtype, on the
        head's device (the CPU for files). W is not modified.

    Example:
        >>> import torch, fcinterp_fast
        >>> W = torch.randn(10, 64)
        >>> noise = fcinterp_fast.null_head(W, "normal", generator=torch.Generator().manual_seed(0))
        >>> noise.shape, noise.dtype
        (torch.Size([10, 64]), torch.float32)
    """
    check_choice("null kind", kind, NULL_KINDS)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    source, _ = open_head(W, name=name)
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    head = NullSource(source, kind, seed).rows(0, source.shape[0])
    if isinstance(W, torch.Tensor) and W.dim() == 4:
        head = head.reshape(W.shape)
    return head
