"""``overlay``: a map drawn over its image, as pytorch-grad-cam's ``show_cam_on_image`` and torchcam's
``overlay_mask`` draw it, with the pixels the model did not see (NaN) greyed out."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["overlay", "as_rgb", "grey_unseen"]

# How pixels the model did not see are drawn: their luminance, compressed to a light grey band.
_UNSEEN_LO, _UNSEEN_SPAN = 0.35, 0.4


def overlay(image, map, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """The map coloured by ``colormap`` and blended over the image.

    Args:
        image: a PIL image, a path, an (H, W, 3) numpy array (uint8, or float in [0, 1]) or a
            (3, H, W) float tensor in [0, 1].
        map: (h, w) numpy array or tensor with values in [0, 1] (``explain``'s maps); NaN marks
            pixels the model did not see (outside the preprocessing's crop). Resized bilinearly to
            the image's size if it differs.
        alpha: opacity of the coloured map, in [0, 1]: each seen pixel is (1 - alpha) * image +
            alpha * colour (show_cam_on_image's image_weight is 1 - alpha).
        colormap: a matplotlib colormap name (``"jet"`` as OpenCV's COLORMAP_JET).

    Returns:
        (H, W, 3) uint8 RGB (``PIL.Image.fromarray`` takes it as is); unseen pixels show the
        image in grey, without colour.
    """
    import matplotlib

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"unknown colormap {colormap!r}; use a matplotlib colormap name such as 'jet'") from None
    picture = as_rgb(image)
    values = _as_map(map, picture.shape[:2])
    seen = ~np.isnan(values)
    if seen.any() and (values[seen].min() < -1e-6 or values[seen].max() > 1 + 1e-6):
        raise ValueError(
            f"map values must lie in [0, 1] (got {values[seen].min():.3g} .. {values[seen].max():.3g}); scale it first"
        )
    colour = cmap(np.clip(np.nan_to_num(values), 0, 1))[..., :3]
    blended = (1 - alpha) * picture + alpha * colour
    out = np.where(seen[..., None], blended, grey_unseen(picture))
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def as_rgb(image) -> np.ndarray:
    """An image as (H, W, 3) float64 RGB in [0, 1] (PIL image, path, numpy array or (3, H, W) tensor)."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be (3, H, W), got shape {tuple(image.shape)}")
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError("a float image must have values in [0, 1] (undo the normalisation first)")
    return array


def grey_unseen(picture: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> its luminance as a light grey (how pixels the model did not see are drawn)."""
    luminance = picture @ np.array([0.299, 0.587, 0.114])
    return np.repeat((_UNSEEN_LO + _UNSEEN_SPAN * luminance)[..., None], 3, axis=2)


def _as_map(map, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W) float64, resized bilinearly (NaN kept where the nearest pixel is NaN)."""
    values = map.detach().float().cpu() if isinstance(map, torch.Tensor) else torch.as_tensor(np.asarray(map, float))
    if values.ndim != 2:
        raise ValueError(f"map must be (h, w), got shape {tuple(values.shape)}")
    if tuple(values.shape) != tuple(size):
        unseen = torch.isnan(values)
        resized = F.interpolate(
            torch.nan_to_num(values)[None, None].float(), size=size, mode="bilinear", align_corners=False
        )[0, 0]
        mask = F.interpolate(unseen[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
        values = torch.where(mask, torch.nan, resized)
    return values.double().numpy()
