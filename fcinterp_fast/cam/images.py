"""Images in, maps out: tensors as given, PIL images and paths through the model's preprocessing, and
maps of PIL images / paths mapped back onto the original picture.

The model sees a resized, centre-cropped copy of a photo (timm: shorter side to input / crop_pct,
then a centre crop). ``crop_geometry`` follows the preprocessing's ``Resize`` and ``CenterCrop``
steps to find where the model's input lies in the original image, and ``to_original`` resamples a
map (bilinear, align_corners=False) onto the original pixels. Pixels outside the crop were never
seen by the model: their value is NaN, which ``overlay`` draws greyed out.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models import transform

__all__ = ["CropGeometry", "prepare_images", "load_images", "crop_geometry", "to_original", "is_image"]

# Preprocessing steps that do not move pixels (value changes only).
_VALUE_STEPS = frozenset(
    {"ToTensor", "MaybeToTensor", "PILToTensor", "MaybePILToTensor", "Normalize", "ConvertImageDtype", "ToDtype"}
)


@dataclasses.dataclass(frozen=True)
class CropGeometry:
    """Where the model's input lies in an original image: original pixel coordinate (continuous,
    pixel edges at integers) = input coordinate * scale + offset, per axis.

    Attributes:
        original: (H0, W0) of the original image.
        input: (H, W) of the model's input (the size of the maps).
        scale, offset: (y, x) of the affine map from input to original coordinates.
    """

    original: tuple[int, int]
    input: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[float, float]


def is_image(x) -> bool:
    """Whether ``x`` is a PIL image or a path."""
    from PIL import Image

    return isinstance(x, (str, os.PathLike, Image.Image))


def prepare_images(images, model: nn.Module, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, H, W) tensor on the model's device and dtype; PIL images / paths go through the model's
    own preprocessing (``fcinterp_fast.models.transform``). The input is never modified."""
    return load_images(images, model, device, dtype)[0]


def load_images(
    images, model: nn.Module, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, list[CropGeometry] | None]:
    """``prepare_images`` and, for PIL images / paths, the ``CropGeometry`` of each (None for tensors)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            hint = " (one image: images[None])" if images.ndim == 3 else ""
            raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}{hint}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a float tensor (preprocessed), got {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        if 0 in images.shape[1:]:
            raise ValueError(
                f"images has shape {tuple(images.shape)}: each image needs at least one channel, row and column"
            )
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return images.detach().to(device=device, dtype=dtype), None
    items = [images] if is_image(images) else list(images) if isinstance(images, Sequence) else None
    if not items or not all(is_image(i) for i in items):
        raise TypeError(
            "images must be a (B, C, H, W) tensor, a PIL image, a path, or a non-empty list of PIL images / paths"
        )
    from PIL import Image

    preprocess = transform(model)
    tensors, geometries = [], []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(Path(item)) as opened:
                item = opened.convert("RGB")
        picture = item.convert("RGB")
        tensor = preprocess(picture)
        tensors.append(tensor)
        geometries.append(crop_geometry(preprocess, (picture.height, picture.width), tuple(tensor.shape[-2:])))
    return torch.stack(tensors).to(device=device, dtype=dtype), geometries


def crop_geometry(preprocess, original: tuple[int, int], input_size: tuple[int, int]) -> CropGeometry:
    """Follow the ``Resize`` / ``CenterCrop`` steps of a torchvision ``Compose`` from an ``original``
    (H0, W0) image to the model's ``input_size`` (H, W).

    Raises:
        ValueError: a step that moves pixels other than ``Resize`` / ``CenterCrop`` (the maps cannot
            be placed on the original image; pass a preprocessed tensor instead).
    """
    steps = getattr(preprocess, "transforms", [preprocess])
    h, w = float(original[0]), float(original[1])
    scale, offset = [1.0, 1.0], [0.0, 0.0]
    for step in steps:
        kind = type(step).__name__
        if kind in _VALUE_STEPS:
            continue
        if kind == "Resize":
            nh, nw = _resized(step.size, getattr(step, "max_size", None), int(h), int(w))
            scale = [scale[0] * h / nh, scale[1] * w / nw]
            h, w = float(nh), float(nw)
        elif kind == "CenterCrop":
            ch, cw = _pair(step.size)
            # torchvision pads a crop larger than the image symmetrically, then crops at round((h - ch) / 2)
            top = -((ch - int(h)) // 2) if ch > h else int(round((h - ch) / 2.0))
            left = -((cw - int(w)) // 2) if cw > w else int(round((w - cw) / 2.0))
            offset = [offset[0] + top * scale[0], offset[1] + left * scale[1]]
            h, w = float(ch), float(cw)
        else:
            raise ValueError(
                f"the model's preprocessing has a step {kind} whose geometry is unknown, so the maps cannot be "
                f"placed on the original image; pass a preprocessed (B, C, H, W) tensor instead"
            )
    if (int(h), int(w)) != tuple(input_size):
        raise ValueError(f"preprocessing gives {int(h)}x{int(w)} but the input is {input_size[0]}x{input_size[1]}")
    return CropGeometry(
        original=(int(original[0]), int(original[1])),
        input=(int(input_size[0]), int(input_size[1])),
        scale=(scale[0], scale[1]),
        offset=(offset[0], offset[1]),
    )


def to_original(maps: torch.Tensor, geometry: CropGeometry) -> torch.Tensor:
    """Maps (T, H, W) on the model's input -> (T, H0, W0) on the original image, NaN where the model
    did not look (outside the crop). Bilinear (align_corners=False), edges clamped inside the crop."""
    T = maps.shape[0]
    H, W = geometry.input
    if tuple(maps.shape[-2:]) != (H, W):
        raise ValueError(f"maps are {tuple(maps.shape[-2:])} but the model's input was {(H, W)}")
    H0, W0 = geometry.original
    axes = []
    for n, scale, offset in zip((H0, W0), geometry.scale, geometry.offset, strict=True):
        centre = torch.arange(n, dtype=torch.float64, device=maps.device) + 0.5
        axes.append((centre - offset) / scale)  # input coordinates of each original pixel centre
    y, x = axes
    seen = ((y >= 0) & (y <= H))[:, None] & ((x >= 0) & (x <= W))[None, :]
    grid = torch.stack(torch.broadcast_tensors((2 * x / W - 1)[None, :], (2 * y / H - 1)[:, None]), dim=-1)
    grid = grid.to(torch.float32)[None].expand(T, H0, W0, 2)
    out = F.grid_sample(maps.float()[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(seen, out[:, 0], torch.nan)


def _resized(size, max_size, h: int, w: int) -> tuple[int, int]:
    """The output (h, w) of torchvision's ``Resize(size, max_size)`` on an h x w image."""
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    requested = int(size[0] if isinstance(size, (list, tuple)) else size)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = requested, int(requested * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        return (int(size[0]), int(size[-1]))
    return int(size), int(size)
