"""Row blocks of a head, delivered on the device that fits them while the next block is on its way.

``iter_blocks`` is the only place where rows move between storage, host memory and a GPU:

* rows already in memory on the fitting device are handed out as views (no copy), except the
  blocks of a lazily negated view (``Tensor.is_neg()``), which are resolved into copies;
* rows read from a file for a CPU fit go through two reusable host buffers: a reader thread fills
  one with the next block (file reads release the GIL) while the caller fits the other;
* rows fitted on a GPU take three stages that overlap: the reader thread fills a pinned host
  buffer with block i + 2, a side stream copies block i + 1 into a device buffer, and the
  caller's stream fits block i. Two pinned and two device buffers are reused; CUDA events keep a
  buffer from being overwritten before the stage that reads it is done with it.

Memory held here is therefore two blocks of raw weights (``staging_bytes_per_element``), whatever
the size of the head.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from .source import HeadSource

__all__ = ["iter_blocks", "staging_bytes_per_element", "trim_heap"]


def staging_bytes_per_element(source: HeadSource, device: torch.device) -> int:
    """Bytes per weight that ``iter_blocks`` holds besides the backend's working memory."""
    return 0 if _is_view(source, device) else 2 * source.dtype.itemsize


def iter_blocks(
    source: HeadSource, start: int, stop: int, block_rows: int, device: torch.device
) -> Iterator[tuple[int, torch.Tensor]]:
    """Rows ``start:stop`` of ``source`` as ``(first_row, block)``, blocks of at most ``block_rows``.

    Each block is an (R, D) tensor of ``source.dtype`` on ``device``. Staged blocks live in reused
    buffers: a block is valid until the next one is requested, so callers must not keep it.
    """
    ranges = [(a, min(a + block_rows, stop)) for a in range(start, stop, block_rows)]
    with contextlib.closing(_blocks(source, ranges, device)) as blocks:  # stops the reader early too
        for first, block in blocks:
            yield first, block
            if device.type == "cpu":  # the caller is done with the block and its temporaries
                trim_heap()


def _blocks(source: HeadSource, ranges, device: torch.device) -> Generator[tuple[int, torch.Tensor], None, None]:
    if not ranges:
        return
    if _is_view(source, device):
        for a, b in ranges:
            # A lazily negated view (e.g. ``z.conj().imag``) holds the values with their signs
            # flipped and a bit saying so, which kernels reading raw memory cannot see: resolve it
            # here, block by block, for every backend (a copy of the block; other views stay views).
            yield a, source.rows(a, b).resolve_neg()
    elif device.type == "cuda" and source.device.type == "cpu":
        yield from _through_pinned_memory(source, ranges, device)
    elif device.type == "cpu" and source.device.type == "cpu":
        yield from _read_ahead(source, ranges)
    else:  # e.g. a head on one GPU fitted on another device: let torch move it
        for a, b in ranges:
            yield a, source.rows(a, b).to(device).resolve_neg()


def trim_heap() -> None:
    """Hand the C heap's free memory back to the OS (glibc's ``malloc_trim``); elsewhere a no-op.

    A CPU fit allocates and frees many (R, D) float64 temporaries per block. glibc serves them from
    per-thread arenas once its dynamic mmap threshold has risen past their size, and keeps what
    they free: without a trim after each block, resident memory ratchets up over a long fit.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # musl, macOS, Windows
        return None


def _is_view(source: HeadSource, device: torch.device) -> bool:
    return not source.on_disk and source.device == device


def _buffers(source: HeadSource, ranges, pin: bool, device=None) -> list[torch.Tensor]:
    rows = max(b - a for a, b in ranges)
    return [torch.empty((rows, source.shape[1]), dtype=source.dtype, device=device, pin_memory=pin) for _ in range(2)]


def _read_ahead(source: HeadSource, ranges) -> Iterator[tuple[int, torch.Tensor]]:
    """CPU fit of a file: read block i + 1 into one buffer while block i in the other is fitted."""
    host = _buffers(source, ranges, pin=False)

    def read(i: int) -> torch.Tensor:
        a, b = ranges[i]
        return source.read_into(a, b, host[i % 2][: b - a])

    with ThreadPoolExecutor(1, thread_name_prefix="fcinterp-read") as reader:
        pending = reader.submit(read, 0)
        for i, (a, _) in enumerate(ranges):
            block = pending.result()
            if i + 1 < len(ranges):
                pending = reader.submit(read, i + 1)
            yield a, block


def _through_pinned_memory(source: HeadSource, ranges, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """GPU fit of host rows: read block i + 2, copy block i + 1 on a side stream, fit block i."""
    host = _buffers(source, ranges, pin=True)
    gpu = _buffers(source, ranges, pin=False, device=device)
    copy_stream = torch.cuda.Stream(device)
    compute_stream = torch.cuda.current_stream(device)
    copied = [torch.cuda.Event(), torch.cuda.Event()]  # host[s] -> gpu[s] finished
    fitted = [torch.cuda.Event(), torch.cuda.Event()]  # the caller's work on gpu[s] finished

    def read(i: int) -> torch.Tensor:  # reader thread
        a, b = ranges[i]
        copied[i % 2].synchronize()  # the copy of block i - 2 out of host[s] is done (no-op at first)
        return source.read_into(a, b, host[i % 2][: b - a])

    def upload(i: int, block: torch.Tensor) -> None:
        s = i % 2
        with torch.cuda.stream(copy_stream):
            copy_stream.wait_event(fitted[s])  # block i - 2 in gpu[s] has been fitted
            gpu[s][: block.shape[0]].copy_(block, non_blocking=True)
            copied[s].record(copy_stream)

    with ThreadPoolExecutor(1, thread_name_prefix="fcinterp-read") as reader:
        upload(0, read(0))
        pending = reader.submit(read, 1) if len(ranges) > 1 else None
        try:
            for i, (a, b) in enumerate(ranges):
                if pending is not None:  # start copying block i + 1 before block i is fitted
                    upload(i + 1, pending.result())
                    pending = reader.submit(read, i + 2) if i + 2 < len(ranges) else None
                compute_stream.wait_event(copied[i % 2])
                yield a, gpu[i % 2][: b - a]
                fitted[i % 2].record(compute_stream)
        finally:  # ``gpu`` returns to the caller's stream: no copy may still write into it after
            compute_stream.wait_stream(copy_stream)
