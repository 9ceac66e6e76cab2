"""Heads streamed from files in row blocks: the in-memory result exactly, clear errors for bad files,
the progress bar, GPU staging, and Parquet tables written in row groups."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import fcinterp_fast
from checks import assert_same_fit, assert_same_memberships
from fcinterp_fast.api import plan_fit
from fcinterp_fast.backends import registry
from fcinterp_fast.heads.files import FileSource


def random_head(K: int, D: int, dtype=torch.float16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(K, D, generator=g) * 0.05).to(dtype)


def save_head(path: Path, W: torch.Tensor, name: str = "lm_head.weight") -> Path:
    """A checkpoint holding the head between two other tensors, so its data starts at an offset."""
    state = {"embed.weight": torch.randn(7, 3), name: W, "lm_head.bias": torch.zeros(W.shape[0])}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def budget_for(block_rows: int, W: torch.Tensor, backend: str = "torch") -> int:
    """The ``max_memory`` that gives CPU blocks of ``block_rows`` rows of a file holding ``W``."""
    per_element = registry.get_backend(backend).bytes_per_element + 2 * W.dtype.itemsize
    return block_rows * W.shape[1] * per_element


# ------------------------------------------------------------------------------ exact results
@pytest.mark.parametrize(
    "K, D",
    [(6_000, 256), pytest.param(200_000, 256, marks=pytest.mark.slow, id="200000-256")],
)
def test_streamed_safetensors_equals_in_memory(tmp_path, K, D):
    W = random_head(K, D)
    path = save_head(tmp_path / "head.safetensors", W)
    max_memory = budget_for(997, W)  # 997 rows: blocks that do not divide K
    options = dict(backend="torch", name="lm_head.weight", max_memory=max_memory, device="cpu")
    plan = plan_fit(path, **options)
    assert isinstance(plan.source, FileSource) and plan.block_rows == 997

    streamed = fcinterp_fast.fit(path, **options)
    assert_same_fit(streamed, fcinterp_fast.fit(W, backend="torch"))
    assert streamed.count.device.type == "cpu" and streamed.shape == (K, D)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("options", [{}, {"root": "mean", "tree": "full", "depth": 3}], ids=["chain", "full"])
def test_streamed_file_equals_in_memory(tmp_path, suffix, options):
    W = random_head(3001, 96, torch.bfloat16, seed=1)
    path = save_head(tmp_path / f"head{suffix}", W)
    streamed = fcinterp_fast.fit(path, backend="torch", max_memory=budget_for(250, W), device="cpu", **options)
    assert isinstance(streamed.source, FileSource)  # read with file reads, not memory-mapped
    assert_same_fit(streamed, fcinterp_fast.fit(W, backend="torch", **options))
    torch.testing.assert_close(streamed.mask("++"), fcinterp_fast.fit(W, **options).mask("++"))


def test_reads_one_block_at_a_time(tmp_path, monkeypatch):
    W = random_head(1000, 64)
    path = save_head(tmp_path / "head.safetensors", W)
    reads = []
    read_into = FileSource.read_into
    monkeypatch.setattr(
        FileSource, "read_into", lambda self, a, b, out: reads.append((a, b)) or read_into(self, a, b, out)
    )
    fcinterp_fast.fit(path, backend="torch", max_memory=budget_for(150, W), device="cpu")
    assert reads == [(a, min(a + 150, 1000)) for a in range(0, 1000, 150)]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_conv_kernel_and_strided_checkpoint_heads(tmp_path, suffix):
    W = random_head(300, 40, torch.float32, seed=2)
    conv = save_head(tmp_path / f"conv{suffix}", W[:, :, None, None].contiguous(), name="classifier.weight")
    options = dict(backend="torch", max_memory=budget_for(64, W), device="cpu")  # exact: the same device
    assert_same_fit(fcinterp_fast.fit(conv, **options), fcinterp_fast.fit(W, backend="torch"))
    if suffix == ".pth":  # a transposed view is stored as its base: read through torch.load instead
        path = tmp_path / "strided.pth"
        torch.save({"fc.weight": W.t().contiguous().t()}, path)
        assert_same_fit(fcinterp_fast.fit(path, **options), fcinterp_fast.fit(W, backend="torch"))


def test_blocks_keep_only_their_trimmed_columns(monkeypatch):
    """A chain fit holds, per block, the levels some row reached, not all 64 levels' columns."""
    from fcinterp_fast.result import RowFit

    held = []
    put_rows = RowFit.put_rows
    monkeypatch.setattr(RowFit, "put_rows", lambda self, first, part: held.append(part) or put_rows(self, first, part))
    W = random_head(300, 64)
    result = fcinterp_fast.fit(W, backend="torch", max_memory=budget_for(100, W))
    assert len(held) == 3 and len(result.nodes) < 20
    for part in held:
        for name, values in part.fields().items():
            assert values.untyped_storage().nbytes() == values.numel() * values.element_size(), name


