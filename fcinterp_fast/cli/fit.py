"""``fcinterp fit``: fit the head of a bundled model or of a weights file, and write a report.

Example:
    fcinterp fit --model efficientnet_lite0 --classes tricycle "web site" whiptail --out report
    fcinterp fit --weights model.safetensors --name lm_head.weight --classes 0 17 --tree full --depth 3
    torchrun --standalone --nproc-per-node 4 -m fcinterp_fast.cli fit \\
        --weights model.safetensors --name lm_head.weight --distributed
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import models
from ..api import fit as fit_head
from ..backends import registry
from ..classes import class_from_text, class_names, resolve_class
from ..config import DEFAULT_BACKEND, DEFAULT_MAX_MEMORY, DEFAULT_NULL_SEED, GRIDS, NULL_KINDS, ROOTS, TREES, FitConfig
from ..distributed import (
    DEFAULT_TIMEOUT,
    DIST_BACKENDS,
    NotLaunchedByTorchrun,
    fit_sharded,
    on_rank_zero,
    process_group,
)
from ..figures.fits import class_label
from ..heads.find import head_weight, open_head
from ..report import check_folder, level_stats, write_report
from ..result import HeadFit
from . import UsageError

__all__ = [
    "add_arguments",
    "run",
    "fit_and_report",
    "resolve_classes",
    "print_summary",
    "parse_size",
    "parse_null_kinds",
    "gof_line",
]

_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    head = parser.add_argument_group("the head (a bundled model by default)")
    where = head.add_mutually_exclusive_group()
    where.add_argument(
        "--model", choices=models.list_models(), help=f"a bundled model (default {models.DEFAULT_MODEL})"
    )
    where.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="a .safetensors / .pth / .npy file holding the head, a Hugging Face checkpoint folder or a sharded "
        "checkpoint's *.index.json",
    )
    head.add_argument(
        "--name",
        metavar="TENSOR",
        help="the head's tensor in FILE (e.g. lm_head.weight) or submodule of the model; "
        "default: found by name and shape",
    )
    head.add_argument(
        "--device",
        help="where to fit, e.g. cpu or cuda (default: a model's on the cpu; a file's "
        "blocks on the GPU when there is one, copies overlapping the fit)",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        default=[],
        metavar="CLASS",
        help='classes to draw and detail: indices or ImageNet names ("web site")',
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report"), metavar="DIR", help="report folder (default ./report)"
    )
    options = parser.add_argument_group("fit options (see fcinterp_fast.fit)")
    options.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=[DEFAULT_BACKEND, *registry.names()],
        help=f"default {DEFAULT_BACKEND}",
    )
    options.add_argument("--tree", default=FitConfig.tree, choices=TREES, help=f"default {FitConfig.tree}")
    options.add_argument(
        "--root",
        default=FitConfig.root,
        choices=ROOTS,
        help=f"split the row at zero or at its mean (default {FitConfig.root})",
    )
    options.add_argument(
        "--grid", default=FitConfig.grid, choices=GRIDS, help=f"Algorithm 1's x grid (default {FitConfig.grid})"
    )
    options.add_argument(
        "--depth",
        type=int,
        default=FitConfig.depth,
        metavar="N",
        help="deepest level (default: none for chains; full trees need one, <= 10)",
    )
    options.add_argument(
        "--min-size",
        type=int,
        default=FitConfig.min_size,
        metavar="N",
        help=f"split only nodes with at least N members (default {FitConfig.min_size})",
    )
    options.add_argument(
        "--max-memory",
        type=parse_size,
        metavar="BYTES",
        help=f"working memory of one block of rows, e.g. 256M or 2G (default {DEFAULT_MAX_MEMORY // 2**20}M)",
    )
    options.add_argument(
        "--null",
        type=parse_null_kinds,
        default=(),
        metavar="KINDS",
        help=f"also fit null heads with the same options, the baseline of the report's comparison: "
        f"comma-separated kinds among {', '.join(NULL_KINDS)} (e.g. normal,ald; default none)",
    )
    options.add_argument(
        "--null-seed",
        type=int,
        default=DEFAULT_NULL_SEED,
        metavar="N",
        help=f"base seed of the null heads (default {DEFAULT_NULL_SEED})",
    )
    distributed = parser.add_argument_group("distributed fitting (under torchrun)")
    distributed.add_argument(
        "--distributed",
        action="store_true",
        help="share the head's rows out over the processes of a torchrun job; rank 0 writes the results",
    )
    distributed.add_argument(
        "--dist-backend",
        choices=DIST_BACKENDS,
        default=DIST_BACKENDS[0],
        help="torch.distributed backend: NCCL on GPUs, gloo on CPUs (default: NCCL when CUDA is available)",
    )
    distributed.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long a rank waits for the others (to join, and for the last one to finish its shard) "
        f"before the job fails naming the ranks that did not answer (default {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    if args.distributed and args.null:
        raise UsageError("--null is not supported with --distributed: fit the null heads without --distributed")
    if args.distributed:  # every rank fits its shard; rank 0 gathers them and writes the report
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(process_group(args.dist_backend, timeout=args.timeout))
            except NotLaunchedByTorchrun as error:  # --distributed without torchrun: the user's mistake
                raise UsageError(str(error)) from None
            fit_and_report(args, fitter=fit_sharded, check_out=functools.partial(on_rank_zero, check_folder))
    else:
        fit_and_report(args)
    return 0


def fit_and_report(
    args: argparse.Namespace, fitter: Callable = fit_head, check_out: Callable[[Path], object] = check_folder
) -> HeadFit | None:
    """Fit the head ``args`` describe and write its report; returns the fit.

    ``fitter`` is ``fit`` or ``distributed.fit_sharded``; ranks other than 0 of the latter get no
    ``HeadFit``, write nothing and return None. ``check_out`` checks that the report folder can be
    written before the fit (with ``fit_sharded``: on rank 0, every rank stopping if it cannot).
    """
    head, name, label, (K, _), names = _open_head(args)
    ks = resolve_classes(args.classes, K, names)  # before the fit: fail fast
    check_out(args.out)
    start = time.perf_counter()
    nulls = dict(null=args.null, null_seed=args.null_seed) if args.null else {}
    fit = fitter(
        head,
        backend=args.backend,
        tree=args.tree,
        root=args.root,
        min_size=args.min_size,
        depth=args.depth,
        grid=args.grid,
        name=name,
        max_memory=args.max_memory,
        device=args.device,
        **nulls,
    )
    if fit is None:
        return None
    seconds = time.perf_counter() - start
    index = write_report(fit, args.out, ks, head=label, seconds=seconds)
    print_summary(fit, ks, label, seconds)
    print(f"report: {index}")
    return fit


def resolve_classes(texts: Sequence[str], n_classes: int, names: Sequence[str] | None) -> list[int]:
    """Classes typed on the command line (indices or names) as indices; a bad one is a ``UsageError``."""
    try:
        return [resolve_class(class_from_text(text), n_classes, names) for text in texts]
    except IndexError as error:  # an index out of range, typed by the user
        raise UsageError(str(error)) from None


def parse_null_kinds(text: str) -> tuple[str, ...]:
    """``"normal,ald"`` -> ``("normal", "ald")``, checked against ``NULL_KINDS``."""
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [kind for kind in kinds if kind not in NULL_KINDS]
    if not kinds or bad or len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of distinct null kinds; write e.g. normal,ald (kinds: {', '.join(NULL_KINDS)})"
        )
    return kinds


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912: a byte count with an optional K/M/G/T suffix (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) * _SIZE_UNITS[match[2].upper()] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes; write e.g. 1000000, 256M or 2G")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def _open_head(args):
    """What to pass to ``fit`` (object and tensor name), a label, the shape and the class names."""
    if args.weights is not None:  # opened once, checked up front, streamed in row blocks by fit
        source, _ = open_head(args.weights, args.name)
        return source, None, str(source), tuple(source.shape), None
    name = args.model or models.DEFAULT_MODEL
    model = models.load(name, device=args.device or "cpu")
    label = f"{name} (bundled ImageNet weights)"
    return model, args.name, label, tuple(head_weight(model, args.name).shape), class_names(model)


def gof_line(fit: HeadFit) -> str:
    """One line on the goodness of fit (docs/spec.md section 7): where the ALD beats the normal and the
    Laplace by AIC, median kappa and KS distance, and the nulls' median R^2 of ``+`` if fitted."""
    gof = fit.gof

    def share(daic) -> str:
        finite = daic[~daic.isnan()]
        return f"{100 * float((finite > 0).double().mean()):.1f}%" if finite.numel() else "n/a"

    line = (
        f"ALD beats the normal by AIC in {share(gof.daic_normal)} of classes, the Laplace in "
        f"{share(gof.daic_laplace)}; median kappa {float(fit.ald.kappa.nanmedian()):.3f}, "
        f"median KS {float(gof.ks.nanmedian()):.3f}"
    )
    if fit.null:
        plus = {name: h.r2[:, h.nodes.index("+")].nanmedian() for name, h in [("trained", fit), *fit.null.items()]}
        line += "; median R^2 of +: " + ", ".join(f"{name} {float(v):.3f}" for name, v in plus.items())
    return line


