"""Heads stored in files: ``.safetensors`` and ``torch.save`` checkpoints, read a block of rows at a time.

A head stored row-major at a known byte offset of its file is read by ``FileSource`` with plain file
reads into buffers that ``fit`` reuses (pinned ones when a GPU fits the rows). Memory maps are
avoided on purpose: every page of a mapped file that has been read stays mapped and counts in the
process's resident memory, so streaming a 1 GB head through a map ends with 1 GB more RSS however
small the blocks are; pages brought in by ``read`` belong to the kernel's page cache instead.

* ``.safetensors``: an 8-byte little-endian header length, a JSON header ``{name: {"dtype",
  "shape", "data_offsets": [begin, end]}}`` (offsets relative to the end of the header), then the
  data. The header is checked against the file size before anything else is read, so corrupt and
  truncated files raise ``ValueError`` naming the file and what is wrong.
* ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` (``torch.save`` zip archives): loading with
  ``map_location="meta"`` reads no data but records where each storage starts in the file (torch >=
  2.5); the zip member found there must hold exactly the storage's bytes. A head stored
  uncompressed and contiguous is read in place; one in a compressed (deflate) member or a strided
  view is read from its member alone (decompressed and crc32-checked by ``zipfile``) into memory.
  Legacy archives (``_use_new_zipfile_serialization=False``) are read whole by ``torch.load``.
"""

from __future__ import annotations

import errno
import io
import json
import math
import stat
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..diagnostics import warn
from .fingerprint import FileFingerprint
from .names import HEAD_TENSOR_NAMES, head_candidates, is_embedding_name
from .source import HeadSource, TensorSource, check_head_tensor

__all__ = [
    "FileSource",
    "read_file_head",
    "open_file_head",
    "choose_tensor",
    "HEAD_FILE_SUFFIXES",
]

HEAD_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".npy")
# What a Hugging Face checkpoint folder holds, in the order they are looked for.
_FOLDER_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
_NPY_FLOATS = {"<f2": torch.float16, "<f4": torch.float32, "<f8": torch.float64}

_SAFETENSORS_FLOATS = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
# Bits per element of every dtype the safetensors library knows (a tensor of another dtype is refused,
# as the library refuses it); its byte size is elements * bits // 8, as the library computes it.
_SAFETENSORS_BITS = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 8),
    **dict.fromkeys(("I16", "U16", "F16", "BF16"), 16),
    **dict.fromkeys(("I32", "U32", "F32"), 32),
    **dict.fromkeys(("I64", "U64", "F64", "C64"), 64),
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
# The safetensors library refuses headers above 100 MB; a larger length means a corrupt file.
_MAX_SAFETENSORS_HEADER = 100_000_000


