"""The ``pbt`` command line (DESIGN §6): one small handler per subcommand.

Results go to stdout, progress and logs to stderr. A ``PBTError`` is caught once, in ``main``: one
line ``pbt: error: <message>``, with a traceback only under ``--debug``, and exit status 3 for a run
that failed (``RunFailed``: the line names its directory and says whether ``pbt resume`` continues
it), else 2 (a bad config or argument, an unreadable run directory: nothing was written). To add
a subcommand, write ``_add_<name>(subparsers)`` that registers its arguments and sets ``handler``,
and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from models.errors import ConfigError, PBTError, RunFailed
from pbt.config import load_config
from pbt.strategies import COMPARED, STRATEGIES, parse_strategies

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from pbt.service import Submitted

# Every subcommand of DESIGN §6, in the order ``--help`` lists them.
SUBCOMMANDS = {
    "run": "train one population with one strategy",
    "compare": "run every strategy for every seed at the same budget",
    "resume": "continue a run whose driver died or stopped (a submitted one as a job)",
    "replay": "retrain from scratch on the best member's hyperparameter schedule",
    "report": "write a static HTML report with figures",
    "dashboard": "serve the live web dashboard",
    "submit": "submit a search to a Ray cluster as a job (service mode)",
    "jobs": "list the searches submitted to a Ray cluster",
    "status": "show what a submitted search is doing",
    "logs": "print a submitted search's logs",
    "stop": "stop a submitted search; pbt resume continues it",
}


class Parser(argparse.ArgumentParser):
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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_finite_float.__name__ = "finite number"
_non_negative_int.__name__ = "integer >= 0"  # argparse names the type in "invalid <type> value"
_positive_int.__name__ = "integer >= 1"


def default_out(config_path: Path, strategy: str, seed: int | None) -> Path:
    """``runs/<config stem>-<strategy>[-seed<N>]-<YYYYmmdd-HHMMSS>``."""
    seed_part = "" if seed is None else f"-seed{seed}"
    return Path("runs") / f"{config_path.stem}-{strategy}{seed_part}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path) -> None:
    """``--out`` must be absent or an empty directory, in a place where a directory can be made."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out: {out} already exists and is not an empty directory")
    where = out.absolute()
    where = next(p for p in (where, *where.parents) if p.exists())  # the root always exists
    if not where.is_dir():
        raise ConfigError(f"--out: {out} cannot be made: {where} is not a directory")
    try:  # a trial directory, removed at once: what the run will do, without leaving anything
        Path(tempfile.mkdtemp(prefix=".pbt-out-", dir=where)).rmdir()
    except OSError as exc:
        raise ConfigError(f"--out: {out} cannot be made in {where} ({exc.strerror})") from None


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where a search trains, and whether it shows progress: shared by run, compare and resume."""
    parser.add_argument("--address", help="an existing Ray cluster: its head's 'host:port', 'auto' or "
                                           "'ray://host:port' (default: a local Ray on loopback)")
    parser.add_argument("--workers", type=_positive_int,
                        help="worker actors (default: the config's resources.workers, else as many as fit)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help=SUBCOMMANDS["run"], description=SUBCOMMANDS["run"])
    parser.add_argument("config", type=Path, help="the TOML config (DESIGN §6)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="pbt", help="default: pbt")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="the run's one seed (default 0)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<config>-<strategy>-seed<N>-<time>)")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = args.out if args.out is not None else default_out(args.config, args.strategy, args.seed)
    check_out(out)

    from pbt import api  # Ray loads only when a run starts; api.run validates the rest before writing
    from pbt.terminal import ProgressDisplay

    display = ProgressDisplay(sys.stderr, config.objective, quiet=args.quiet)
    try:
        api.run(
            config, strategy=args.strategy, seed=args.seed, out=out,
            address=args.address, workers=args.workers, on_progress=display,
        )
    finally:
        display.close()
    return print_results(out)


def print_results(run_dir: Path) -> int:
    """After a run: its figures into ``figures/``, then the ranked members on stdout."""
    from dashboards import save_run_figures
    from pbt.terminal import results_table
    from search.store import load_run

    save_run_figures(run_dir)
    print(results_table(load_run(run_dir)))
    print(f"\nrun directory: {run_dir}")
    return 0


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help=SUBCOMMANDS["compare"], description=SUBCOMMANDS["compare"])
    parser.add_argument("config", type=Path, help="the TOML config (DESIGN §6)")
    parser.add_argument("--strategies", default=COMPARED, help=f"default: {COMPARED}")
    parser.add_argument("--seeds", type=_positive_int, default=5,
                        help="seeds 0..N-1 per strategy (default 5, the fewest that can reach p < 0.05)")
    parser.add_argument("--target", type=_finite_float, help="objective level for steps-to-target (default: median best)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/<config>-compare-<time>)")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    strategies = parse_strategies(args.strategies)
    out = args.out if args.out is not None else default_out(args.config, "compare", None)
    check_out(out)

    from pbt import api
    from pbt.compare import compare, format_paired, format_summary
    from pbt.terminal import ProgressDisplay
    from workers.cluster import disconnect

    started = api.connect_for(config, args.address)  # one Ray for every run, and the trainable shipped
    out.mkdir(parents=True, exist_ok=True)
    runs = len(strategies) * args.seeds

    def run_one(strategy: str, seed: int, run_dir: Path) -> dict:
        display = ProgressDisplay(sys.stderr, config.objective, quiet=args.quiet)
        try:
            return api.run(config, strategy=strategy, seed=seed, out=run_dir,
                           address=args.address, workers=args.workers, on_progress=display)
        finally:
            display.close()

    def announce(strategy: str, seed: int) -> None:
        if not args.quiet:
            done = seed * len(strategies) + strategies.index(strategy)
            print(f"[{done + 1}/{runs}] {strategy}, seed {seed}", file=sys.stderr)

    try:
        table, summary, pairs = compare(strategies=strategies, seeds=args.seeds, out=out, run_one=run_one,
                                        target=args.target, on_run=announce)
    finally:
        if started:
            disconnect()
    columns = ["strategy", "seed", "best_objective", *[c for c in table.columns if c.startswith("test_")],
               "steps_to_target", "wall_seconds"]
    print(table[columns].to_string(index=False))
    print(f"\n{config.objective} ({config.mode}), mean ± std over {args.seeds} seed(s); "
          f"target {table['target'].iloc[0]:.4g}:")
    print(format_summary(summary))
    if not pairs.empty:
        print(f"\n{config.objective}, paired by seed: challenger against baseline, > 0: the challenger did better\n"
              "(ci: 95% percentile bootstrap of the mean difference; p: one-sided Wilcoxon signed-rank, "
              "H1: the challenger is better):")
        print(format_paired(pairs))
    paired_file = "" if pairs.empty else f"\npaired: {out / 'comparison_paired.csv'}"
    print(f"\ntable: {out / 'comparison.csv'}{paired_file}\nfigure: {out / 'comparison.png'}")
    return 0


def _add_resume(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("resume", help=SUBCOMMANDS["resume"], description=SUBCOMMANDS["resume"])
    parser.add_argument("run_dir", type=Path, help="a run directory written by pbt run; or a job of pbt submit "
                                                   "(or its run directory on the head, with --address http://...)")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_resume)


def _resume(args: argparse.Namespace) -> int:
    from pbt import service

    if service.is_job_server(args.address) or (args.address is None and service.is_job_id(str(args.run_dir))):
        client = service.connect_client(args.address or service.default_address())
        return _submitted(service.resume(client, str(args.run_dir), workers=args.workers))

    from pbt import api
    from pbt.terminal import ProgressDisplay
    from search.store import load_run

    objective = load_run(args.run_dir).info["objective"]
    display = ProgressDisplay(sys.stderr, objective, quiet=args.quiet)
    try:
        api.resume(args.run_dir, address=args.address, workers=args.workers, on_progress=display)
    finally:
        display.close()
    return print_results(args.run_dir)


def _add_replay(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help=SUBCOMMANDS["replay"], description=SUBCOMMANDS["replay"])
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    parser.add_argument("--seed", type=_non_negative_int, help="the fresh member's seed (default: from the run's)")
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from pbt.replay import format_replay, replay

    print(format_replay(replay(args.run_dir, seed=args.seed)))
    return 0


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help=SUBCOMMANDS["report"], description=SUBCOMMANDS["report"])
    parser.add_argument("run_dir", type=Path, help="a run directory")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from dashboards import write_report

    print(write_report(args.run_dir))
    return 0


def _add_dashboard(subparsers: argparse._SubParsersAction) -> None:
    from pbt.service import DEFAULT_STORAGE

    parser = subparsers.add_parser("dashboard", help=SUBCOMMANDS["dashboard"], description=SUBCOMMANDS["dashboard"])
    parser.add_argument("dirs", nargs="*", type=Path, help="run directories, or folders of runs (default: runs)")
    parser.add_argument("--storage", nargs="?", const=DEFAULT_STORAGE,
                        help=f"also every run of the service's storage folder (default {DEFAULT_STORAGE})")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    parser.add_argument("--port", type=_non_negative_int, default=8266, help="default 8266; 0 picks a free port")
    parser.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from dashboards import serve
    from pbt.service import check_storage

    dirs = list(args.dirs)
    if args.storage:  # the service's runs appear as they start, also the first
        dirs.append(Path(check_storage(args.storage)).expanduser())
        dirs[-1].mkdir(parents=True, exist_ok=True)
    serve(dirs or [Path("runs")], host=args.host, port=args.port)
    return 0


def _add_service_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="the head's job server, http://HOST:PORT (default: $RAY_API_SERVER_ADDRESS "
                                          "or http://127.0.0.1:8265, a head here or an SSH tunnel's end)")


def _client(args: argparse.Namespace) -> JobSubmissionClient:
    from pbt import service

    return service.connect_client(args.address or service.default_address())


def _add_submit(subparsers: argparse._SubParsersAction) -> None:
    from pbt.service import DEFAULT_STORAGE, STOP_GRACE_S

    parser = subparsers.add_parser("submit", help=SUBCOMMANDS["submit"], description=SUBCOMMANDS["submit"])
    parser.add_argument("config", type=Path, help="the TOML config (DESIGN §6)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="pbt", help="default: pbt")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="the run's one seed (default 0)")
    parser.add_argument("--name", help="the run's folder in the storage folder "
                                       "(default <config>-<strategy>-seed<N>-<time>)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"the folder of runs on the head (default {DEFAULT_STORAGE})")
    parser.add_argument("--workers", type=_positive_int,
                        help="worker actors (default: the config's resources.workers, else as many as fit)")
    parser.add_argument("--stop-grace", type=_non_negative_int, default=STOP_GRACE_S,
                        help=f"seconds a stop waits for the final snapshot before Ray kills the driver "
                             f"(default {STOP_GRACE_S})")
    _add_service_address(parser)
    parser.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    from pbt import service

    config = load_config(args.config)
    name = service.check_name(args.name or default_out(args.config, args.strategy, args.seed).name)
    service.check_storage(args.storage)
    return _submitted(service.submit(
        _client(args), config, source=args.config, strategy=args.strategy, seed=args.seed, name=name,
        storage=args.storage, workers=args.workers, stop_grace=args.stop_grace))


def _submitted(submitted: Submitted) -> int:
    print(f"job: {submitted.job}\nrun directory: {submitted.run_dir} (on the head)")
    return 0


def _add_jobs(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help=SUBCOMMANDS["jobs"], description=SUBCOMMANDS["jobs"])
    _add_service_address(parser)
    parser.set_defaults(handler=_jobs)


def _jobs(args: argparse.Namespace) -> int:
    from pbt import service

    print(service.format_jobs(service.list_jobs(_client(args))))
    return 0


def _add_job_command(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=SUBCOMMANDS[name], description=SUBCOMMANDS[name])
    parser.add_argument("job", help="the job's id, as pbt submit printed it")
    _add_service_address(parser)
    return parser


def _add_status(subparsers: argparse._SubParsersAction) -> None:
    _add_job_command(subparsers, "status").set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from pbt import service

    client = _client(args)
    print(service.format_status(service.describe(client, service.job_details(client, args.job))))
    return 0


def _add_logs(subparsers: argparse._SubParsersAction) -> None:
    parser = _add_job_command(subparsers, "logs")
    parser.add_argument("--follow", action="store_true", help="then print what it logs until it ends")
    parser.set_defaults(handler=_logs)


def _logs(args: argparse.Namespace) -> int:
    from pbt import service

    service.print_logs(_client(args), args.job, sys.stdout, follow=args.follow)
    return 0


def _add_stop(subparsers: argparse._SubParsersAction) -> None:
    _add_job_command(subparsers, "stop").set_defaults(handler=_stop)


def _stop(args: argparse.Namespace) -> int:
    from pbt import service

    view = service.stop(_client(args), args.job)
    run_status = f" (its store: {view.run_status})" if view.run_status else ""
    print(f"job {view.job}: {view.status}; run {view.run_dir}{run_status}; `pbt resume {view.job}` continues it")
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_run, _add_compare, _add_resume, _add_replay, _add_report, _add_dashboard,
    _add_submit, _add_jobs, _add_status, _add_logs, _add_stop,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``pbt`` parser with every subcommand of ``COMMANDS``."""
    parser = Parser(
        prog="pbt",
        description="Population-based hyperparameter search (PBT, grid, random) on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def _resume_advice(failed: RunFailed) -> str:
    """What ``pbt resume`` can do for a run that failed."""
    command = f"`pbt resume {shlex.quote(str(failed.run_dir))}`"
    if failed.resumable:
        return f"{command} continues it from its last snapshot"
    return f"{command} cannot continue it: no snapshot of it is durable (a resume starts it over)"


@contextmanager
def _importing_from_here() -> Iterator[None]:
    """While a command runs, a config's ``package.module:Class`` imports from the directory ``pbt``
    runs in, as under ``python -m pbt`` (the ``pbt`` script alone would not look there; Ray's local
    workers do). At the end of the path, so a file here never shadows an installed module."""
    here = os.getcwd()
    added = "" not in sys.path and here not in sys.path
    if added:
        sys.path.append(here)
    try:
        yield
    finally:
        if added:
            sys.path.remove(here)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pbt`` command line; returns the exit status."""
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen handler; errors as the module
    docstring says."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, even before a usage error
    argv = [a for a in argv if a != "--debug"]
    try:
        with _importing_from_here():
            args = parser.parse_args(argv)
            return args.handler(args)
    except PBTError as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, RunFailed):
            print(f"pbt: error: {exc}; {_resume_advice(exc)}", file=sys.stderr)
            return 3
        print(f"pbt: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("pbt: interrupted", file=sys.stderr)
        return 130
