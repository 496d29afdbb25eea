"""The run config (DESIGN §6): a TOML file read with ``tomllib``, validated into frozen dataclasses.

Every problem is one ``ConfigError`` line, ``<source>: <field>: <problem>``. Validation is complete
before anything runs: the trainable is resolved and constructed once with a seeded sample, and its
``evaluate()`` must return the objective.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.checks import real, reject_unknown
from models.errors import ConfigError
from pbt.settings import PBTSettings, for_budget
from search.budget import Budget
from search.independent import initial_hparams
from search.space import SearchSpace
from search.strategy import Mode
from workers.pool import UNITS, check_workers
from workers.trainable import resolve_trainable

TOP_LEVEL = ("objective", "mode", "trainable", "space", "budget", "pbt", "grid", "initial", "resources")
REQUIRED = ("objective", "mode", "trainable", "space", "budget")
BUDGET_KEYS = ("population", "steps", "eval_every")
RESOURCE_KEYS = ("cpus_per_worker", "gpus_per_worker", "workers")
PROBE_SEED = 0


@dataclass(frozen=True)
class TrainableConfig:
    """``[trainable]``: ``name`` (built-in or ``package.module:Class``) and the rest as ``**settings``."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """``[resources]``: what each worker actor asks of Ray, and how many workers there are.

    ``cpus_per_worker`` ``None``: 1, or an equal share of the cluster's CPUs when more workers are
    asked for than it has; ``workers`` ``None``: as many as fit (``--workers`` overrides it).
    """

    cpus_per_worker: float | None = None
    gpus_per_worker: float = 0.0
    workers: int | None = None


@dataclass(frozen=True)
class RunConfig:
    """A validated config. ``raw`` is the TOML as read, kept for the store."""

    objective: str
    mode: Mode
    trainable: TrainableConfig
    space: SearchSpace
    budget: Budget
    pbt: PBTSettings
    grid: Mapping[str, tuple]
    initial: tuple[dict, ...]
    raw: dict
    resources: Resources = Resources()


def load_config(path: str | Path) -> RunConfig:
    """Read and validate the TOML config at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    return parse_config(_with_dataset_beside(raw, path.parent), str(path))


