"""Devices named by users: one check, one message, for the library and the command line."""

from __future__ import annotations

import torch

__all__ = ["DeviceUnavailable", "parse_device"]


class DeviceUnavailable(RuntimeError):
    """A device was asked for that this machine does not have (CUDA without a GPU or a CUDA build,
    ``cuda:3`` on a machine with 2 GPUs). The command line reports it in one line, exit status 2."""


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists here; ``"cuda"`` becomes the current GPU.

    Raises:
        ValueError: not a device name (``"gpu"``).
        DeviceUnavailable: CUDA asked for where it is not available, or a GPU index out of range.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be None, 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device={str(parsed)!r} was asked for, but CUDA is not available here; use device='cpu'"
            )
        if parsed.index is None:  # compare equal to tensors on the current GPU
            return torch.device("cuda", torch.cuda.current_device())
        if parsed.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device={str(parsed)!r} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return parsed
