"""The product's exception tree.

It lives in the lowest package so that every layer (models, workers, search, pbt, dashboards)
can raise it without an upward import. Any ``PBTError`` is a failure the user can read, never a
bug report. The CLI maps ``RunFailed`` (a run that started and could not go on) to one stderr line
and exit status 3, and every other ``PBTError`` (a config, an argument, a run directory) to one
line and exit status 2. ``RunStopped`` is no failure: a service job's driver reports it on SIGTERM.

    PBTError
    ├── ConfigError         a config value, an argument or an input file is wrong
    ├── StoreError          a run directory or its store cannot be opened, read or written
    ├── RunError            why a run could not go on:
    │   ├── WorkerStartError    its workers do not come up
    │   ├── CheckpointError     its states cannot be made durable
    │   └── StrategyError       its strategy breaks the runner's contract
    ├── RunFailed           a run failed: its directory, the cause, whether a resume continues it
    └── RunStopped          a run stopped on request, its last snapshot durable: a resume continues it
"""

from __future__ import annotations

import os


class PBTError(Exception):
    """Root of every error this product raises on purpose."""


class ConfigError(PBTError, ValueError):
    """A config value, an argument or an input file is wrong.

    The message names the field (or file) and the problem, e.g.
    ``budget.population: must be >= 1, got 0``.
    """


class StoreError(PBTError):
    """A run directory or its SQLite store is missing, corrupt or of another version, or a write
    to it failed (and was rolled back: the store holds what was committed before it)."""


class RunError(PBTError):
    """A search that started could not go on."""


class WorkerStartError(RunError):
    """Workers did not come up: the cluster cannot place them, or they die before they are up."""


class CheckpointError(RunError):
    """The run's states could not be made durable: the final snapshot's files could not be
    written, or the checkpoint writer stopped."""


class StrategyError(RunError):
    """The strategy broke the runner's contract: a decision the runner cannot carry out, or
    nothing asked while it is not finished and no member is training."""


class RunFailed(PBTError):
    """A run failed after its directory was written; raised from the ``PBTError`` that stopped it
    (a ``RunError``, a ``StoreError``). ``resumable``: the store holds a durable snapshot and the
    run did not finish, so a resume continues it from there (else nothing durable is left to
    continue from, and a resume starts it over)."""

    def __init__(self, run_dir: str | os.PathLike[str], cause: str, resumable: bool) -> None:
        self.run_dir, self.cause, self.resumable = run_dir, cause, resumable
        super().__init__(f"{run_dir}: run failed: {cause}")


class RunStopped(PBTError):
    """A run stopped because it was asked to (``pbt stop``): its last snapshot is durable, the store
    says ``stopped``, and a resume continues it from there."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = run_dir
        super().__init__(f"{run_dir}: run stopped; its last snapshot is durable")