class FileSource(HeadSource):
    """A (K, D) head stored row-major (little-endian) at byte ``offset`` of ``path``, read on demand.

    Attributes:
        path: the file; name: the tensor's name in it; offset: byte position of element (0, 0).
        shape: (K, D) (a stored (K, D, 1, 1) conv kernel reads as (K, D)); dtype: float dtype.
        device: always the CPU (``fit`` moves blocks where they are fitted).
    """

    on_disk = True

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: torch.dtype, offset: int):
        if sys.byteorder != "little":
            raise RuntimeError(f"reading {path} needs a little-endian machine (the file's byte order)")
        what = f"tensor {name!r} in {path}"
        head = check_head_tensor(torch.empty(shape, dtype=dtype, device="meta"), what=what)
        self.path, self.name, self.offset = path, name, offset
        K, D = head.shape
        self.shape, self.dtype, self.device = (K, D), dtype, torch.device("cpu")
        self._row_bytes = self.shape[1] * dtype.itemsize
        end, size = offset + self.shape[0] * self._row_bytes, path.stat().st_size
        if end > size:
            raise ValueError(f"{path} is truncated: {what} ends at byte {end}, but the file has {size} bytes")
        self.fingerprint: FileFingerprint = FileFingerprint(path, K)
        self.description = f"tensor {name} in {path}" if name else str(path)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.read_into(start, stop, torch.empty((stop - start, self.shape[1]), dtype=self.dtype))

    def read_into(self, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """Read rows ``start:stop`` into ``out`` ((stop - start, D) contiguous CPU tensor of ``dtype``)."""
        self.check_unchanged()
        view = out.view(torch.uint8).numpy().data.cast("B")  # the raw bytes of ``out``
        position = self.offset + start * self._row_bytes
        with open(self.path, "rb", buffering=0) as f:  # one handle per call: safe from any thread
            f.seek(position)
            done = 0
            while done < len(view):
                n = f.readinto(view[done:])
                if not n:
                    raise ValueError(
                        f"{self.path} is truncated: reading rows {start}:{stop} of tensor {self.name!r} "
                        f"stopped at byte {position + done} (the file shrank after it was opened)"
                    )
                done += n
        self.fingerprint.check_rows(start, view, self._row_bytes)
        return out


def open_file_head(path: Path, name: str | None) -> HeadSource:
    """A block reader over the head tensor of a file, a Hugging Face checkpoint folder or a sharded
    checkpoint's ``*.index.json`` (only the shard holding the head is opened); reads no weights.
    ``source.description`` says which tensor of which file it is (and why, for a tied head)."""
    file, name, note = _locate(path, name)
    source, chosen = _open_tensor(file, name)
    note = ", ".join(filter(None, [chosen, note]))
    tensor = source.name  # type: ignore[attr-defined]
    source.description = (f"tensor {tensor} in {file}" if tensor else str(file)) + (f" ({note})" if note else "")
    return source


def _open_tensor(path: Path, name: str | None) -> tuple[HeadSource, str | None]:
    """``open_file_head`` of one file (the source has ``name``, the tensor's, set) and the note
    on how the tensor was chosen."""
    _check_suffix(path)
    if path.suffix == ".safetensors":
        tensors, data_start = _safetensors_header(path)
        key, note = choose_tensor(path, {k: tuple(v["shape"]) for k, v in tensors.items()}, name)
        entry = tensors[key]
        dtype = _SAFETENSORS_FLOATS.get(entry["dtype"])
        if dtype is None:
            raise TypeError(f"tensor {key!r} in {path} has dtype {entry['dtype']}; expected F16, BF16, F32 or F64")
        return FileSource(path, key, tuple(entry["shape"]), dtype, data_start + entry["data_offsets"][0]), note
    if path.suffix == ".npy":
        return _open_npy(path, name), None
    if not zipfile.is_zipfile(path):  # the legacy format (``_use_new_zipfile_serialization=False``)
        state = _torch_state(path, meta=False)
        key, note = choose_tensor(path, {k: tuple(v.shape) for k, v in state.items()}, name)
        return _named(TensorSource(check_head_tensor(state[key], what=f"tensor {key!r} in {path}")), key), note
    state = _torch_state(path, meta=True)
    key, note = choose_tensor(path, {k: tuple(v.shape) for k, v in state.items()}, name)
    tensor = check_head_tensor(state[key], what=f"tensor {key!r} in {path}")
    record = _storage_record(path, key, state[key])
    if record.info.compress_type == zipfile.ZIP_STORED and tensor.is_contiguous():
        start = record.data_offset + int(tensor.storage_offset()) * tensor.element_size()
        return FileSource(path, key, tuple(tensor.shape), tensor.dtype, start), note
    return _named(TensorSource(_read_record(path, key, state[key], record)), key), note


def _named(source: TensorSource, name: str) -> TensorSource:
    source.name = name  # type: ignore[attr-defined]
    return source


def read_file_head(path: Path, name: str | None) -> torch.Tensor:
    """The head tensor of a file, folder or index (see ``open_file_head``), read into memory (only
    that tensor's bytes, except for legacy ``torch.save`` files, which ``torch.load`` reads whole)."""
    source = open_file_head(path, name)
    return source.weight if isinstance(source, TensorSource) else source.rows(0, source.shape[0])


# ------------------------------------------------------------------ folders and sharded checkpoints
def _locate(path: Path, name: str | None) -> tuple[Path, str | None, str | None]:
    """The file holding the head, the tensor name when it is already known, and a note on the
    choice: a folder is read as a Hugging Face checkpoint, an ``*.index.json`` gives the shard."""
    if path.is_dir():
        found = next((path / f for f in _FOLDER_FILES if (path / f).is_file()), None)
        if found is None:
            held = ", ".join(sorted(p.name for p in path.iterdir())[:20]) or "nothing"
            raise ValueError(
                f"{path} is a folder without a Hugging Face checkpoint (none of {', '.join(_FOLDER_FILES)}); "
                f"it holds: {held}"
            )
        path = found
    if not path.name.endswith(".index.json"):
        return path, name, None
    _check_regular(path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path} is not a valid checkpoint index: {error}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and v == Path(v).name and Path(v).suffix in HEAD_FILE_SUFFIXES for v in weight_map.values()
    ):
        raise ValueError(f"{path} is not a valid checkpoint index: no 'weight_map' of tensor names to shard files")
    key, note = _choose(path, dict.fromkeys(weight_map), name)
    shard = path.parent / weight_map[key]
    return shard, key, ", ".join(filter(None, [note, f"shard of {path.name}"]))


