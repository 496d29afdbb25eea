"""The ``pbt`` command line (DESIGN §6): one small handler per subcommand.

Results go to stdout, progress and logs to stderr. A ``PBTError`` (bad config or argument, unreadable
run directory) is caught once, in ``main``: one line ``pbt: error: <message>`` and exit status 2,
with a traceback only under ``--debug``. To add a subcommand, write ``_add_<name>(subparsers)``
that registers its arguments and sets ``handler``, and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from models.errors import ConfigError, PBTError
from pbt.config import load_config
from pbt.strategies import STRATEGIES

# Every subcommand of DESIGN §6, in the order ``--help`` lists them.
SUBCOMMANDS = {
    "run": "train one population with one strategy",
    "compare": "run every strategy for every seed at the same budget",
    "resume": "continue a run whose driver died",
    "replay": "retrain from scratch on the best member's hyperparameter schedule",
    "report": "write a static HTML report with figures",
    "dashboard": "serve the live web dashboard",
}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are ``ConfigError``s, reported once by ``main``."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_non_negative_int.__name__ = "integer >= 0"  # argparse names the type in "invalid <type> value"
_positive_int.__name__ = "integer >= 1"


def default_out(config_path: Path, strategy: str, seed: int) -> Path:
    """``runs/<config stem>-<strategy>-seed<N>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{config_path.stem}-{strategy}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path) -> None:
    """``--out`` must be absent or an empty directory."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out: {out} already exists and is not an empty directory")


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help=SUBCOMMANDS["run"], description=SUBCOMMANDS["run"])
    parser.add_argument("config", type=Path, help="the TOML config (DESIGN §6)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="pbt", help="default: pbt")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="the run's one seed (default 0)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<config>-<strategy>-seed<N>-<time>)")
    parser.add_argument("--address", help="an existing Ray cluster: 'auto' or 'ray://host:port' (default: local Ray)")
    parser.add_argument("--workers", type=_positive_int, help="worker actors (default: the cluster's CPUs)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = args.out if args.out is not None else default_out(args.config, args.strategy, args.seed)
    check_out(out)

    from pbt import api  # Ray loads only when a run starts; api.run validates the rest before writing
    from pbt.terminal import ProgressDisplay, results_table
    from search.store import load_run

    display = ProgressDisplay(sys.stderr, config.objective, quiet=args.quiet)
    try:
        api.run(
            config, strategy=args.strategy, seed=args.seed, out=out,
            address=args.address, workers=args.workers, on_progress=display,
        )
    finally:
        display.close()
    print(results_table(load_run(out)))
    print(f"\nrun directory: {out}")
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_run,)


def build_parser() -> argparse.ArgumentParser:
    """The ``pbt`` parser with every available subcommand; ``--help`` lists the planned ones too."""
    parser = _Parser(
        prog="pbt",
        description="Population-based hyperparameter search (PBT, grid, random) on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    planned = [name for name in SUBCOMMANDS if name not in subparsers.choices]
    if planned:
        parser.epilog = "not available yet (DESIGN §6):\n" + "\n".join(
            f"  {name:<12}{SUBCOMMANDS[name]}" for name in planned
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pbt`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, even before a usage error
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except PBTError as exc:
        if debug:
            traceback.print_exc()
        print(f"pbt: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("pbt: interrupted", file=sys.stderr)
        return 130
