"""``fcinterp demo``: the main job on the bundled model, with nothing to download or configure.

Fits every class of EfficientNet-Lite0's ImageNet head (1000 x 1280) and writes the report of
``fcinterp fit`` for the three classes of the paper's figures (tricycle, web site, whiptail).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import fit

__all__ = ["add_arguments", "run", "PAPER_CLASSES"]

#: The classes the paper draws for every architecture (its Fig. 1/2).
PAPER_CLASSES = ("tricycle", "web site", "whiptail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="DIR", help="report folder (default ./report)")


def run(args: argparse.Namespace) -> int:
    fit_parser = argparse.ArgumentParser(prog="fcinterp fit")
    fit.add_arguments(fit_parser)
    fit_args = fit_parser.parse_args(
        ["--model", fit.DEFAULT_MODEL, "--classes", *PAPER_CLASSES, "--out", str(args.out)]
    )
    return fit.run(fit_args)
