"""The ``fcinterp`` command line: a registry of sub-commands, each imported only when it runs.

A sub-command is a module with ``add_arguments(parser)`` and ``run(args) -> int``. ``fcinterp
--help`` lists them without importing any, only the chosen command's module is imported (with
its own dependencies: matplotlib, timm, ...), and a command whose module is missing or cannot be
imported gets a one-line error, not a traceback.

Exit codes: 0 on success, 2 for bad arguments or input the library refuses (the message says what
was wrong); ``--traceback`` shows the full traceback of such an error instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Sequence

from . import __version__

__all__ = ["main", "COMMANDS", "Command", "USER_ERRORS"]


@dataclasses.dataclass(frozen=True)
class Command:
    """One sub-command: the module providing ``add_arguments`` and ``run``, and its one-line help."""

    module: str
    help: str


COMMANDS = {
    "demo": Command("fcinterp_fast.commands.demo", "fit the bundled EfficientNet-Lite0 and write a report"),
    "fit": Command("fcinterp_fast.commands.fit", "fit a head: CSV tables, figures and a markdown summary"),
    "explain": Command("fcinterp_fast.cam.cli", "Smooth Grad-CAM++ through the neurons of split nodes"),
    "bench": Command("fcinterp_fast.bench", "time the backends on synthetic and real heads"),
}

#: Errors that mean "the input was wrong" (the library's messages say how): exit 2, no traceback.
USER_ERRORS = (ValueError, TypeError, IndexError, OSError, ImportError, RuntimeError)


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
    commands = {
        name: subparsers.add_parser(name, help=c.help, description=c.help) for name, c in COMMANDS.items()
    }
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
        return int(module.run(args) or 0)
    except USER_ERRORS as error:
        if args.traceback:
            raise
        print(f"fcinterp {args.command}: error: {error}", file=sys.stderr)
        return 2


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


if __name__ == "__main__":
    sys.exit(main())
