"""Goodness of fit of each class row against the ALD, the Laplace and the normal (docs/spec.md section 7).

Backends write three values per row in the same pass as the fit (``GOF_FIELDS`` of ``RowFit``):
the symmetric Laplace and the normal maximum log-likelihoods and the Kolmogorov-Smirnov statistic
of the row against its fitted ALD. Everything else (likelihood ratio, AIC differences, p-values)
follows from those, the ALD log-likelihood and the row length, and is computed here on access
(``GofFit``). This module is a floor below ``result`` and the backends: it imports neither.

Definitions, per row x of n values (all of them, signed), sorted x_(1) <= ... <= x_(n):

* ``loglik_laplace`` = -n (1 + ln(2 b)), b = mean |x - median| (the Laplace MLE);
* ``loglik_normal`` = -n/2 (1 + ln(2 pi sigma^2)), sigma^2 = mean (x - mean)^2 (ddof 0);
* ``ks`` = max_i max(i/n - F(x_(i)), F(x_(i)) - (i-1)/n) with F the fitted ALD's cdf, computed as
  ``scipy.stats.laplace_asymmetric.cdf`` computes it (so it equals ``scipy.stats.kstest``).

A row is degenerate for a model where that model has no density: n < 3, all values equal (every
model), or an ALD fit with scale 0 or kappa 0 / inf / NaN (ties at the optimum, docs/spec.md
section 4). Its values for that model are NaN, and so is everything derived from them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

__all__ = [
    "GOF_FIELDS",
    "ald_ppf",
    "GofFit",
    "gof_row",
    "gof_rows",
    "ald_cdf",
    "ald_valid",
    "ks_pvalue",
]

#: Per-row values every backend writes next to the ALD fit; (R,) float64 each.
GOF_FIELDS = ("loglik_laplace", "loglik_normal", "ks")

#: Free parameters of each model, for the AIC.
PARAMETERS = {"ald": 3, "laplace": 2, "normal": 2}

_LOG_2PI = math.log(2 * math.pi)


def ald_valid(scale, kappa):
    """True where an ALD fit has a density: 0 < scale < inf and 0 < kappa < inf (floats or tensors)."""
    if isinstance(scale, torch.Tensor):
        return (scale > 0) & torch.isfinite(scale) & (kappa > 0) & torch.isfinite(kappa)
    return 0 < scale < math.inf and 0 < kappa < math.inf


def ald_ppf(q: torch.Tensor, loc, scale, kappa) -> torch.Tensor:
    """The ALD quantiles at probabilities 0 < q < 1, as ``scipy.stats.laplace_asymmetric._ppf``
    writes them, broadcast over tensors (or floats for the parameters)."""
    both = kappa + 1 / kappa
    upper = -torch.log((1 - q) * both * kappa) / kappa
    lower = torch.log(q * both / kappa) * kappa
    return loc + scale * torch.where(q >= kappa / both, upper, lower)


def ald_cdf(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """The ALD cdf, as ``scipy.stats.laplace_asymmetric._cdf`` writes it, broadcast over tensors."""
    z = (x - loc) / scale
    kapinv = 1 / kappa
    both = kappa + kapinv
    upper = z >= 0
    # one exp per element: exp(-z kappa) above loc, exp(z / kappa) below (the same floats as scipy's)
    tail = torch.exp(torch.where(upper, -z * kappa, z * kapinv))
    return torch.where(upper, 1 - tail * (kapinv / both), tail * (kappa / both))


def _ald_cdf_scalar(x: float, loc: float, scale: float, kappa: float) -> float:
    z = (x - loc) / scale
    kapinv = 1 / kappa
    both = kappa + kapinv
    return 1 - math.exp(-z * kappa) * (kapinv / both) if z >= 0 else math.exp(z * kapinv) * (kappa / both)


def gof_row(x: list[float], loc: float, scale: float, kappa: float) -> tuple[float, float, float]:
    """``(loglik_laplace, loglik_normal, ks)`` of one row, in plain Python float64 (the reference).

    Args:
        x: the row's values sorted ascending (floats).
        loc, scale, kappa: the row's ALD fit (docs/spec.md section 4).
    """
    n = len(x)
    nan = math.nan
    if n < 3 or x[0] == x[-1]:
        return nan, nan, nan
    half = n // 2
    median = x[half] if n % 2 else (x[half - 1] + x[half]) / 2
    b = math.fsum(abs(v - median) for v in x) / n
    mean = math.fsum(x) / n
    # sigma in scaled form: the squares of rows of tiny values would underflow
    spread = max(abs(x[0] - mean), abs(x[-1] - mean))
    sigma = spread * math.sqrt(math.fsum(((v - mean) / spread) ** 2 for v in x) / n)
    loglik_laplace = -n * (1 + math.log(2 * b))
    loglik_normal = -n / 2 * (1 + _LOG_2PI) - n * math.log(sigma)
    ks = nan
    if ald_valid(scale, kappa):
        ks = 0.0
        for i, v in enumerate(x):
            F = _ald_cdf_scalar(v, loc, scale, kappa)
            ks = max(ks, (i + 1) / n - F, F - i / n)
    return loglik_laplace, loglik_normal, ks


def gof_rows(
    xs: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, kappa: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loglik_laplace, loglik_normal, ks)`` of every row, vectorised, on ``xs``'s device.

    Args:
        xs: (R, n) float64, each row sorted ascending.
        loc, scale, kappa: (R,) float64, the rows' ALD fits.

    Returns:
        three (R,) float64 tensors, NaN where degenerate (see the module docstring).
    """
    rows, n = xs.shape
    nan = torch.full((rows,), float("nan"), dtype=torch.float64, device=xs.device)
    if n < 3:
        return nan, nan.clone(), nan.clone()
    flat = xs[:, 0] == xs[:, -1]
    half = n // 2
    median = xs[:, half] if n % 2 else (xs[:, half - 1] + xs[:, half]) / 2
    b = (xs - median[:, None]).abs().sum(1) / n
    mean = xs.sum(1) / n
    spread = torch.maximum((xs[:, 0] - mean).abs(), (xs[:, -1] - mean).abs())
    spread = torch.where(spread > 0, spread, 1.0)
    sigma = spread * torch.sqrt((((xs - mean[:, None]) / spread[:, None]) ** 2).sum(1) / n)
    loglik_laplace = torch.where(flat, nan, -n * (1 + torch.log(2 * b)))
    loglik_normal = torch.where(flat, nan, -n / 2 * (1 + _LOG_2PI) - n * torch.log(sigma))

    valid = ald_valid(scale, kappa) & ~flat
    one = torch.ones_like(scale)
    F = ald_cdf(
        xs,
        torch.where(valid, loc, 0.0)[:, None],
        torch.where(valid, scale, one)[:, None],
        torch.where(valid, kappa, one)[:, None],
    )
    i = torch.arange(n, dtype=torch.float64, device=xs.device)
    ks = torch.maximum((i + 1) / n - F, F - i / n).amax(1)
    ks = torch.where(valid, ks, nan)
    return loglik_laplace, loglik_normal, ks


