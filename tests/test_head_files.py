"""Head files read exactly as their own libraries read them, or refused naming the file: compressed
and legacy ``torch.save`` archives, safetensors headers checked at least as strictly as the
``safetensors`` library checks them, and files that are not regular files."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import fcinterp_fast
from checks import assert_same_fit
from fcinterp_fast.api import plan_fit
from fcinterp_fast.heads.files import FileSource
from fcinterp_fast.heads.source import TensorSource


def _head(K: int = 300, D: int = 48, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _recompress(path: Path, out: Path, compress_type: int = zipfile.ZIP_DEFLATED) -> Path:
    """``path``'s archive with every member written again with ``compress_type``."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), compress_type=compress_type)
    return out


# ------------------------------------------------------------------------ torch.save archives
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compressed_pth_is_fitted_on_its_values_not_its_compressed_bytes(tmp_path, dtype):
    """A deflated member's file bytes are not the tensor: reading them in place fitted garbage."""
    W = _head(dtype=dtype)
    stored = tmp_path / "stored.pth"
    torch.save({"backbone.weight": torch.randn(5, 5), "fc.weight": W}, stored)
    deflated = _recompress(stored, tmp_path / "deflated.pth")
    assert torch.equal(torch.load(deflated, weights_only=True)["fc.weight"], W)  # torch reads it fine

    plan = plan_fit(deflated, device="cpu")
    assert isinstance(plan.source, TensorSource)  # decompressed, not read in place
    expected = fcinterp_fast.fit(W)
    assert_same_fit(fcinterp_fast.fit(deflated, device="cpu"), expected)
    assert_same_fit(fcinterp_fast.fit(deflated, device="cpu", max_memory=2**16), expected)
    assert torch.equal(fcinterp_fast.head_weight(deflated), W)
    assert isinstance(plan_fit(stored, device="cpu").source, FileSource)  # stored: still read in place


def test_pth_rewritten_by_another_zip_writer_is_read_in_place_at_the_right_offset(tmp_path):
    """``torch.load(map_location="meta")`` guesses where later storages start from the layout of
    torch's own writer; an archive stored by Python's ``zipfile`` lays them out differently."""
    W = _head(seed=3)
    path = tmp_path / "head.pth"
    torch.save({"backbone.weight": torch.randn(5, 5), "fc.weight": W}, path)
    rewritten = _recompress(path, tmp_path / "rewritten.pth", zipfile.ZIP_STORED)
    plan = plan_fit(rewritten, device="cpu")
    assert isinstance(plan.source, FileSource)
    assert torch.equal(plan.source.rows(0, len(W)), W)
    assert_same_fit(fcinterp_fast.fit(rewritten, device="cpu", max_memory=2**16), fcinterp_fast.fit(W))


def test_pth_member_of_the_wrong_size_is_refused_naming_file_and_tensor(tmp_path):
    path = tmp_path / "head.pth"
    torch.save({"fc.weight": _head(40, 16)}, path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    data = next(name for name in members if "/data/" in name and not name.endswith("serialization_id"))
    members[data] = members[data][:-64]  # a consistent zip whose storage member is too short
    bad = tmp_path / "short.pth"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match=rf"could not read {bad} .*member .*data/0. does not hold the 2560 bytes"):
        fcinterp_fast.fit(bad)


def test_corrupt_compressed_member_is_refused(tmp_path):
    path = tmp_path / "head.pth"
    torch.save({"fc.weight": _head(40, 16)}, path)
    deflated = _recompress(path, tmp_path / "deflated.pth")
    content = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    content[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    deflated.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=rf"could not read {deflated} .*Bad CRC-32 for file '.*data/0'"):
        fcinterp_fast.fit(deflated)


