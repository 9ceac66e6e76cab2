"""The paper's Fig. 5: what every level of the ``+`` and ``-`` chains of one class sees.

One row per chain: the overlay of the Smooth Grad-CAM++ map of each node (``+``, ``++``, ``+++`` ...
and ``-``, ``--`` ...) on the image, titled with the node and its number of neurons; the first column
holds the image and the map through every neuron of the class. All maps come from one fused call.
A photo (path / PIL image) is drawn whole, the border its preprocessing crops away greyed out.

Colour scale (``CamOptions.scale``): ``"shared"`` divides every map by the largest value of all maps
of the figure, so nodes can be compared (a node whose neurons see little is pale); ``"panel"``
min-max scales each map on its own (the paper's figure). A panel whose map is zero everywhere (no
positive contribution: under ``weights="fc"`` a ``-`` node's weights are negative, so relu(g) = 0)
says so on the panel instead of showing a blank overlay.
The figure is built without pyplot (``fcinterp_fast.report.save_figure`` writes it).
"""

from __future__ import annotations

import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import nn

from ..cam.base import model_device_dtype
from ..cam.gradcampp import SCALE_GUARD
from ..cam.images import is_image, prepare_images
from ..cam.methods import cam_for
from ..cam.options import WEIGHT_LABELS, CamOptions
from ..cam.overlay import as_rgb, grey_unseen
from ..classes import resolve_class
from .fits import plain_text, short_name

__all__ = ["chain_figure"]

_DEFAULT_OPTIONS = CamOptions()


def chain_figure(
    model: nn.Module,
    image,
    cls: int | str | None,
    *,
    fit=None,
    options: CamOptions = _DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
    target_layer: nn.Module | str | None = None,
    cmap: str = "jet",
    overlay_alpha: float = 0.5,
) -> Figure:
    """Draw the image and, for each level of the ``+`` and ``-`` chains of class ``cls``, its map.

    Args:
        model: a timm classifier in eval mode (or any model with ``target_layer``).
        image: a path, a PIL image, or a preprocessed (3, H, W) / (1, 3, H, W) tensor.
        cls: class index or name; None takes the model's top prediction.
        fit: the ``HeadFit`` giving the chains (None: ``fcinterp_fast.fit`` with its defaults).
        options: the explanation's method and options, and the colour scale ``options.scale``
            (``CamOptions``; default Smooth Grad-CAM++, shared scale).
        generator, target_layer: as in ``explain``.
        cmap, overlay_alpha: drawing options.

    Returns:
        The figure (save it with ``fcinterp_fast.report.save_figure`` or ``fig.savefig``).
    """
    device, dtype = model_device_dtype(model)
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        image = image[None]
    photo = is_image(image) or (isinstance(image, (list, tuple)) and len(image) == 1 and is_image(image[0]))
    x = prepare_images(image, model, device, dtype)
    if x.shape[0] != 1:
        raise ValueError(f"chain_figure draws one image, got a batch of {x.shape[0]}")
    with torch.no_grad():
        probabilities = model(x).float().softmax(dim=-1)[0]
    with cam_for(model, options, target_layers=target_layer, fit=fit) as cam:
        head_fit = cam.fit
        names = cam.class_names
        k = int(probabilities.argmax()) if cls is None else resolve_class(cls, len(head_fit), names)
        chains = [_chain(head_fit, k, sign) for sign in "+-"]
        targets = [(k, None)] + [(k, node) for chain in chains for node in chain]
        resolved = cam.resolve(targets)
        raw = cam.maps(image if photo else x, targets, generator=generator, scaled=False)
    raw = raw[0].float().cpu()  # (T, H, W), NaN outside a photo's crop
    maps = _scaled(raw, options.scale).numpy()
    empty = [bool(torch.nan_to_num(m).max() <= 0) for m in raw]
    if photo:
        picture = as_rgb(image[0] if isinstance(image, (list, tuple)) else image)
        unseen = torch.isnan(raw[0]).numpy()
        picture[unseen] = grey_unseen(picture)[unseen]
    else:
        picture = _displayable(x[0].float().cpu(), model)

    levels = max(len(c) for c in chains)
    # column 0: the image and the whole class; a narrow column for the chain labels; then the levels
    fig = Figure(figsize=(1.9 * (levels + 1) + 1.2, 4.7))
    axes = fig.subplots(
        2,
        levels + 2,
        squeeze=False,
        gridspec_kw=dict(wspace=0.06, hspace=0.32, width_ratios=[1, 0.14] + [1] * levels),
    )
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(picture)
    axes[0, 0].set_title("input", fontsize=9)

    def draw(ax, index, title, node):
        ax.imshow(picture)
        ax.imshow(maps[index], cmap=cmap, alpha=overlay_alpha, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=9)
        if empty[index]:
            ax.text(
                0.5,
                0.5,
                _empty_note(node, options.weights),
                ha="center",
                va="center",
                fontsize=6.5,
                transform=ax.transAxes,
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.85, edgecolor="grey"),
            )

    draw(axes[1, 0], 0, f"whole class\n{resolved[0].size} neurons", None)
    index = 1
    for row, (chain, label) in enumerate(zip(chains, ("+ chain: discriminative", "- chain: confusing"), strict=True)):
        axes[row, 1].text(
            0.5, 0.5, label, rotation=90, ha="center", va="center", fontsize=9, transform=axes[row, 1].transAxes
        )
        for level, node in enumerate(chain):
            draw(axes[row, level + 2], index, f"{_node_label(node)}\n{resolved[index].size} neurons", node)
            index += 1
    colors = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap)
    label = "map / largest value of all panels" if options.scale == "shared" else "map (min-max scaled per panel)"
    fig.colorbar(colors, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label=label)

    class_name = plain_text(short_name(names[k])) if names else f"class {k}"
    fig.suptitle(
        f"{_model_name(model)}: {class_name!r} (class {k}, p = {float(probabilities[k]):.2f}); {options.describe()}; "
        f"{options.scale} colour scale",
        fontsize=10,
    )
    return fig


