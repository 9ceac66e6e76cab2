"""Types of the C++ extension ``fcinterp_fast._cpu`` (``csrc/bindings.cpp``), for type checkers only."""

import numpy as np
import numpy.typing as npt

def fit_rows(
    head: np.ndarray,
    dtype: str,
    tree: str,
    root: str,
    grid: str,
    min_size: int,
    levels: int,
    count: np.ndarray,
    mean: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    r2: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    kappa: np.ndarray,
    loglik: np.ndarray,
    threads: int = 0,
    counting_from: int = 0,
    loglik_laplace: np.ndarray | None = None,
    loglik_normal: np.ndarray | None = None,
    ks: np.ndarray | None = None,
) -> int:
    """Fit every row of ``head`` (R, D) into the output arrays, in place; returns the node columns needed.
    The goodness-of-fit outputs (all three or none) get docs/spec.md section 7's per-row values."""

def _fit_rows_profiled(
    head: np.ndarray,
    dtype: str,
    tree: str,
    root: str,
    grid: str,
    min_size: int,
    levels: int,
    count: np.ndarray,
    mean: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    r2: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    kappa: np.ndarray,
    loglik: np.ndarray,
    threads: int = 0,
    counting_from: int = 0,
    loglik_laplace: np.ndarray | None = None,
    loglik_normal: np.ndarray | None = None,
    ks: np.ndarray | None = None,
) -> tuple[int, dict[str, float]]:
    """``fit_rows``, also returning the seconds of each phase (sort, logs, tree, ald, gof) summed over threads."""

def _ald_rows(
    head: np.ndarray,
    dtype: str,
    loc: np.ndarray,
    scale: np.ndarray,
    kappa: np.ndarray,
    loglik: np.ndarray,
    threads: int = 0,
    counting_from: int = 0,
) -> None:
    """The ALD fit alone of every row of ``head``, into (R,) float64 arrays."""

def _sort_rows(head: np.ndarray, dtype: str, method: str = "auto") -> npt.NDArray[np.float64]:
    """Every row of ``head`` (R, D) sorted as the row kernel sorts it (method 'auto', 'network' or
    'radix'), as (R, D) float64."""

def _sort_method(dtype: str, cols: int) -> str:
    """How the row kernel sorts rows of ``cols`` values: 'insertion', 'network' or 'radix'."""

def _exact_sum(values: np.ndarray) -> float:
    """Correctly rounded sum of a 1-D float64 array."""

def _log_abs(values: np.ndarray) -> npt.NDArray[np.float64]:
    """ln|x| of a 1-D float64 array."""

def _exp_nonpositive(values: np.ndarray) -> npt.NDArray[np.float64]:
    """e^x of a 1-D float64 array of x <= 0 (0 below -708)."""

def _log_abs_float32(values: np.ndarray) -> npt.NDArray[np.float64]:
    """ln|x| of a 1-D float32 array, as float64."""

def build_info() -> dict[str, str | bool | int]:
    """How the extension was built and what it runs on here."""
