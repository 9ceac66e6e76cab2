"""``fcinterp demo``: the main job on the bundled model, with nothing to download or configure.

Fits every class of EfficientNet-Lite0's ImageNet head (1000 x 1280), writes the report of
``fcinterp fit`` for the three classes of the paper's figures (tricycle, web site, whiptail), and adds
the paper's Fig. 5 for matplotlib's photo of Grace Hopper: Smooth Grad-CAM++ through every level of
the ``+`` and ``-`` chains of "military uniform".
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import fit

__all__ = ["add_arguments", "run", "PAPER_CLASSES", "EXPLAINED_CLASS"]

#: The classes the paper draws for every architecture (its Fig. 1/2).
PAPER_CLASSES = ("tricycle", "web site", "whiptail")
#: What the bundled photo shows (in the model's top-5).
EXPLAINED_CLASS = "military uniform"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="DIR", help="report folder (default ./report)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Smooth Grad-CAM++ noise (default 0)")


def run(args: argparse.Namespace) -> int:
    import matplotlib.cbook

    from ..cam.figure import chain_figure

    fit_parser = argparse.ArgumentParser(prog="fcinterp fit")
    fit.add_arguments(fit_parser)
    fit_args = fit_parser.parse_args(
        ["--model", fit.DEFAULT_MODEL, "--classes", *PAPER_CLASSES, "--out", str(args.out)]
    )
    head_fit, model, index = fit.fit_and_report(fit_args)
    image = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    figure = chain_figure(
        model, image, EXPLAINED_CLASS, out=Path(args.out) / "explain_grace_hopper.png", fit=head_fit,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    with open(index, "a") as f:
        f.write(
            f"\n## What the neurons of each node see\n\n"
            f"Smooth Grad-CAM++ (16 noisy copies, noise 0.15, seed {args.seed}) of `{EXPLAINED_CLASS}` on "
            f"matplotlib's `grace_hopper.jpg`, through only the neurons of each level of the `+` chain "
            f"(most discriminative) and the `-` chain (most confusing), weights |W| (the paper's Fig. 5):\n\n"
            f"![Smooth Grad-CAM++ per node]({figure.name})\n"
        )
    print(f"explanations: {figure}")
    return 0