def _read_config(folder: Path) -> dict | None:
    """The Hugging Face ``config.json`` beside a checkpoint, or None."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise ValueError(f"could not read {config_path}: {error}") from None
    return config if isinstance(config, dict) else None


_LM_ARCHITECTURES = ("LMHead", "ForCausalLM", "ForMaskedLM", "ForConditionalGeneration")


def _tied(config: dict | None) -> tuple[bool, str]:
    """Whether a checkpoint that stores no output layer uses its input embedding as the head, and why."""
    if config is None:
        return True, "no output layer is stored and there is no config.json"
    if config.get("tie_word_embeddings", True) is False:  # Hugging Face's default is true
        return False, "config.json sets tie_word_embeddings to false"
    architectures = config.get("architectures") or []
    if architectures and not any(m in str(a) for a in architectures for m in _LM_ARCHITECTURES):
        return False, f"config.json's architectures {architectures} have no language-model head"
    stated = "config.json: tie_word_embeddings" if "tie_word_embeddings" in config else "tie_word_embeddings"
    return True, f"{stated} {'is true' if stated.startswith('config') else 'defaults to true'}"


# ------------------------------------------------------------------------------------- .npy
def _open_npy(path: Path, name: str | None) -> HeadSource:
    """A ``.npy`` array (``np.save``): C-order little-endian float arrays are read in place like
    any file head; other layouts are loaded whole (``np.load(allow_pickle=False)``). Object
    arrays (pickles) are refused."""
    if name:  # "" is what a saved fit of a .npy head records: no tensor name
        raise ValueError(f"{path} is a .npy file, which holds one array: name={name!r} does not apply")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran_order, dtype = read_header[version](f)
            offset = f.tell()
    except Exception as error:  # numpy parses the header with ast: SyntaxError, TokenError, ...
        raise ValueError(f"{path} is not a valid .npy file: {error}") from None
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects (a pickle), which are never loaded; save a float array")
    torch_dtype = _NPY_FLOATS.get(dtype.str)
    if torch_dtype is not None and not fortran_order:
        return FileSource(path, "", tuple(shape), torch_dtype, offset)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"{path} holds a {dtype} array; expected float16, float32 or float64")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"could not read {path}: {error}") from None
    return _named(TensorSource(torch.from_numpy(np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")))), "")


class _StorageRecord(NamedTuple):
    """The zip member of a ``torch.save`` archive that holds one storage."""

    info: zipfile.ZipInfo
    data_offset: int  # where its (possibly compressed) bytes start in the file


def _torch_state(path: Path, meta: bool) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` file: for a zip archive (``meta=True``), meta tensors whose
    storages name their zip member (``_fcinterp_member``), no data read; for a legacy (not zip)
    file (``meta=False``), the tensors read into memory by ``torch.load(weights_only=True)``."""
    try:
        state = _zip_meta_state(path) if meta else torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise ValueError(f"could not read {path} with torch.load: {error}") from error
    if isinstance(state, torch.Tensor):
        return {"": state}
    state = unwrap_state_dict(state)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a tensor or a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


