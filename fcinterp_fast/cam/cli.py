"""``fcinterp explain``: the chain figure (paper Fig. 5) of one image and class.

The command-line entry point wires its ``explain`` sub-command to ``add_arguments`` and ``run``:

    fcinterp explain --model efficientnet_lite0 --image PATH --class "military uniform" --out fig.png
"""
from __future__ import annotations

import argparse

import torch

from .base import METHODS, SMOOTHS
from .targets import WEIGHTS

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``fcinterp explain`` to ``parser``."""
    from ..models import list_models

    parser.add_argument("--model", default="efficientnet_lite0", choices=list_models(),
                        help="bundled model (fcinterp_fast.models.load); default %(default)s")
    parser.add_argument("--image", default=None,
                        help="image file; default: matplotlib's sample photo grace_hopper.jpg")
    parser.add_argument("--class", dest="cls", default=None,
                        help="class name (e.g. 'military uniform') or index; default: the top prediction")
    parser.add_argument("--out", default="explain.png", help="figure to write (.png, .pdf, .svg); default %(default)s")
    parser.add_argument("--weights", choices=WEIGHTS, default="abs",
                        help="omega in the node score: |W| (abs), W (fc) or 1 (ones); default %(default)s")
    parser.add_argument("--method", choices=METHODS, default="smooth", help="default %(default)s")
    parser.add_argument("--smooth", choices=SMOOTHS, default="maps", help="default %(default)s")
    parser.add_argument("--n-samples", type=int, default=16, help="noisy copies; default %(default)s")
    parser.add_argument("--noise", type=float, default=0.15, help="noise / (max - min) of the image; default %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise; default %(default)s")
    parser.add_argument("--min-size", type=int, default=20, help="split nodes of at least this size; default %(default)s")
    parser.add_argument("--depth", type=int, default=None, help="deepest chain level drawn; default: no limit")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda; default %(default)s")


def run(args: argparse.Namespace) -> int:
    """Write the figure; bad input raises (``fcinterp`` prints it and exits 2)."""
    from .. import api, heads, models
    from ..result import class_from_text, resolve_class
    from .figure import chain_figure

    model = models.load(args.model, device=args.device)
    image = args.image if args.image is not None else _sample_image()
    cls = None if args.cls is None else class_from_text(args.cls)
    if cls is not None:  # a bad class fails before the fit
        cls = resolve_class(cls, heads.head_weight(model).shape[0], models.class_names(model))
    fit = api.fit(model, min_size=args.min_size, depth=args.depth)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    path = chain_figure(
        model, image, cls, out=args.out, fit=fit, n_samples=args.n_samples, noise=args.noise,
        generator=generator, weights=args.weights, smooth=args.smooth, method=args.method,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


def _sample_image() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
