"""``HeadFit.save`` / ``HeadFit.load``: one .npz file, read back bit for bit with everything the
fit knows, and a head given back (or reopened) checked row by row before any mask is rebuilt."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

import fcinterp_fast
from fcinterp_fast import HeadFit
from fcinterp_fast.result import ALD_FIELDS, NODE_FIELDS, SAVE_FORMAT

NAMES = [f"class {k}" for k in range(40)]


def head(dtype=torch.float32, K=40, D=200, seed=0) -> torch.Tensor:
    W = torch.randn(K, D, generator=torch.Generator().manual_seed(seed)).to(dtype)
    W[3] = 0  # a degenerate row: NaN and infinite statistics must come back bit for bit too
    W[7, :50] = 0
    return W


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns (NaN payloads included)."""
    return t.view(torch.int64) if t.dtype == torch.float64 else t


def assert_same_fit(loaded: HeadFit, fit: HeadFit) -> None:
    for name in NODE_FIELDS:
        a, b = getattr(loaded, name), getattr(fit, name)
        assert a.dtype == b.dtype and torch.equal(bits(a), bits(b.cpu())), name
    for name in ALD_FIELDS:
        a, b = getattr(loaded.ald, name), getattr(fit.ald, name)
        assert a.dtype == b.dtype and torch.equal(bits(a), bits(b.cpu())), name
    assert loaded.nodes == fit.nodes and loaded.config == fit.config and loaded.backend == fit.backend
    assert loaded.class_names == fit.class_names and loaded.shape == fit.shape
    assert loaded.source_description == fit.source_description
    assert loaded.source.dtype == fit.source.dtype


def assert_same_membership(loaded: HeadFit, fit: HeadFit) -> None:
    for node in fit.nodes:
        assert torch.equal(loaded.mask(node), fit.mask(node).cpu()), node
    for k in (0, 7, len(fit) - 1):
        for node in ("+*", "-*"):
            assert torch.equal(loaded.members(k, node), fit.members(k, node).cpu())