#: Keys under which training scripts save the model's state dict beside other state (optimizer,
#: epoch): PyTorch Lightning and timm's train.py use ``state_dict``, others ``model`` or
#: ``model_state_dict``.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def unwrap_state_dict(state):
    """The model's state dict inside a training checkpoint (a dict holding it under one of
    ``STATE_DICT_KEYS``), else ``state`` itself."""
    if isinstance(state, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(state.get(key), dict):
                return state[key]
    return state


def _zip_meta_state(path: Path):
    """What ``torch.load(path, weights_only=True)`` returns, with meta tensors (no data read).

    ``torch.load(map_location="meta")`` is not used: it records where each storage starts by
    assuming the archive was written by torch's own zip writer, which a rewritten archive
    (compressed, or stored by another writer) is not. Here the pickle is read by torch's
    weights-only unpickler and each storage is tagged with the name of the zip member that holds
    it, which ``_storage_record`` then locates in the archive itself.
    """
    from torch import _weights_only_unpickler

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if len(set(names)) != len(names):
            raise ValueError("the archive names a member twice")
        if min((info.header_offset for info in archive.infolist()), default=0) != 0:
            # zipfile forgives bytes before or inside the archive by shifting every offset; torch's
            # reader does not, and reads other bytes: refuse rather than read what torch cannot
            raise ValueError("its zip directory does not match where its members are (bytes added or removed)")
        prefix = names[0].split("/")[0] if names else ""
        if any(not name.startswith(f"{prefix}/") for name in names):
            raise ValueError(f"not every member of the archive is in its folder {prefix!r}")
        _check_members(path, archive)
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    # torch's own reader checks the archive as torch.load does (its directory, the version record)
    # and gives the pickle exactly as torch.load reads it; the small records it parses are read too
    reader: Any = torch._C.PyTorchFileReader(str(path))  # its stubs lack has_record, get_record_offset
    for record in (".format_version", ".storage_alignment"):
        if reader.has_record(record):
            int(bytes(reader.get_record(record)).decode("ascii").strip())
    reader.serialization_id()
    if reader.has_record("byteorder") and bytes(reader.get_record("byteorder")) != b"little":
        raise ValueError("its tensors are not stored little-endian; only little-endian tensors are read")
    pickled = bytes(reader.get_record("data.pkl"))

    def persistent_load(saved_id):
        kind, storage_type, key, _, numel = saved_id
        if kind != "storage" or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise ValueError(f"unexpected storage record {saved_id!r}")
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        member = f"{prefix}/data/{key}"
        if sizes.get(member) != numel * dtype.itemsize:  # torch.load reads every storage: each must be whole
            raise ValueError(
                f"the zip member {member!r} does not hold the {numel * dtype.itemsize} bytes of its storage"
            )
        storage = torch.UntypedStorage(numel * dtype.itemsize, device="meta")
        storage._fcinterp_member = member  # type: ignore[attr-defined]
        return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)

    unpickler = _weights_only_unpickler.Unpickler(io.BytesIO(pickled), encoding="utf-8")
    unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
    state = unpickler.load()
    for value in state.values() if isinstance(state, dict) else [state]:
        # building a tensor past the end of its storage grows a meta storage silently; torch.load
        # refuses it (a storage read from a file cannot grow)
        if isinstance(value, torch.Tensor) and value.untyped_storage().nbytes() != sizes.get(
            getattr(value.untyped_storage(), "_fcinterp_member", ""), -1
        ):
            raise ValueError("a tensor reaches past the end of its storage")
    return state