def _with_dataset_beside(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A relative ``.npz`` path in ``trainable.dataset`` made absolute, relative to the config's folder.

    Workers may run in another directory (or on another node), and a resumed run from anywhere.
    """
    trainable = raw.get("trainable")
    dataset = trainable.get("dataset") if isinstance(trainable, dict) else None
    if not isinstance(dataset, str) or not dataset.endswith(".npz") or Path(dataset).is_absolute():
        return raw
    return {**raw, "trainable": {**trainable, "dataset": str((folder / dataset).resolve())}}


def parse_config(raw: Mapping[str, Any], source: str) -> RunConfig:
    """Validate a config already parsed from TOML; ``source`` (a path) prefixes every error."""
    try:
        return _parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _parse(raw: Mapping[str, Any]) -> RunConfig:
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown top-level key; expected one of {', '.join(TOP_LEVEL)}")
    for key in REQUIRED:
        if key not in raw:
            raise ConfigError(f"{key}: missing; a config needs {', '.join(REQUIRED)}")
    objective = raw["objective"]
    if not isinstance(objective, str) or not objective:
        raise ConfigError(f"objective: must be the name of a metric evaluate() returns, got {objective!r}")
    if objective.startswith("test_"):
        raise ConfigError(f"objective: {objective!r} is a test metric; choose on a validation metric")
    mode = raw["mode"]
    if mode not in ("max", "min"):
        raise ConfigError(f"mode: must be 'max' or 'min', got {mode!r}")

    trainable = _trainable(_table(raw, "trainable"))
    space = SearchSpace.from_config(_table(raw, "space"))
    budget_table = _table(raw, "budget")
    reject_unknown(budget_table, BUDGET_KEYS, "budget")
    for key in BUDGET_KEYS:
        if key not in budget_table:
            raise ConfigError(f"budget.{key}: missing")
    budget = Budget(**budget_table)
    pbt = _pbt(_table(raw, "pbt", default={}), budget)
    grid = _grid(_table(raw, "grid", default={}), space)
    initial = _initial(raw.get("initial", []), space, budget)
    resources = _resources(_table(raw, "resources", default={}))

    _probe(trainable, objective, initial[0] if initial else space.sample(np.random.default_rng(PROBE_SEED)))
    return RunConfig(objective, mode, trainable, space, budget, pbt, grid, initial, copy.deepcopy(dict(raw)),
                     resources)


def _table(raw: Mapping[str, Any], key: str, default: dict | None = None) -> dict[str, Any]:
    value = raw.get(key, default)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a table [{key}], got {value!r}")
    return dict(value)


def _trainable(table: dict[str, Any]) -> TrainableConfig:
    name = table.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"trainable.name: must be a built-in ('mlp', 'toy') or 'package.module:Class', got {name!r}")
    return TrainableConfig(name, table)


def _pbt(table: dict[str, Any], budget: Budget) -> PBTSettings:
    reject_unknown(table, [f.name for f in dataclasses.fields(PBTSettings)], "pbt")
    settings = PBTSettings(**table)
    for_budget(settings, budget)  # the interval must fit the budget
    return settings


def _grid(table: dict[str, Any], space: SearchSpace) -> dict[str, tuple]:
    """The ``[grid]`` lists checked (their product against the population is checked when a grid is built)."""
    return {name: tuple(values) for name, values in space.grid_values(table).items()}


def _resources(table: dict[str, Any]) -> Resources:
    reject_unknown(table, RESOURCE_KEYS, "resources")
    cpus = table.get("cpus_per_worker")
    if cpus is not None:
        cpus = _resource("resources.cpus_per_worker", cpus, lo_open=True)
    gpus = _resource("resources.gpus_per_worker", table.get("gpus_per_worker", 0.0), lo_open=False)
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError(f"resources.gpus_per_worker: above 1 must be a whole number (Ray shares a GPU "
                          f"between workers, never splits several), got {gpus:g}")
    workers = table.get("workers")
    check_workers(workers, "resources.workers")
    return Resources(cpus, gpus, workers)


def _resource(field: str, value: Any, lo_open: bool) -> float:
    """A number of CPUs or GPUs: a finite number >= 0 (> 0 with ``lo_open``), in Ray's steps of 0.0001."""
    number = real(field, value, lo=0.0, lo_open=lo_open)
    if abs(number * UNITS - round(number * UNITS)) > 1e-6:
        raise ConfigError(f"{field}: Ray counts resources in steps of {1 / UNITS:g}, got {value!r}")
    return number


def _initial(entries: Any, space: SearchSpace, budget: Budget) -> tuple[dict, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"initial: must be an array of tables [[initial]], got {entries!r}")
    return tuple(initial_hparams(space, budget, entries))


def _check_settings(cls: type, trainable: TrainableConfig) -> None:
    """Name an unknown setting before constructing, when the constructor's signature says what it takes."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no inspectable signature: the probe's construction will tell
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    known = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL][2:]
    reject_unknown(trainable.settings, known, "trainable")


def _probe(trainable: TrainableConfig, objective: str, hparams: dict[str, Any]) -> None:
    """Construct the trainable once and check that ``evaluate()`` returns ``objective``."""
    cls = resolve_trainable(trainable.name)
    _check_settings(cls, trainable)
    try:
        metrics = cls(hparams, PROBE_SEED, **trainable.settings).evaluate()
    except ConfigError:
        raise
    except Exception as exc:  # user code: any failure here is a config problem to report in one line
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"trainable: {trainable.name} fails with these settings ({detail})") from None
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"trainable: {trainable.name}.evaluate() must return a dict, got {type(metrics).__name__}")
    if objective not in metrics:
        raise ConfigError(
            f"objective: {objective!r} is not a key of {trainable.name}.evaluate() "
            f"(it returns {', '.join(map(str, metrics))})"
        )
