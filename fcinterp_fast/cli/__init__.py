"""The ``fcinterp`` command line: a registry of sub-commands, each imported only when it runs.

A sub-command is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int``:
``fit``, ``demo``, ``explain`` and ``bench``. ``fcinterp --help`` lists them without importing any;
only the chosen command's module is imported (with its own dependencies: matplotlib, timm, ...).

One error policy for every command:

* a user's mistake (``USER_ERRORS``: bad arguments, input the library refuses, a missing file or
  optional package) prints one line saying what was wrong and exits with status 2 (``--traceback``
  shows the traceback instead);
* anything else is a bug or a failure of the machine: the traceback, and exit status 1.

What the library logs (the ``fcinterp_fast`` logger) goes to stderr: warnings only, unless a
command is given ``-v`` (what is done) or ``-vv`` (details). A ``FitWarning`` prints as one line,
``fcinterp COMMAND: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence

from .._deps import MissingDependency
from .._version import __version__
from ..devices import DeviceUnavailable
from ..diagnostics import FitWarning, logger

__all__ = ["main", "COMMANDS", "Command", "UsageError", "USER_ERRORS"]


@dataclasses.dataclass(frozen=True)
class Command:
    """One sub-command: the module providing ``add_arguments`` and ``run``, and its one-line help."""

    module: str
    help: str


COMMANDS = {
    "demo": Command(f"{__name__}.demo", "fit the bundled EfficientNet-Lite0 and write a report"),
    "fit": Command(f"{__name__}.fit", "fit a head: CSV tables, figures and a markdown summary"),
    "explain": Command(f"{__name__}.explain", "Smooth Grad-CAM++ through the neurons of split nodes"),
    "bench": Command(f"{__name__}.bench", "time the backends on synthetic and real heads"),
}


class UsageError(Exception):
    """A mistake on the command line that the library does not see as one (e.g. a class index out
    of range, which is an ``IndexError`` to Python code)."""


#: What counts as the user's mistake: one line and exit status 2. Not RuntimeError or IndexError,
#: which are bugs or failures unless a command turns them into a ``UsageError``.
USER_ERRORS = (UsageError, ValueError, TypeError, OSError, MissingDependency, DeviceUnavailable)


class CommandUnavailable(Exception):
    """A registered sub-command whose module cannot be imported here."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcinterp`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="fcinterp",
        description="Interpret the final fully connected layer of a classifier (arXiv 2205.11908).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {name: subparsers.add_parser(name, help=c.help, description=c.help) for name, c in COMMANDS.items()}
    for command in commands.values():
        command.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="say what is done (-vv: in detail); default: warnings only",
        )
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    if chosen in COMMANDS:
        try:
            module = _import_command(chosen)
        except CommandUnavailable as error:
            print(f"fcinterp: error: {error}", file=sys.stderr)
            return 2
        module.add_arguments(commands[chosen])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 0 after --help / --version and 2 on bad arguments
        return exit_.code if isinstance(exit_.code, int) else 2
    if module is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _reporting(args.command, args.verbose):
            return int(module.run(args) or 0)
    except USER_ERRORS as error:
        if args.traceback:
            traceback.print_exc()
        print(f"fcinterp {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception:  # a bug or a failure: everything a bug report needs
        traceback.print_exc()
        print(f"fcinterp {args.command}: internal error (traceback above)", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _reporting(command: str, verbose: int) -> Iterator[None]:
    """While a command runs: the library's log records on stderr (WARNING, INFO with -v, DEBUG
    with -vv) and each ``FitWarning`` as one line; both undone afterwards (``main`` may run again
    in the same process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"fcinterp {command}: %(message)s"))
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FitWarning):
            print(f"fcinterp {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            shown = warnings.showwarning
            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _import_command(name: str):
    path = COMMANDS[name].module
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as error:
        if error.name and (path == error.name or path.startswith(error.name + ".")):
            raise CommandUnavailable(
                f"the {name!r} command is not part of this installation (module {path} is missing)"
            ) from None
        raise CommandUnavailable(f"the {name!r} command cannot start: {error}") from None
    except ImportError as error:
        raise CommandUnavailable(f"the {name!r} command cannot start: {error}") from None
    missing = [f for f in ("add_arguments", "run") if not callable(getattr(module, f, None))]
    if missing:
        raise CommandUnavailable(f"{path} does not define {' and '.join(missing)}(), so {name!r} cannot run")
    return module