def ks_pvalue(ks, n: int) -> np.ndarray:
    """``scipy.stats.kstest``'s two-sided p-value for statistics ``ks`` of samples of size ``n``
    (its exact distribution ``kstwo``, clipped to [0, 1]); NaN stays NaN. Returns float64 numpy."""
    from scipy import stats

    ks = np.asarray(ks, dtype=np.float64)
    p = np.full(ks.shape, np.nan)
    ok = np.isfinite(ks)
    if ok.any():
        p[ok] = np.clip(stats.kstwo.sf(ks[ok], n), 0.0, 1.0)
    return p


@dataclasses.dataclass
class GofFit:
    """Goodness of fit of every class row (docs/spec.md section 7); every attribute (K,) float64.

    Attributes:
        n: values per row (D).
        loglik_ald: the ALD maximum log-likelihood (``HeadFit.ald.loglik``; NaN where the ALD fit
            is degenerate: scale 0, kappa 0, inf or NaN).
        loglik_laplace, loglik_normal: the symmetric Laplace and the normal maximum log-likelihoods.
        ks: Kolmogorov-Smirnov statistic of the row against its fitted ALD.

    Derived on access: ``lr_asym`` = 2 (loglik_ald - loglik_laplace) (>= 0 up to rounding: the ALD
    nests the Laplace at kappa = 1) and its chi2(1) p-value ``p_asym``; ``daic_normal``,
    ``daic_laplace`` = AIC of that model - AIC of the ALD (positive: the ALD is preferred);
    ``ks_p``, the KS p-value. The parameters are estimated from the same row, so ``ks_p`` is
    conservative (too large): read it as a distance, not as a calibrated test.
    """

    n: int
    loglik_ald: torch.Tensor
    loglik_laplace: torch.Tensor
    loglik_normal: torch.Tensor
    ks: torch.Tensor

    FIELDS = (
        "loglik_ald",
        "loglik_laplace",
        "loglik_normal",
        "lr_asym",
        "p_asym",
        "daic_normal",
        "daic_laplace",
        "ks",
        "ks_p",
    )

    @classmethod
    def from_rows(cls, n: int, loglik_ald, scale, kappa, loglik_laplace, loglik_normal, ks) -> GofFit:
        """From a fit's per-row values; the ALD log-likelihood becomes NaN where the ALD is degenerate."""
        valid = ald_valid(scale, kappa) & torch.isfinite(loglik_laplace)
        return cls(
            n=n,
            loglik_ald=torch.where(valid, loglik_ald, float("nan")),
            loglik_laplace=loglik_laplace,
            loglik_normal=loglik_normal,
            ks=ks,
        )

    @property
    def lr_asym(self) -> torch.Tensor:
        return 2 * (self.loglik_ald - self.loglik_laplace)

    @property
    def p_asym(self) -> torch.Tensor:
        """chi2(1).sf(lr_asym) (a rounding-negative ratio counts as 0: p = 1)."""
        from scipy import special

        lr = self.lr_asym.cpu().numpy()
        p = special.chdtrc(1, np.where(lr < 0, 0.0, lr))
        return torch.from_numpy(np.where(np.isnan(lr), np.nan, p)).to(self.ks.device)

    def _aic(self, model: str) -> torch.Tensor:
        return 2 * PARAMETERS[model] - 2 * getattr(self, f"loglik_{model}")

    @property
    def daic_normal(self) -> torch.Tensor:
        return self._aic("normal") - self._aic("ald")

    @property
    def daic_laplace(self) -> torch.Tensor:
        return self._aic("laplace") - self._aic("ald")

    @property
    def ks_p(self) -> torch.Tensor:
        if not hasattr(self, "_ks_p"):
            self._ks_p = torch.from_numpy(ks_pvalue(self.ks.cpu().numpy(), self.n)).to(self.ks.device)
        return self._ks_p

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.FIELDS:
            raise KeyError(f"unknown goodness-of-fit column {name!r}; columns: {', '.join(self.FIELDS)}")
        return getattr(self, name)

    def columns(self) -> dict[str, np.ndarray]:
        """Every column of ``FIELDS`` as a (K,) float64 numpy array."""
        return {name: getattr(self, name).cpu().numpy() for name in self.FIELDS}

    def to_pandas(self):
        """One row per class, the columns ``FIELDS`` (needs pandas)."""
        from ._deps import require

        pd = require("pandas", "GofFit.to_pandas")
        return pd.DataFrame(self.columns(), columns=list(self.FIELDS))
