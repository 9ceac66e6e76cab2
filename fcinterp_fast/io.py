"""Heads stored in files: ``.safetensors`` (read through memory-mapped slices) and ``.pth``."""
from __future__ import annotations

from pathlib import Path

import torch

from .heads import HEAD_FILE_SUFFIXES, choose_tensor
from .source import HeadSource, check_head_tensor

__all__ = ["read_file_head", "open_file_head", "SafetensorsSource"]


class SafetensorsSource(HeadSource):
    """One tensor of a ``.safetensors`` file, read a block of rows at a time."""

    def __init__(self, path: Path, name: str):
        from safetensors import safe_open

        self.path, self.name = path, name
        self._file = safe_open(str(path), framework="pt")
        self._slice = self._file.get_slice(name)
        shape = tuple(self._slice.get_shape())
        dtype = _SAFETENSORS_DTYPES.get(self._slice.get_dtype())
        if dtype is None:
            raise TypeError(f"tensor {name!r} in {path} has dtype {self._slice.get_dtype()}; expected F16, BF16, F32 or F64")
        if len(shape) == 4 and shape[2:] == (1, 1):
            shape = shape[:2]
        check_head_tensor(torch.empty(shape, dtype=dtype, device="meta"), what=f"tensor {name!r} in {path}")
        self.shape, self.dtype, self.device = shape, dtype, torch.device("cpu")

    def rows(self, start: int, stop: int) -> torch.Tensor:
        block = self._slice[start:stop]
        return block.flatten(1) if block.dim() == 4 else block


_SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def _check_suffix(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no such head file: {path}")
    if path.suffix not in HEAD_FILE_SUFFIXES:
        raise ValueError(f"{path}: unsupported head file type {path.suffix!r}; use one of {', '.join(HEAD_FILE_SUFFIXES)}")


def _safetensors_shapes(path: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"could not read {path} as safetensors: {error}") from error


def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:
        raise ValueError(f"could not read {path} with torch.load: {error}") from error
    if isinstance(state, torch.Tensor):
        return {"": state}
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a tensor or a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def open_file_head(path: Path, name: str | None) -> HeadSource:
    """A block reader over the head tensor of a file (never loads the whole file)."""
    _check_suffix(path)
    if path.suffix == ".safetensors":
        return SafetensorsSource(path, choose_tensor(path, _safetensors_shapes(path), name))
    from .source import TensorSource

    return TensorSource(read_file_head(path, name))


def read_file_head(path: Path, name: str | None) -> torch.Tensor:
    """The head tensor of a file (memory-mapped where the format allows)."""
    _check_suffix(path)
    if path.suffix == ".safetensors":
        source = open_file_head(path, name)
        return source.rows(0, source.shape[0])
    state = _torch_state(path)
    key = choose_tensor(path, {k: tuple(v.shape) for k, v in state.items()}, name)
    return check_head_tensor(state[key], what=f"tensor {key!r} in {path}")