def _check_members(path: Path, archive: zipfile.ZipFile) -> None:
    """Every member's local header is where the zip directory says, its data ends inside the file
    and, if compressed, it decompresses: ``torch.load`` reads every member and refuses an archive
    where one does not (stored members are read, unchecked, only for the head)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        for info in archive.infolist():
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"the zip member {info.filename!r} has no local header where the directory says")
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
            if start + int.from_bytes(local[28:30], "little") + info.compress_size > size:
                raise ValueError(f"the zip member {info.filename!r} ends past the end of the file")
    for info in archive.infolist():  # torch.load decompresses every member: each must decompress
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as member:  # zipfile checks the size and crc32 at the end
                while member.read(1 << 20):
                    pass


def _storage_record(path: Path, key: str, meta: torch.Tensor) -> _StorageRecord:
    """The zip member holding the storage of tensor ``key`` (a meta tensor from ``_torch_state``),
    checked to be exactly the storage's size and to hold the tensor's elements."""
    what = f"tensor {key!r} in {path}"
    member = meta.untyped_storage()._fcinterp_member  # type: ignore[attr-defined]
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
            info = archive.getinfo(member)
            f.seek(info.header_offset)
            local = f.read(30)  # the local file header: its name and extra field lengths may differ
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path} is corrupt: the zip member {member!r} holding {what} has no local header")
            name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            record = _StorageRecord(info, info.header_offset + 30 + name_length + extra_length)
    except KeyError:
        raise ValueError(f"{path} is corrupt: it has no zip member {member!r}, which holds {what}") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"could not read the zip archive {path}: {error}") from error
    try:
        reader: Any = torch._C.PyTorchFileReader(str(path))
        torch_offset = reader.get_record_offset(member.split("/", 1)[1])
    except RuntimeError as error:
        raise ValueError(f"could not read {path} with torch's zip reader: {error}") from None
    if torch_offset != record.data_offset:
        raise ValueError(
            f"{path} is corrupt: torch and zipfile locate the zip member {member!r} holding {what} at different "
            f"bytes ({torch_offset}, {record.data_offset})"
        )
    storage_bytes = meta.untyped_storage().nbytes()
    last = sum((n - 1) * s for n, s in zip(meta.shape, meta.stride(), strict=True))
    needed = (meta.storage_offset() + last + 1) * meta.element_size()
    stored = info.compress_type == zipfile.ZIP_STORED
    if info.file_size != storage_bytes or needed > storage_bytes or (stored and info.compress_size != storage_bytes):
        raise ValueError(
            f"{path} is corrupt: the zip member {member!r} holding {what} ({meta.dtype}, shape "
            f"{tuple(meta.shape)}) has {info.file_size} bytes ({info.compress_size} stored), but its storage "
            f"has {storage_bytes} and the tensor needs {needed}"
        )
    if record.data_offset + info.compress_size > path.stat().st_size:
        raise ValueError(f"{path} is truncated: the zip member {member!r} holding {what} ends past the end of the file")
    return record


def _read_record(path: Path, key: str, meta: torch.Tensor, record: _StorageRecord) -> torch.Tensor:
    """Tensor ``key`` (shaped, strided and typed like ``meta``) from its zip member alone,
    decompressed and checked against the member's crc32 by ``zipfile``."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = bytearray(archive.read(record.info))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as error:  # bad crc32: BadZipFile
        raise ValueError(f"could not read tensor {key!r} from {path}: {error}") from error
    storage = torch.frombuffer(data, dtype=meta.dtype)
    view = storage.as_strided(meta.shape, meta.stride(), meta.storage_offset())
    return check_head_tensor(view, what=f"tensor {key!r} in {path}")


def _check_suffix(path: Path) -> None:
    """The file exists, is a regular file (a FIFO or device would be read forever) and has a head suffix."""
    _check_regular(path)
    if path.suffix not in HEAD_FILE_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported head file type {path.suffix!r}; use one of {', '.join(HEAD_FILE_SUFFIXES)}, "
            f"a Hugging Face checkpoint folder or a sharded checkpoint's *.index.json"
        )