def test_non_finite_row_named_by_its_index_in_the_file(tmp_path):
    W = random_head(2000, 64)
    W[1234, 17] = float("inf")
    path = save_head(tmp_path / "head.safetensors", W)
    with pytest.raises(ValueError, match=r"row 1234 of the head contains NaN or infinite"):
        fcinterp_fast.fit(path, backend="torch", max_memory=budget_for(100, W))


def test_in_memory_head_untouched_and_results_on_its_device():
    W = random_head(500, 64, torch.float32).t().contiguous().t()  # non-contiguous
    before = W.clone()
    result = fcinterp_fast.fit(W, backend="torch", max_memory=budget_for(77, W))
    assert torch.equal(W, before) and result.mean.device == W.device
    assert_same_fit(result, fcinterp_fast.fit(W.contiguous(), backend="torch"))


# --------------------------------------------------------------------------------- bad files
def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize(
    "content, message",
    [
        (b"abc", "not a valid safetensors file"),
        ((10**12).to_bytes(8, "little") + b"{}", "header of 1000000000000 bytes"),
        ((7).to_bytes(8, "little") + b"{nojson", "header is not JSON"),
        (_safetensors_bytes([1, 2], b""), "not a JSON object"),
        (_safetensors_bytes({"w": {"dtype": "F16", "shape": [4, 4]}}, bytes(32)), "header entry 'w' is not"),
        (
            _safetensors_bytes({"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 30]}}, bytes(32)),
            "needs 32 bytes, but its data_offsets span 30",
        ),
        (
            _safetensors_bytes({"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 32]}}, bytes(20)),
            "is truncated: tensor 'w' ends at byte",
        ),
    ],
    ids=["tiny", "huge-header", "bad-json", "not-object", "no-offsets", "wrong-span", "truncated"],
)
def test_corrupt_safetensors_raise_value_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        fcinterp_fast.fit(path)
    assert str(path) in str(error.value)


def test_truncated_real_files(tmp_path):
    W = random_head(400, 64)
    for suffix in (".safetensors", ".pth"):
        path = save_head(tmp_path / f"head{suffix}", W)
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
        with pytest.raises(ValueError, match="truncated|could not read") as error:
            fcinterp_fast.fit(path)
        assert str(path) in str(error.value)


def test_file_shrinking_after_open_is_a_clear_error(tmp_path):
    W = random_head(400, 64)
    path = save_head(tmp_path / "head.safetensors", W)
    plan = plan_fit(path, backend="torch", max_memory=budget_for(100, W))
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(ValueError, match="shrank after it was opened"):
        plan.fit_rows(0, 400)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_missing_tensor_name_lists_the_candidates(tmp_path, suffix):
    path = save_head(tmp_path / f"head{suffix}", random_head(30, 8))
    with pytest.raises(
        ValueError,
        match=r"has no tensor 'output.weight'; 2-D candidates: embed.weight \(7, 3\), lm_head.weight \(30, 8\)",
    ):
        fcinterp_fast.fit(path, name="output.weight")


def test_integer_tensor_is_a_type_error(tmp_path):
    path = tmp_path / "ints.safetensors"
    save_file({"fc.weight": torch.ones(4, 4, dtype=torch.int64)}, str(path))
    with pytest.raises(TypeError, match="has dtype I64; expected F16, BF16, F32 or F64"):
        fcinterp_fast.fit(path)


# ----------------------------------------------------------------------- options and progress
@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"device": "tpu-ish"}, ValueError, "device must be None, 'cpu', 'cuda'"),
        ({"progress": "yes"}, TypeError, "progress must be True, False or None"),
        ({"max_memory": 1.5e9}, TypeError, "max_memory must be an int >= 1, got 1500000000.0"),
    ],
)
def test_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        fcinterp_fast.fit(random_head(10, 8), **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_device_without_cuda_says_so():
    with pytest.raises(RuntimeError, match="CUDA is not available here; use device='cpu'"):
        fcinterp_fast.fit(random_head(10, 8), device="cuda")


def test_progress_bar_counts_rows_only_when_asked(capsys):
    W = random_head(300, 32)
    fcinterp_fast.fit(W, backend="torch", progress=True, max_memory=budget_for(50, W))
    shown = capsys.readouterr().err
    assert "fit [torch on cpu]" in shown and "/300" in shown and "rows/s" in shown
    for progress in (False, None):  # None: pytest's captured stderr is not a terminal
        fcinterp_fast.fit(W, backend="torch", progress=progress)
        assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------- tables
def test_parquet_has_one_row_group_per_block_and_equals_the_table(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pd = pytest.importorskip("pandas")
    result = fcinterp_fast.fit(random_head(250, 64), backend="torch")
    path = tmp_path / "fit.parquet"
    result.to_parquet(path, block_rows=100)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(pd.read_parquet(path), result.to_pandas())
    first = next(result.iter_table(block_rows=100))
    assert all(isinstance(values, list) for values in first.values()) and len(first["node"]) == int(
        (result.count[:100] > 0).sum()
    )


# ------------------------------------------------------------------------------------ GPU
class _Event:
    """``torch.cuda.Event`` on the CPU: counts its records; waits on it are logged with that count."""

    def __init__(self, log: list):
        self.records, self.log = 0, log

    def record(self, stream=None):
        self.records += 1

    def synchronize(self):  # the reader thread, before refilling a pinned buffer
        self.log.append(("host waits", self, self.records))


class _Stream:
    def __init__(self, log: list):
        self.log = log

    def wait_event(self, event):
        self.log.append(("stream waits", event, event.records))

    def wait_stream(self, other):
        pass


@pytest.mark.parametrize("K", [1, 100, 101, 350])
def test_gpu_pipeline_delivers_every_block_and_waits_for_the_right_events(monkeypatch, K):
    """The ring of two pinned and two device buffers, run on the CPU with synchronous stand-ins for
    streams and events: every block arrives intact, and each wait is on the event of the block that
    last used the buffer about to be reused."""
    from fcinterp_fast.heads import source as sources
    from fcinterp_fast.heads import stream

    events, log = [], []
    monkeypatch.setattr(torch.cuda, "Event", lambda: events.append(_Event(log)) or events[-1])
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _Stream(log))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: _Stream(log))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    real_buffers = stream._buffers
    monkeypatch.setattr(
        stream, "_buffers", lambda source, ranges, pin, device=None: real_buffers(source, ranges, False)
    )

    W = random_head(K, 16)
    ranges = [(a, min(a + 50, K)) for a in range(0, K, 50)]
    for i, (first, block) in enumerate(
        stream._through_pinned_memory(sources.TensorSource(W), ranges, torch.device("cpu"))
    ):
        assert first == ranges[i][0] and torch.equal(block, W[ranges[i][0] : ranges[i][1]])
        block.fill_(float("nan"))  # the fit is done with it: later blocks must not see this
    copied, fitted = events[:2], events[2:]

    def waits(kind, on):
        return [(on.index(e), n) for k, e, n in log if k == kind and e in on]

    n = len(ranges)  # block i is use number i // 2 of buffer slot i % 2
    assert waits("host waits", copied) == [(i % 2, i // 2) for i in range(n)]  # copies of i - 2 done
    assert waits("stream waits", fitted) == [(i % 2, i // 2) for i in range(n)]  # fits of i - 2 done
    assert waits("stream waits", copied) == [(i % 2, i // 2 + 1) for i in range(n)]  # block i copied


@pytest.mark.gpu
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_file_fitted_on_gpu_matches_cpu(tmp_path, suffix):
    W = random_head(5003, 256, torch.bfloat16, seed=3)
    path = save_head(tmp_path / f"head{suffix}", W)
    budget = budget_for(600, W)  # nine blocks through the pinned buffers and the side stream
    plan = plan_fit(path, backend="torch", max_memory=budget)
    assert plan.device.type == "cuda"  # files go to the GPU by default when there is one
    on_gpu = fcinterp_fast.fit(path, backend="torch", max_memory=budget)
    on_cpu = fcinterp_fast.fit(path, backend="torch", max_memory=budget, device="cpu")
    assert on_gpu.count.device.type == "cpu"
    # memberships agree exactly across devices (docs/spec.md section 2); float64 sums in another order
    assert_same_memberships(on_gpu, on_cpu, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_cpu_tensor_fitted_on_gpu_keeps_results_on_cpu():
    W = random_head(2001, 128, torch.float32, seed=4)
    result = fcinterp_fast.fit(W, backend="torch", device="cuda", max_memory=budget_for(300, W))
    reference = fcinterp_fast.fit(W, backend="torch")
    assert result.count.device.type == "cpu"
    torch.testing.assert_close(result.count, reference.count, rtol=0, atol=0)
    torch.testing.assert_close(result.lo, reference.lo, rtol=0, atol=0, equal_nan=True)


# ------------------------------------------------------------------------------ memory budget
def test_row_larger_than_the_budget_is_refused_with_the_smallest_budget_that_works(tmp_path):
    """A 4 KB file declaring a (2, 2**24) float32 head, max_memory=8M: refused before any allocation
    (the read of one such row grew RSS by 630 MB); a real head says which budget fits it."""
    header = json.dumps({"lm_head.weight": {"dtype": "F32", "shape": [2, 2**24], "data_offsets": [0, 2**27]}})
    declared = tmp_path / "declared.safetensors"
    declared.write_bytes(len(header).to_bytes(8, "little") + header.encode() + bytes(4000))
    with pytest.raises(ValueError, match=str(declared)):
        fcinterp_fast.fit(declared, max_memory=8 * 2**20, device="cpu")

    W = random_head(4, 2**16, torch.float32)
    path = save_head(tmp_path / "wide.safetensors", W)
    per_element = registry.get_backend("torch").bytes_per_element
    needed = 2**16 * (per_element + 2 * 4)  # with the two read-ahead buffers of a file
    for source, smallest in ((path, needed), (W, 2**16 * per_element)):
        with pytest.raises(
            ValueError, match=rf"max_memory=8388608 bytes cannot hold one row .* max_memory={smallest} "
        ):
            fcinterp_fast.fit(source, backend="torch", max_memory=8 * 2**20, device="cpu")
    fits = fcinterp_fast.fit(path, backend="torch", max_memory=needed, device="cpu")
    assert_same_fit(fits, fcinterp_fast.fit(W, backend="torch"))
    assert plan_fit(path, backend="torch", max_memory=needed, device="cpu").block_rows == 1


_PEAK_SCRIPT = """
import json, sys
import torch
import fcinterp_fast
from fcinterp_fast import bench
path, budget = sys.argv[1], int(sys.argv[2])
fcinterp_fast.fit(torch.randn(50, 64), backend="cpu")  # load what a fit loads
with bench.PeakMemory("cpu") as peak:
    fit = fcinterp_fast.fit(path, backend="cpu", max_memory=budget, device="cpu")
    results = sum(t.numel() * t.element_size() for t in (fit.count, fit.mean, fit.lo, fit.hi, fit.slope,
                  fit.intercept, fit.r2, fit.ald.loc, fit.ald.scale, fit.ald.kappa, fit.ald.loglik))
print(json.dumps({"peak_mib": peak.mib, "results_mib": results / 2**20, "columns": len(fit.nodes)}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_streamed_fit_holds_its_results_once(tmp_path):
    """Peak memory above the start of a streamed fit stays within the results it returns plus twice
    the budget (and a few MB for the allocator): block results used to be kept in a list and then
    concatenated, about twice the results."""
    import subprocess
    import sys

    from fcinterp_fast.backends import cpu

    if cpu.unavailable() is not None:
        pytest.skip(f"backend 'cpu': {cpu.unavailable()}")
    path = save_head(tmp_path / "tall.safetensors", random_head(100_000, 64, torch.float32, seed=5))
    budget = 2**20
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path), str(budget)], capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["peak_mib"] is None:
        pytest.skip("peak resident memory cannot be reset here")
    results = measured["results_mib"]
    assert results > 30  # the results dominate the budget, so holding them twice would show
    assert measured["peak_mib"] <= results + 2 * budget / 2**20 + 12, measured