def print_summary(fit: HeadFit, ks: Sequence[int], label: str, seconds: float) -> None:
    """What ``fit`` and ``demo`` print: the head, median R^2 per node, and the chosen classes."""
    K, D = fit.shape
    print(f"fitted {label}: {K} classes x {D} features, backend {fit.backend}, {seconds:.2f} s")
    chain = fit.config.tree == "chain"
    medians = [f"{s.side * s.level if chain else f'L{s.level}{s.side}'} {s.median:.3f}" for s in level_stats(fit)]
    print("  median R^2 per node: " + ", ".join(medians))
    print("  " + gof_line(fit))
    for k in ks:
        plus, minus = fit.column("+"), fit.column("-")
        deepest = {side: fit.nodes[fit.column(side + "*", k)] for side in "+-"} if chain else {}
        print(
            f"  {class_label(fit, k)}: + R^2 {float(fit.r2[k, plus]):.3f} (n {int(fit.count[k, plus])}), "
            f"- R^2 {float(fit.r2[k, minus]):.3f} (n {int(fit.count[k, minus])})"
            + (
                f", chains to {' and '.join(f'{n} (n {int(fit.count[k, fit.column(n)])})' for n in deepest.values())}"
                if deepest
                else ""
            )
            + f"; ALD kappa {float(fit.ald.kappa[k]):.4g}, scale {float(fit.ald.scale[k]):.4g}"
        )
