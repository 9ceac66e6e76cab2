"""``fcinterp demo``: the main job on the bundled model, with nothing to download or configure.

Fits every class of EfficientNet-Lite0's ImageNet head (1000 x 1280), writes the report of
``fcinterp fit`` for the three classes of the paper's figures (tricycle, web site, whiptail), and adds
the paper's Fig. 5 for matplotlib's photo of Grace Hopper: Smooth Grad-CAM++ through every level of
the ``+`` and ``-`` chains of "military uniform". It fits the null heads ``NULLS`` too, so that the
report compares the head with noise of the same row statistics.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .. import models
from ..api import fit
from ..cam.options import CamOptions
from ..classes import class_names
from ..figures.cam import chain_figure
from ..report import Explanation, check_folder, write_report
from .fit import print_summary, resolve_classes

__all__ = ["add_arguments", "run", "PAPER_CLASSES", "EXPLAINED_CLASS", "NULLS", "sample_image"]

#: The classes the paper draws for every architecture (its Fig. 1/2).
PAPER_CLASSES = ("tricycle", "web site", "whiptail")
#: What the bundled photo shows (in the model's top-5).
EXPLAINED_CLASS = "military uniform"
#: Null heads the demo fits beside the head: the report's baseline (docs/spec.md section 7).
NULLS = ("normal", "laplace", "ald")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("report"), metavar="DIR", help="report folder (default ./report)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the Smooth Grad-CAM++ noise (default 0)")


def run(args: argparse.Namespace) -> int:
    check_folder(args.out)  # before the fit and the explanation
    model = models.load(models.DEFAULT_MODEL)
    label = f"{models.DEFAULT_MODEL} (bundled ImageNet weights)"
    names = class_names(model)
    start = time.perf_counter()
    head_fit = fit(model, null=NULLS)
    seconds = time.perf_counter() - start
    ks = resolve_classes(PAPER_CLASSES, len(head_fit), names)
    options = CamOptions()
    figure = chain_figure(
        model,
        sample_image(),
        EXPLAINED_CLASS,
        fit=head_fit,
        options=options,
        generator=torch.Generator().manual_seed(args.seed),
    )
    explanation = Explanation(
        figure=figure,
        filename="explain_grace_hopper.png",
        class_name=EXPLAINED_CLASS,
        image="matplotlib's photo `grace_hopper.jpg`",
        options=options,
        seed=args.seed,
    )
    index = write_report(head_fit, args.out, ks, head=label, seconds=seconds, explanation=explanation)
    print_summary(head_fit, ks, label, seconds)
    print(f"report: {index}")
    print(f"explanations: {Path(args.out) / explanation.filename}")
    return 0


def sample_image() -> str:
    """Path of matplotlib's sample photo of Grace Hopper (shipped with matplotlib: nothing to download)."""
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
