"""``fcinterp explain``: the chain figure (the paper's Fig. 5) of one image and class.

fcinterp explain --model efficientnet_lite0 --image PATH --class "military uniform" --out fig.png
fcinterp explain --model resnet50 --checkpoint resnet50.pth --image PATH --target-layer layer4
"""

from __future__ import annotations

import argparse

import torch

from .. import models
from ..api import fit
from ..cam.options import METHODS, SCALES, SMOOTHS, WEIGHTS, CamOptions
from ..config import FitConfig
from ..devices import parse_device
from ..figures.cam import chain_figure
from ..heads.find import head_weight
from ..report import save_figure
from .demo import sample_image
from .fit import add_model_arguments, model_class_names, resolve_classes

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``fcinterp explain`` to ``parser``."""
    add_model_arguments(parser)
    parser.add_argument(
        "--target-layer",
        metavar="MODULE",
        help="the layer whose activations are explained, by its name in the model (e.g. layer4); default: found "
        "for timm models, torchvision CNNs and Hugging Face image classifiers",
    )
    parser.add_argument("--image", default=None, help="image file; default: matplotlib's sample photo grace_hopper.jpg")
    parser.add_argument(
        "--class",
        dest="cls",
        default=None,
        help="class name (e.g. 'military uniform') or index; default: the top prediction",
    )
    parser.add_argument("--out", default="explain.png", help="figure to write (.png, .pdf, .svg); default %(default)s")
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        default=CamOptions.weights,
        help="omega in the node score: |W| (abs), W (fc) or 1 (ones); default %(default)s",
    )
    parser.add_argument("--method", choices=METHODS, default=CamOptions.method, help="default %(default)s")
    parser.add_argument("--smooth", choices=SMOOTHS, default=CamOptions.smooth, help="default %(default)s")
    parser.add_argument("--n-samples", type=int, default=CamOptions.n_samples, help="noisy copies; default %(default)s")
    parser.add_argument(
        "--noise", type=float, default=CamOptions.noise, help="noise / (max - min) of the image; default %(default)s"
    )
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default=CamOptions.scale,
        help="colour scale: one for all panels (shared, nodes comparable) or min-max per panel; default %(default)s",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise; default %(default)s")
    parser.add_argument(
        "--min-size",
        type=int,
        default=FitConfig.min_size,
        help="split nodes of at least this size; default %(default)s",
    )
    parser.add_argument(
        "--depth", type=int, default=FitConfig.depth, help="deepest chain level drawn; default: no limit"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda; default %(default)s")


def run(args: argparse.Namespace) -> int:
    """Write the figure; bad input raises (``fcinterp`` prints it and exits 2)."""
    options = CamOptions(
        method=args.method,
        n_samples=args.n_samples,
        noise=args.noise,
        smooth=args.smooth,
        weights=args.weights,
        scale=args.scale,
    )
    device = parse_device(args.device)  # before building anything on it
    model = models.build_model(args.model, args.checkpoint, args.random_init, device=device)
    K = head_weight(model).shape[0]
    names = model_class_names(args, model, K)
    cls = None
    if args.cls is not None:  # a bad class fails before the fit
        (cls,) = resolve_classes([args.cls], K, names)
    head_fit = fit(model, min_size=args.min_size, depth=args.depth, class_names=names)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    image = args.image if args.image is not None else sample_image()
    figure = chain_figure(
        model, image, cls, fit=head_fit, options=options, generator=generator, target_layer=args.target_layer
    )
    print(f"wrote {save_figure(figure, args.out)}")
    return 0
