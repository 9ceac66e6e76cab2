"""``fcinterp fit``: fit the head of a model or of a weights file, and write a report.

Example:
    fcinterp fit --model efficientnet_lite0 --classes tricycle "web site" whiptail --out report
    fcinterp fit --model resnet50 --checkpoint resnet50.pth --classes tricycle
    fcinterp fit --model path/to/hf-folder --classes 3
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
from ..classes import class_from_text, class_names, config_class_names, resolve_class, resolve_class_names
from ..config import DEFAULT_BACKEND, DEFAULT_MAX_MEMORY, DEFAULT_NULL_SEED, GRIDS, NULL_KINDS, ROOTS, TREES, FitConfig
from ..devices import parse_device
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
from ..nulls import check_null_kinds
from ..report import PARQUET_MIN_CLASSES, TABLE_FORMATS, check_folder, level_stats, table_format, write_report
from ..result import HeadFit
from . import UsageError

__all__ = [
    "add_arguments",
    "add_model_arguments",
    "run",
    "fit_and_report",
    "resolve_classes",
    "print_summary",
    "parse_size",
    "parse_null_kinds",
    "gof_line",
    "model_label",
    "model_class_names",
]

_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    head = parser.add_argument_group("the head (a bundled model by default)")
    where = head.add_mutually_exclusive_group()
    add_model_arguments(head, where)
    where.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="a .safetensors / .pth / .npy file holding the head, a Hugging Face checkpoint folder or a sharded "
        "checkpoint's *.index.json (read a block of rows at a time, whatever its size)",
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
        help='classes to draw and detail: indices or class names ("web site")',
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report"), metavar="DIR", help="report folder (default ./report)"
    )
    parser.add_argument(
        "--tables",
        choices=TABLE_FORMATS,
        default=TABLE_FORMATS[0],
        help=f"format of the node table: {TABLE_FORMATS[0]} (default) writes nodes.parquet for heads of more than "
        f"{PARQUET_MIN_CLASSES} classes (pyarrow), else nodes.csv",
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


def add_model_arguments(group, where=None) -> None:
    """``--model``, ``--checkpoint``, ``--random-init`` and ``--class-names`` (``fit`` and ``explain``);
    ``--model`` goes into the mutually exclusive group ``where`` when given, with the default None
    (argparse sees no conflict with a value equal to the default), meaning ``DEFAULT_MODEL``."""
    (where or group).add_argument(
        "--model",
        metavar="NAME",
        default=None if where is not None else models.DEFAULT_MODEL,
        help=f"a bundled model ({', '.join(models.list_models())}; default {models.DEFAULT_MODEL}), any timm or "
        "torchvision architecture (resnet50, vit_b_16, timm:convnext_tiny, torchvision:convnext_tiny) with "
        "--checkpoint or --random-init, a Hugging Face folder (config.json + weights; needs transformers) or a "
        "weights file",
    )
    group.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="the weights of an architecture (.safetensors or .pth)"
    )
    group.add_argument(
        "--random-init",
        action="store_true",
        help="an architecture with random weights (nothing is downloaded, so weights must be given otherwise)",
    )
    group.add_argument(
        "--class-names",
        metavar="FILE",
        help="class names, one a line (or an ImageNet subset timm knows, e.g. imagenet-1k); default: the "
        "model's (Hugging Face id2label, torchvision's or timm's ImageNet names)",
    )


def model_label(args: argparse.Namespace) -> str:
    """What ``--model`` / ``--checkpoint`` / ``--random-init`` describe, for summaries."""
    name = args.model or models.DEFAULT_MODEL
    if args.checkpoint is not None:
        return f"{name} (weights {args.checkpoint})"
    if args.random_init:
        return f"{name} (random init)"
    if Path(name).is_dir():
        return f"{name} (Hugging Face folder)"
    return f"{name} (bundled ImageNet weights)"


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
    tables = table_format(args.tables, K)  # a missing pyarrow, too
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
        class_names=names,
    )
    if fit is None:
        return None
    seconds = time.perf_counter() - start
    index = write_report(fit, args.out, ks, head=label, seconds=seconds, tables=tables)
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
    try:
        if kinds:
            return check_null_kinds(kinds)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a list of distinct null kinds; write e.g. normal,ald (kinds: {', '.join(NULL_KINDS)})"
    )


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912: a byte count with an optional K/M/G/T suffix (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) * _SIZE_UNITS[match[2].upper()] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes; write e.g. 1000000, 256M or 2G")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def _open_head(args):
    """What to pass to ``fit`` (object and tensor name), a label, the shape and the class names."""
    if args.device is not None:  # before building anything on it
        parse_device(args.device)
    weights = args.weights
    if weights is None and args.model is not None and _is_weights(Path(args.model)):
        weights = Path(args.model)  # a weights file or a folder that transformers cannot build
        if args.checkpoint is not None or args.random_init:
            raise UsageError(f"--model {args.model} is weights already: no --checkpoint or --random-init")
    elif weights is not None and (args.checkpoint is not None or args.random_init):
        raise UsageError("--checkpoint and --random-init build a --model architecture; --weights is a head already")
    if weights is not None:  # opened once, checked up front, streamed in row blocks by fit
        source, _ = open_head(weights, args.name, with_names=False)
        label = str(source)  # which tensor of which file, and why (a tied head says so)
        K = source.shape[0]
        names = _given_names(args, K)
        if names is None:
            names = config_class_names(weights, K)
        return source, None, label, tuple(source.shape), names
    model = models.build_model(
        args.model or models.DEFAULT_MODEL, args.checkpoint, args.random_init, device=args.device or "cpu"
    )
    shape = tuple(head_weight(model, args.name).shape)
    return model, args.name, model_label(args), shape, model_class_names(args, model, shape[0])


def model_class_names(args: argparse.Namespace, model, n_classes: int) -> list[str] | None:
    """``--class-names`` if given, else what the model carries (``classes.class_names``)."""
    given = _given_names(args, n_classes)
    return given if given is not None else class_names(model, n_classes)


def _given_names(args: argparse.Namespace, n_classes: int) -> list[str] | None:
    return resolve_class_names(args.class_names, n_classes) if args.class_names is not None else None


def _is_weights(path: Path) -> bool:
    """A ``--model`` path to fit as weights: a file, or a folder that is not a Hugging Face model
    transformers can build here (no config.json, or transformers not installed)."""
    if path.is_file():
        return True
    if not path.is_dir():
        return False
    if not (path / "config.json").is_file():
        return True
    try:
        import transformers  # noqa: F401
    except ImportError:
        return True
    return False


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
