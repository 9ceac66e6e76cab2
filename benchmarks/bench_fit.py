"""pytest-benchmark timings of every implementation ``fcinterp bench`` knows, on the bundled
EfficientNet-Lite0 head (1000 x 1280) in float32 and bfloat16.

    pytest benchmarks/bench_fit.py --benchmark-only --benchmark-columns=min,median,rounds

The implementations, heads and sample rows are ``fcinterp_fast.bench``'s (``implementations``,
``make_head``, ``sample_rows``): slow implementations (reference, numpy-loop, scipy-ald, torch
beyond 1000 rows) are timed on evenly spaced sample rows; ``extra_info`` records how many. The
timing and its JSON (``--benchmark-json``) are pytest-benchmark's; ``benchmarks/run.py`` (``fcinterp
bench``) measures the same through ``bench.time_call`` and writes the common layout. Not part of the
test suite: speed goals live here and in benchmarks/run.py, never in tests.
"""

from __future__ import annotations

import pytest
import torch

from fcinterp_fast import bench

_IMPLS = bench.implementations(slow_rows=16, torch_rows=1000)


@pytest.fixture(scope="module")
def head() -> torch.Tensor:
    return bench.make_head(bench.BUNDLED_SHAPE, seed=0)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(_IMPLS))
def test_fit(benchmark, head, name, dtype):
    impl = _IMPLS[name]
    K = head.shape[0]
    W = bench.sample_rows(impl, head.to(bench.DTYPES[dtype]))
    rows = W.shape[0]
    benchmark.group = f"{K}x{head.shape[1]} {dtype}"
    benchmark.extra_info.update(rows_timed=rows, rows_in_head=K, computes=impl.what)

    def fit():
        impl.fit(W)
        bench.sync(impl.device)

    benchmark.pedantic(fit, rounds=3 if rows == K else 1, warmup_rounds=1)
