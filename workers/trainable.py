"""The worker interface (DESIGN §3) and the resolver from a config's ``trainable.name`` to a class."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.errors import ConfigError
from workers.cluster import PACKAGES
from workers.torch import INSTALL_HINT

State = dict[str, np.ndarray]

REQUIRED_METHODS = ("train", "evaluate", "get_state", "set_state", "set_hparams")
OWN_ROOT = Path(__file__).resolve().parents[1]  # holds the project's packages (PACKAGES)
TAKEN_NAMES = f"{', '.join(PACKAGES[:-1])} and {PACKAGES[-1]} are pbt-search's own top-level packages"


@runtime_checkable
class Trainable(Protocol):
    """One training run that a worker can advance, evaluate, snapshot and retune.

    ``get_state`` returns a flat dict of numpy arrays holding everything that decides future
    training (weights, optimizer slots, counters, random state), so it moves through Ray's object
    store as plain buffers and saves to ``.npz`` with ``allow_pickle=False``.

    Optionally ``test() -> dict[str, float]``: ``test_*`` metrics on the test split, asked once,
    after a member's last evaluation (and merged into it), so that the test split is not evaluated
    at every step; a trainable without it may return ``test_*`` keys from ``evaluate`` instead.

    Optionally the classmethod ``worker_settings(settings) -> dict``, called once per search on the
    driver: the settings every worker builds the trainable with. It loads there what a cluster's
    nodes may lack (a data set behind a package or a file only the driver has); its values travel
    to the workers pickled, so numpy arrays are best.
    """

    def __init__(self, hparams: Mapping[str, Any], seed: int, **settings: Any) -> None: ...

    def train(self, steps: int) -> None:
        """Advance by ``steps`` optimizer steps."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics; ``test_*`` keys are reported, never used to choose."""

    def get_state(self) -> State:
        """Weights, optimizer slots and counters as a flat ``{name: ndarray}``."""

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the whole state with one from ``get_state`` (of this or another instance)."""

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Change hyperparameters mid-training without touching weights or optimizer slots."""


def held_out_metrics(trainable: Any) -> dict[str, float]:
    """The trainable's optional ``test()`` metrics as floats; ``{}`` if it has no ``test``."""
    test = getattr(trainable, "test", None)
    return {} if test is None else {k: float(v) for k, v in test().items()}


def settings_for_workers(cls: type, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``cls.worker_settings(settings)`` if the trainable has it, else ``settings`` as they are."""
    prepare = getattr(cls, "worker_settings", None)
    return dict(settings) if prepare is None else dict(prepare(dict(settings)))


def _builtins() -> dict[str, type]:
    from models import ActorCritic, MLPClassifier, NoisyQuadratic, ToyQuadratic

    return {"mlp": MLPClassifier, "toy": ToyQuadratic, "nqm": NoisyQuadratic, "a2c": ActorCritic}


def _check_own_packages() -> None:
    """``ConfigError`` if a package of the user's, found first on ``sys.path``, shadows one of the
    project's: neither works then, and the user's would not be shipped to a cluster."""
    for name in PACKAGES:
        module = sys.modules.get(name) or importlib.import_module(name)
        if Path(getattr(module, "__file__", None) or ".").parent != OWN_ROOT / name:
            where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [name])))
            raise ConfigError(f"{where}: your package {name!r} shadows pbt-search's own; rename yours ({TAKEN_NAMES})")


def resolve_trainable(name: str) -> type:
    """Return the class named by ``trainable.name``: a built-in (``"mlp"``, ``"toy"``, ``"nqm"``, ``"a2c"``) or
    ``"package.module:Class"``.

    Raises ``ConfigError`` naming what does not resolve or which method of the shape is missing.
    """
    _check_own_packages()
    builtins = _builtins()
    if name in builtins:
        return builtins[name]
    if ":" not in name:
        raise ConfigError(
            f"trainable.name: unknown trainable {name!r}; use one of "
            f"{', '.join(sorted(builtins))} or 'package.module:Class'"
        )
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.partition(".")[0]
        if (exc.name or "").partition(".")[0] == "torch":
            hint = f"; {INSTALL_HINT}"
        elif top in PACKAGES:
            hint = f"; if {top!r} is your package, rename it ({TAKEN_NAMES})"
        else:
            hint = ""
        raise ConfigError(f"trainable.name: cannot import module {module_name!r} ({exc}){hint}") from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ConfigError(f"trainable.name: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            f"trainable.name: class {name!r} lacks method(s) {', '.join(missing)} of the Trainable shape"
        )
    return cls