def test_legacy_pth(tmp_path):
    W = _head(dtype=torch.float16, seed=1)
    path = tmp_path / "legacy.pth"
    torch.save({"fc.weight": W, "fc.bias": torch.zeros(len(W))}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert torch.equal(fcinterp_fast.head_weight(path), W)
    assert_same_fit(fcinterp_fast.fit(path, device="cpu"), fcinterp_fast.fit(W))


def test_strided_head_in_a_compressed_pth(tmp_path):
    W = _head(60, 30, seed=2)
    path = tmp_path / "strided.pth"
    torch.save({"fc.weight": W.t().contiguous().t()}, path)
    deflated = _recompress(path, tmp_path / "deflated.pth")
    for file in (path, deflated):
        assert_same_fit(fcinterp_fast.fit(file, device="cpu"), fcinterp_fast.fit(W))


# ------------------------------------------------------------------------ safetensors headers
def _safetensors(header: str | dict, data: bytes) -> bytes:
    raw = header.encode("utf-8", "surrogateescape") if isinstance(header, str) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def _entry(begin: int, end: int, shape=(2, 2), dtype="F32") -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


_VALUES = np.arange(1, 9, dtype=np.float32).tobytes()  # two (2, 2) float32 tensors: 32 bytes
_BAD_HEADERS = {
    "overlap": ({"a.weight": _entry(0, 16), "fc.weight": _entry(8, 24)}, _VALUES[:24], "overlaps the tensor before"),
    "gap": ({"a.weight": _entry(0, 16), "fc.weight": _entry(20, 36)}, _VALUES + bytes(4), "leaves a gap"),
    "not-from-0": ({"fc.weight": _entry(16, 32)}, _VALUES, "starts at data byte 16"),
    "trailing-bytes": ({"fc.weight": _entry(0, 16)}, _VALUES, "cover 16 bytes of data, but 32 follow"),
    "duplicate-key": (
        '{"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, '
        '"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]}}',
        _VALUES,
        "the key 'fc.weight' appears twice",
    ),
    "duplicate-field": (
        '{"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16], "data_offsets": [16, 32]}}',
        _VALUES,
        "the key 'data_offsets' appears twice",
    ),
    "unknown-dtype": ({"fc.weight": _entry(0, 32, dtype="F128")}, _VALUES, "unknown dtype 'F128'"),
    "metadata-not-strings": (
        {"__metadata__": {"format": 1}, "fc.weight": _entry(0, 32, (2, 4))},
        _VALUES,
        "__metadata__ is not a map of strings",
    ),
    "not-utf8": ('{"fc.weight\udcff": 1}', _VALUES, "header is not JSON"),
    "deeply-nested": ("[" * 100_000 + "]" * 100_000, _VALUES, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(_BAD_HEADERS))
def test_bad_safetensors_headers_are_refused_as_the_library_refuses_them(tmp_path, case):
    """Each of these was accepted and fitted on shifted bytes, or raised RecursionError."""
    header, data, message = _BAD_HEADERS[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_safetensors(header, data))
    with pytest.raises(ValueError, match=message) as error:
        fcinterp_fast.fit(path, name="fc.weight")
    assert str(path) in str(error.value)
    safetensors = pytest.importorskip("safetensors")
    if case not in ("duplicate-key", "duplicate-field"):  # the library resolves those silently
        with pytest.raises(Exception):  # noqa: B017 (each version words its errors differently)
            safetensors.safe_open(str(path), framework="pt")


def test_valid_safetensors_written_out_of_order_and_padded_are_read_as_the_library_reads_them(tmp_path):
    """Header order does not matter, only the offsets; whitespace pads the header to 8 bytes."""
    from safetensors.torch import load_file

    W = np.arange(1, 9, dtype=np.float32).reshape(4, 2)[::-1].copy()
    header = {"fc.weight": _entry(16, 48, (4, 2)), "__metadata__": {"format": "pt"}, "a.bias": _entry(0, 16, (4,))}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "ordered.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + np.zeros(4, np.float32).tobytes() + W.tobytes())
    assert torch.equal(fcinterp_fast.head_weight(path), load_file(path)["fc.weight"])
    assert torch.equal(fcinterp_fast.head_weight(path), torch.from_numpy(W))


def test_fifo_is_refused_not_read_forever(tmp_path):
    fifo = tmp_path / "head.safetensors"
    os.mkfifo(fifo)
    for read in (fcinterp_fast.fit, fcinterp_fast.head_weight):
        with pytest.raises(ValueError, match=rf"{fifo} is not a regular file"):
            read(fifo)
    device = tmp_path / "zero.pth"  # a character device under a head suffix
    device.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=rf"{device} is not a regular file"):
        fcinterp_fast.fit(device)


def test_a_training_checkpoint_and_a_broken_config_beside_a_clear_head(tmp_path):
    """A state dict saved under "model" (as timm's and many training scripts do) is read like
    --checkpoint reads it; a config.json that does not parse matters only to a tied head."""
    W = torch.randn(10, 16, generator=torch.Generator().manual_seed(2))
    torch.save({"model": {"fc.weight": W, "fc.bias": torch.zeros(10)}, "epoch": 3}, tmp_path / "train.pth")
    (tmp_path / "config.json").write_text("{not json")
    fit = fcinterp_fast.fit(tmp_path / "train.pth")
    assert_same_fit(fit, fcinterp_fast.fit(W))
