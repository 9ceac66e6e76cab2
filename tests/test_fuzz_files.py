"""A fuzz harness of the file readers: ``.safetensors``, ``torch.save`` (stored and deflated zip
archives) and ``.npy`` files with bytes flipped, overwritten, inserted, removed or cut off.

Every mutated file must either be refused with a clear error (``ValueError`` / ``OSError`` /
``TypeError`` naming the file, or the non-finite-row error naming the row) or be fitted exactly as
the file's own library reads it: ``safetensors.torch.load_file``, ``torch.load(weights_only=True)``
or ``np.load(allow_pickle=False)`` of the same bytes, fitted in memory, gives the same memberships.
Accepting a file its library refuses is a failure too.

It runs briefly in every test run (CI); ``FUZZ_SECONDS=N`` keeps drawing new examples for about N
seconds per test (as ``tests/test_fuzz_native.py``).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzzing import fuzz, fuzz_round
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import fcinterp_fast
from checks import assert_same_fit

safetensors_torch = pytest.importorskip("safetensors.torch")

_ROUND = fuzz_round(40, 80, HealthCheck.function_scoped_fixture)
HEAD = "fc.weight"
# A refused file is named in the message; a head of non-finite values is refused naming its row.
_ROW_ERROR = re.compile(r"row \d+ of the head (contains NaN or infinite values|has a value with)")


def _originals(folder: Path) -> dict[str, bytes]:
    """The bytes of valid files holding a small head beside other tensors, one per format."""
    generator = torch.Generator().manual_seed(0)
    state = {
        "backbone.weight": torch.randn(6, 5, generator=generator),
        HEAD: torch.randn(9, 40, generator=generator).to(torch.bfloat16),
        "fc.bias": torch.randn(9, generator=generator),
    }
    safetensors_torch.save_file(state, folder / "original.safetensors")
    torch.save(state, folder / "original.pth")
    with zipfile.ZipFile(folder / "original.pth") as source, zipfile.ZipFile(folder / "deflated.pth", "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
    np.save(folder / "original.npy", state[HEAD].float().numpy())
    return {
        "npy": (folder / "original.npy").read_bytes(),
        "safetensors": (folder / "original.safetensors").read_bytes(),
        "pth": (folder / "original.pth").read_bytes(),
        "deflated-pth": (folder / "deflated.pth").read_bytes(),
    }


@st.composite
def mutations(draw, content: bytes, header_bytes: int):
    """``content`` damaged by one to four edits, most of them where the format's structure lives
    (the first ``header_bytes``) rather than in the weights."""
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        near_start = draw(st.booleans())
        end = min(len(data), header_bytes) if near_start else len(data)
        at = draw(st.integers(0, max(end - 1, 0)))
        kind = draw(st.sampled_from(["flip", "byte", "digit", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "digit":  # offsets, lengths and shapes are written as decimal digits in JSON
            data[at] = ord(str(draw(st.integers(0, 9))))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def header_edits(draw, content: bytes):
    """A safetensors file whose JSON header was edited as a whole: offsets, shapes and dtypes
    changed, an entry repeated under its own name, bytes added or removed after the data."""
    length = int.from_bytes(content[:8], "little")
    entries = json.loads(content[8 : 8 + length])
    names = sorted(k for k in entries if k != "__metadata__")
    data = content[8 + length :]
    pairs = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items()]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        entry = entries[name]
        kind = draw(st.sampled_from(["offset", "shape", "dtype", "duplicate", "data"]))
        if kind == "offset":
            entry["data_offsets"][draw(st.integers(0, 1))] += draw(st.sampled_from([-4, -2, -1, 1, 2, 4, 80]))
        elif kind == "shape":
            entry["shape"] = draw(st.lists(st.integers(0, 90), min_size=1, max_size=3))
        elif kind == "dtype":
            entry["dtype"] = draw(st.sampled_from(["F16", "BF16", "F32", "F64", "I16", "F4", "X9"]))
        elif kind == "duplicate":
            pairs.append(f"{json.dumps(name)}: {json.dumps(entries[draw(st.sampled_from(names))])}")
        else:
            data = data + bytes(draw(st.integers(1, 8))) if draw(st.booleans()) else data[: -draw(st.integers(1, 8))]
        pairs = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items()] + pairs[len(entries) :]
    header = ("{" + ", ".join(pairs) + "}").encode()
    return len(header).to_bytes(8, "little") + header + data


def _library_read(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        return torch.from_numpy(np.ascontiguousarray(np.load(path, allow_pickle=False)))
    if path.suffix == ".safetensors":
        return safetensors_torch.load_file(path)[HEAD]
    state = torch.load(path, weights_only=True, map_location="cpu")
    return state[HEAD]


def _check_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        name = None if path.suffix == ".npy" else HEAD
        fitted = fcinterp_fast.fit(path, name=name, backend="torch", device="cpu", max_memory=2**20, min_size=4)
    except (ValueError, OSError, TypeError) as error:
        message = str(error)
        if _ROW_ERROR.search(message):  # only right if the library reads non-finite values too
            try:
                finite = bool(torch.isfinite(_library_read(path)).all())
            except Exception:  # the library refuses it too
                return
            assert not finite, f"refused a finite head as non-finite: {message!r}"
            return
        assert str(path) in message, f"unclear error: {message!r}"
        return
    try:
        expected = _library_read(path)
    except Exception as error:  # the library's own errors vary
        pytest.fail(f"fitted a file that its own library refuses ({type(error).__name__}: {error})")
    assert_same_fit(fitted, fcinterp_fast.fit(expected, backend="torch", min_size=4))


def test_fuzz_edited_safetensors_headers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-headers")
    original = _originals(folder)["safetensors"]
    counter = iter(range(10**9))

    @_ROUND
    @given(content=header_edits(original))
    def check(content):
        _check_file(folder / f"edited-{next(counter)}.safetensors", content)

    fuzz(check)


@pytest.mark.parametrize("kind", ["safetensors", "pth", "deflated-pth", "npy"])
def test_fuzz_mutated_head_files(tmp_path_factory, kind):
    folder = tmp_path_factory.mktemp(f"fuzz-{kind}")
    original = _originals(folder)[kind]
    suffix = {"safetensors": ".safetensors", "npy": ".npy"}.get(kind, ".pth")
    # the structure: the JSON header of a safetensors file; for a zip archive, the pickle at its
    # start and the central directory at its end (half the draws are near the start, and cuts and
    # random positions reach the end)
    header_bytes = (
        8 + int.from_bytes(original[:8], "little") if kind == "safetensors" else 128 if kind == "npy" else 400
    )
    counter = iter(range(10**9))

    @_ROUND
    @given(content=mutations(original, header_bytes))
    def check(content):
        _check_file(folder / f"mutated-{next(counter)}{suffix}", content)

    fuzz(check)