def _check_regular(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such head file: {path}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file; a head file must be one")


def _safetensors_header(path: Path) -> tuple[dict[str, dict], int]:
    """The validated header entries of every tensor, and the byte offset where the data starts.

    At least as strict as the ``safetensors`` library: a UTF-8 JSON object of at most 100 MB,
    ``__metadata__`` a map of strings, every tensor a known dtype, a shape of whole numbers and
    ``data_offsets`` spanning exactly its bytes; sorted by offset, the tensors tile the data from
    its first byte to the end of the file without gap or overlap. Duplicate keys (which the JSON
    parser would silently resolve) are refused too.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little")
        if len(prefix) < 8 or length > min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise ValueError(
                f"{path} is not a valid safetensors file (corrupt or truncated): its first 8 bytes give "
                f"a header of {length} bytes, but the file has {size} bytes"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, a duplicate key
        raise ValueError(f"{path} is not a valid safetensors file: its header is not JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{path} is not a valid safetensors file: its header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError(
            f"{path} is not a valid safetensors file: its header is a {type(header).__name__}, not a JSON object"
        )
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path} is corrupt: its __metadata__ is not a map of strings: {str(metadata)[:200]}")
    data_start, data_size = 8 + length, size - 8 - length
    for name, entry in header.items():
        if not _valid_entry(entry):
            raise ValueError(
                f"{path} is corrupt: header entry {name!r} is not {{'dtype': str, 'shape': [int, ...], "
                f"'data_offsets': [begin, end]}}: {str(entry)[:200]}"
            )
        bits = _SAFETENSORS_BITS.get(entry["dtype"])
        if bits is None:
            raise ValueError(f"{path} is corrupt: tensor {name!r} has the unknown dtype {entry['dtype'][:40]!r}")
        (begin, end), needed = entry["data_offsets"], math.prod(entry["shape"]) * bits // 8
        if end - begin != needed:
            raise ValueError(
                f"{path} is corrupt: tensor {name!r} ({entry['dtype']}, shape {entry['shape']}) needs "
                f"{needed} bytes, but its data_offsets span {end - begin}"
            )
    position = 0
    for name, entry in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != position:
            gap_or_overlap = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise ValueError(
                f"{path} is corrupt: tensor {name!r} starts at data byte {begin}, where the tensors before it "
                f"end at {position}: it {gap_or_overlap}"
            )
        position = end
        if data_start + end > size:
            raise ValueError(
                f"{path} is truncated: tensor {name!r} ends at byte {data_start + end}, but the file has {size} bytes"
            )
    if position != data_size:
        raise ValueError(
            f"{path} is corrupt: its tensors cover {position} bytes of data, but {data_size} follow the header"
        )
    return header, data_start


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the key {duplicate[:100]!r} appears twice in one object")
    return dict(pairs)


def _valid_entry(entry) -> bool:
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    return (
        isinstance(shape, list)
        and all(map(whole, shape))
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(map(whole, offsets))
        and offsets[0] <= offsets[1]
    )


def candidate_tensors(shapes: dict[str, tuple | None]) -> list[str]:
    """Names of (K, D) or (K, D, 1, 1) tensors: the plausible heads of a checkpoint (a shape of
    None, unknown before a shard is opened, counts for every ``*.weight``)."""
    return [
        n
        for n, s in shapes.items()
        if (n.endswith(".weight") if s is None else len(s) == 2 or (len(s) == 4 and tuple(s[2:]) == (1, 1)))
    ]


def choose_tensor(path: Path, shapes: dict[str, tuple], name: str | None) -> tuple[str, str | None]:
    """The tensor of a file that holds the head and a note on the choice (see ``_choose``; the
    ``config.json`` beside the file decides whether a head is tied)."""
    return _choose(path, dict(shapes), name)


def _choose(path: Path, shapes: dict[str, tuple | None], name: str | None) -> tuple[str, str | None]:
    """The head tensor and a note when it was not stored as a head: ``name`` when given, else the
    one tensor of a head-named module (``names.head_candidates``), else, for a checkpoint that
    stores no output layer and whose config does not say otherwise, its input embedding (a tied
    head, with a warning). Anything else raises, listing every plausible tensor."""

    def describe(names):
        shown = [n if shapes[n] is None else f"{n} {tuple(shapes[n])}" for n in names[:20]]  # type: ignore[arg-type]
        return ", ".join(shown) + (f" ... ({len(names)} in all)" if len(names) > 20 else "")

    candidates = candidate_tensors(shapes)
    if name is not None:
        if name not in shapes:
            raise ValueError(f"{path} has no tensor {name!r}; 2-D candidates: {describe(candidates) or 'none'}")
        return name, None
    heads = head_candidates(candidates)
    if len(heads) == 1:
        return heads[0], None
    embeddings = [n for n in candidates if is_embedding_name(n)]
    if heads:
        raise ValueError(
            f"{path} holds {len(heads)} possible head tensors; choose one with name=...: {describe(heads + embeddings)}"
        )
    why = ""
    if len(embeddings) == 1:
        tied, why = _tied(_read_config(path.parent))  # read only here: nothing else depends on it
        if tied:
            message = (
                f"{path} stores no output layer: fitting the input embedding {embeddings[0]!r} as the tied head "
                f"({why}); pass name=... to fit another tensor"
            )
            warn(message)  # a FitWarning at the user's line (the command line prints it once)
            return embeddings[0], f"the input embedding, used as the tied output head: {why}"
    elif len(candidates) == 1:
        return candidates[0], None
    raise ValueError(
        f"{path} has no classifier head (no tensor of a module named {', '.join(HEAD_TENSOR_NAMES)}"
        f"{'; not tied to its input embedding: ' + why if why else ''}); choose one with name=...: "
        f"{describe(candidates) or 'none (no 2-D float tensor)'}"
    )