def _scaled(raw: torch.Tensor, scale: str) -> torch.Tensor:
    """(T, H, W) relu'd maps -> [0, 1]: ``"panel"`` min-max per map, ``"shared"`` min-max over all maps
    (1e-7 guard as docs/spec.md section 5); NaN stays NaN."""
    filled = torch.nan_to_num(raw, nan=0.0)
    dims = (-2, -1) if scale == "panel" else (0, 1, 2)
    lo = torch.where(torch.isnan(raw), torch.inf, raw).amin(dim=dims, keepdim=True)
    hi = filled.amax(dim=dims, keepdim=True)
    return (raw - lo) / (SCALE_GUARD + hi - lo)


def _empty_note(node: str | None, weights: str) -> str:
    """Why a panel's map is zero everywhere (short lines: it is written on the panel)."""
    if node is not None and node.startswith("-") and weights == "fc":
        return (
            f"empty: under omega = {WEIGHT_LABELS[weights]}\nthe weights of a - node\nare negative, so no"
            f"\nneuron adds to the score\n(relu(gradient) = 0)"
        )
    return "empty: no positive\ncontribution to the score\nanywhere in this image"


def _chain(fit, k: int, sign: str) -> list[str]:
    """The nodes of one chain present for class k, root first."""
    nodes = [n for j, n in enumerate(fit.nodes) if set(n) == {sign} and fit.count[k, j] > 0]
    return sorted(nodes, key=len)


def _node_label(node: str) -> str:
    """``+++`` as is; long chains as ``+x7 (+++++++)`` would not fit, so ``+ x 7``."""
    return node if len(node) <= 5 else f"{node[0]} \u00d7 {len(node)}"


def _displayable(x: torch.Tensor, model: nn.Module):
    """(3, H, W) preprocessed image -> (H, W, 3) numpy in [0, 1], undoing the model's normalisation."""
    try:
        import timm.data

        config = timm.data.resolve_data_config(model=model)
        mean = torch.tensor(config["mean"])[:, None, None]
        std = torch.tensor(config["std"])[:, None, None]
        picture = x * std + mean
    except (ImportError, KeyError):
        picture = x
    if picture.min() < -0.1 or picture.max() > 1.1:  # not the model's normalisation: stretch instead
        picture = (x - x.min()) / (x.max() - x.min() + 1e-12)
    return picture.clamp(0, 1).permute(1, 2, 0).numpy()


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "pretrained_cfg", None) or {}
    return config.get("architecture") or type(model).__name__