@pytest.mark.filterwarnings("ignore::fcinterp_fast.FitWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("options", [dict(), dict(tree="full", depth=3, root="mean", grid="linspace", min_size=5)])
def test_a_saved_fit_loads_back_unchanged(dtype, options, tmp_path):
    W = head(dtype)
    fit = fcinterp_fast.fit(W, class_names=NAMES, **options)
    path = fit.save(tmp_path / "fit.npz")
    loaded = HeadFit.load(path, head=W)
    assert_same_fit(loaded, fit)
    assert_same_membership(loaded, fit)
    assert loaded.class_index("class 7") == 7
    again = loaded.save(tmp_path / "again.npz")  # a loaded fit saves the same numbers
    with np.load(path) as first, np.load(again) as second:
        assert first.files == second.files
        for key in first.files:
            assert first[key].tobytes() == second[key].tobytes(), key


@pytest.mark.filterwarnings("ignore::fcinterp_fast.FitWarning")
def test_a_fit_of_a_file_reopens_its_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    W = head()
    file = tmp_path / "model.safetensors"
    safetensors.save_file({"lm_head.weight": W, "other.weight": torch.randn(3, 3)}, file)
    fit = fcinterp_fast.fit(file, name="lm_head.weight")
    fit.save(tmp_path / "fit.npz")
    loaded = HeadFit.load(tmp_path / "fit.npz")
    assert loaded.source_description["path"] == str(file)
    assert loaded.source_description["name"] == "lm_head.weight"
    assert_same_fit(loaded, fit)
    assert_same_membership(loaded, fit)
    file.unlink()  # without the file, the tables still load and masks say what to do
    gone = HeadFit.load(tmp_path / "fit.npz")
    assert torch.equal(gone.count, fit.count)
    with pytest.raises(ValueError, match=r"cannot be opened again .*pass it as HeadFit.load\("):
        gone.mask("+")


@pytest.mark.filterwarnings("ignore::fcinterp_fast.FitWarning")
def test_a_loaded_fit_reads_only_the_head_it_was_fitted_on(tmp_path):
    W = head()
    fit = fcinterp_fast.fit(W)
    fit.save(tmp_path / "fit.npz")
    detached = HeadFit.load(tmp_path / "fit.npz")
    assert torch.equal(detached.r2.isnan(), fit.r2.isnan())  # statistics need no head
    with pytest.raises(ValueError, match=r"thresholds, not weights.*pass it as HeadFit.load\("):
        detached.members(0, "+")
    other = W.clone()
    other[11, 5] = other[11, 5] * 1.5  # a change too small to move any node's size in most rows
    changed = HeadFit.load(tmp_path / "fit.npz", head=other)
    changed.members(10, "+")  # rows that did not change read as before
    with pytest.raises(ValueError, match="row 11 of the head given to HeadFit.load is not the row that was fitted"):
        changed.mask("+")
    with pytest.raises(ValueError, match=r"is \(40, 199\) torch.float32, but the fit .* is of a \(40, 200\)"):
        HeadFit.load(tmp_path / "fit.npz", head=W[:, :199])
    with pytest.raises(ValueError, match=r"torch.float64, but the fit"):
        HeadFit.load(tmp_path / "fit.npz", head=W.double())


def test_files_that_are_not_fits_or_are_newer_are_refused(tmp_path):
    fit = fcinterp_fast.fit(torch.randn(6, 30))
    path = fit.save(tmp_path / "fit.npz")
    with np.load(path) as data:
        stored = {key: data[key] for key in data.files}
    metadata = json.loads(str(stored["metadata"]))
    metadata.update(format=SAVE_FORMAT + 1, fcinterp_fast="9.0")
    np.savez(tmp_path / "newer.npz", **{**stored, "metadata": np.array(json.dumps(metadata))})
    with pytest.raises(ValueError, match=rf"written by fcinterp_fast 9.0 in HeadFit format {SAVE_FORMAT + 1}.*upgrade"):
        HeadFit.load(tmp_path / "newer.npz")
    np.savez(tmp_path / "arrays.npz", count=np.zeros(3))
    with pytest.raises(ValueError, match="not a fit written by HeadFit.save"):
        HeadFit.load(tmp_path / "arrays.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a fit written by HeadFit.save"):
        HeadFit.load(tmp_path / "text.npz")
    np.savez(tmp_path / "pickled.npz", metadata=np.array([{"format": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a fit written by HeadFit.save"):  # no pickle is ever loaded
        HeadFit.load(tmp_path / "pickled.npz")
    with pytest.raises(FileNotFoundError):
        HeadFit.load(tmp_path / "missing.npz")
    # a fit's file with a part missing or cut short is refused, not a KeyError nor rows left unchecked
    for name, edit in (
        ("no-source", lambda d: d.update(metadata=_without(d["metadata"], "source"))),
        ("no-nodes", lambda d: d.update(metadata=_without(d["metadata"], "nodes"))),
        ("no-checksums", lambda d: d.pop("row_crc32")),
        ("short-checksums", lambda d: d.update(row_crc32=d["row_crc32"][:3])),
    ):
        edited = dict(stored)
        edit(edited)
        np.savez(tmp_path / f"{name}.npz", **edited)
        with pytest.raises(ValueError, match="not a fit written by HeadFit.save|is corrupt"):
            HeadFit.load(tmp_path / f"{name}.npz")


def _without(metadata: np.ndarray, key: str) -> np.ndarray:
    described = json.loads(str(metadata))
    del described[key]
    return np.array(json.dumps(described))


def test_a_fit_of_a_npy_head_reopens_its_file(tmp_path):
    W = head()
    np.save(tmp_path / "head.npy", W.numpy())
    fit = fcinterp_fast.fit(tmp_path / "head.npy")
    fit.save(tmp_path / "fit.npz")
    for loaded in (HeadFit.load(tmp_path / "fit.npz"), HeadFit.load(tmp_path / "fit.npz", head=tmp_path / "head.npy")):
        assert_same_membership(loaded, fit)


def test_save_replaces_a_file_whole_and_holds_no_pickle(tmp_path, monkeypatch):
    fit = fcinterp_fast.fit(torch.randn(6, 30))
    path = fit.save(tmp_path / "fit.npz")
    before = path.read_bytes()
    with zipfile.ZipFile(path) as archive:  # every member is a plain .npy array, none of dtype object
        for member in archive.namelist():
            assert member.endswith(".npy")
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        fcinterp_fast.fit(torch.randn(5, 30)).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["fit.npz"]


def test_a_null_of_a_file_head_saves_its_own_rows_checksums(tmp_path):
    """The null shares the file's fingerprint (to notice a changed file), not its rows: its saved
    checksums once were the file's, so loading it with its own rows was refused."""
    safetensors = pytest.importorskip("safetensors.torch")
    W = head()
    file = tmp_path / "model.safetensors"
    safetensors.save_file({"lm_head.weight": W}, file)
    null = fcinterp_fast.fit(file, null=("normal",), null_seed=3).null["normal"]
    null.save(tmp_path / "null.npz")
    rows = null.source.rows(0, W.shape[0])
    loaded = HeadFit.load(tmp_path / "null.npz", head=rows)
    assert_same_membership(loaded, null)
    with pytest.raises(ValueError, match="is not the row that was fitted"):
        HeadFit.load(tmp_path / "null.npz", head=W).mask("+")
