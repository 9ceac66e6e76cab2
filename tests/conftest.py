"""Shared fixtures: hypothesis profiles and one test case per (registered backend, device).

Backends are read from the registry at collection time, so a backend module added to the
registry later (``cpu``, ``triton``) runs through every backend-parametrised test without any
change here. A backend that cannot run here is skipped with its own reason. Every test marked
``gpu`` (the cuda cases among them) is skipped where CUDA is not available.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import fcinterp_fast
from fcinterp_fast.backends import registry

# "ci" keeps the whole suite to a few minutes on 2 cores; HYPOTHESIS_PROFILE=thorough digs deeper.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("thorough", max_examples=600, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``gpu`` (cuda cases of the ``backend`` fixture included) skip without CUDA."""
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip("gpu test: no CUDA device here")


#: Backends that compute every statistic in float64: held to the oracle's float64 error bounds
#: alone. Every other backend also gets docs/spec.md section 3's float32 tolerance (rtol 1e-5 / atol 1e-6).
FLOAT64_BACKENDS = frozenset({"reference", "torch", "cpu"})


@dataclasses.dataclass(frozen=True)
class BackendCase:
    """One registered backend on one device it declares."""

    name: str
    device: str

    @property
    def float64(self) -> bool:
        return self.name in FLOAT64_BACKENDS

    def put(self, W: torch.Tensor) -> torch.Tensor:
        """``W`` on this case's device (strides are rebuilt by the caller where they matter)."""
        return W.to(self.device)

    def fit(self, W, **options) -> fcinterp_fast.HeadFit:
        """``fcinterp_fast.fit`` with this backend; tensors are moved to the device first."""
        if isinstance(W, torch.Tensor):
            W = self.put(W)
        return fcinterp_fast.fit(W, backend=self.name, **options)

    def one_row(self, W) -> int:
        """The ``max_memory`` that fits ``W`` (a tensor or a file) one row per block on this backend."""
        from fcinterp_fast.api import plan_fit

        return plan_fit(self.put(W) if isinstance(W, torch.Tensor) else W, backend=self.name).row_bytes

    def __str__(self) -> str:
        return f"{self.name}-{self.device}"


def _cases() -> list:
    params = []
    for name in fcinterp_fast.available_backends():
        for device in sorted(registry.get_backend(name).devices):
            marks = [pytest.mark.gpu] if device == "cuda" else []
            params.append(pytest.param(BackendCase(name, device), marks=marks, id=f"{name}-{device}"))
    return params


def _skip_unless_runnable(case: BackendCase) -> None:
    reason = fcinterp_fast.available_backends()[case.name]
    if reason != "available":
        pytest.skip(f"backend {case.name!r} is not available here: {reason}")


@pytest.fixture(scope="session", params=_cases())
def backend(request) -> BackendCase:
    """Every registered backend on every device it declares, skipped (with the reason) where it
    cannot run. Session-scoped so that hypothesis tests may use it."""
    _skip_unless_runnable(request.param)
    return request.param


@pytest.fixture(scope="session")
def lite0():
    """The bundled ImageNet EfficientNet-Lite0 (eval mode), skipped if its weights package is
    not installed."""
    try:
        return fcinterp_fast.models.load("efficientnet_lite0")
    except ImportError as error:
        pytest.skip(f"bundled EfficientNet-Lite0 unavailable: {error}")


@pytest.fixture(scope="session")
def lite0_head(lite0) -> torch.Tensor:
    """Its (1000, 1280) float32 classifier weight."""
    return fcinterp_fast.head_weight(lite0)
