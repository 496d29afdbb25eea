"""Trainables for the engine's tests: the real toy maths with a slow, dying, raising or unsavable twist.

Importable by Ray workers and driver subprocesses (``tests/conftest.py`` puts this directory on
``PYTHONPATH``). Settings arrive as ``[trainable]`` keys, like any custom trainable's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models import ToyQuadratic


class SlowToy(ToyQuadratic):
    """The toy, ``delay`` seconds per step. ``die_once`` (a marker path): the first worker to train a
    member past step ``die_at`` writes the marker and dies with ``os._exit``. ``raise_h0``: ``train``
    raises when the member's ``h0`` equals it. ``unsavable_once`` (a marker path): the first state
    taken at step ``unsavable_at`` or later writes the marker and carries an object array, which a
    checkpoint (no pickle) cannot hold."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, delay: float = 0.0, die_once: str = "",
                 die_at: int = 10**9, raise_h0: float = -1.0, unsavable_once: str = "",
                 unsavable_at: int = 10**9, lr: float = 0.01) -> None:
        super().__init__(hparams, seed, lr=lr)
        self.delay, self.die_once, self.die_at, self.raise_h0 = delay, die_once, die_at, raise_h0
        self.unsavable_once, self.unsavable_at = unsavable_once, unsavable_at

    def train(self, steps: int) -> None:
        if self.hparams["h0"] == self.raise_h0:
            raise ValueError(f"diverged at step {self.step}")
        for _ in range(steps):
            if self.die_once and self.step >= self.die_at and not Path(self.die_once).exists():
                Path(self.die_once).write_text(str(os.getpid()))
                os._exit(1)
            time.sleep(self.delay)
            super().train(1)

    def get_state(self) -> dict[str, np.ndarray]:
        state = super().get_state()
        if self.unsavable_once and self.step >= self.unsavable_at and not Path(self.unsavable_once).exists():
            Path(self.unsavable_once).write_text(str(os.getpid()))
            state["note"] = np.array([{"not": "an array"}], dtype=object)
        return state


class SlowWorkerToy(ToyQuadratic):
    """The toy, ``delay`` seconds per step, ``slowdown`` times that on one worker: the first worker
    process to build one claims the marker file ``slow`` (its pid)."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, slow: str, delay: float, slowdown: float,
                 lr: float = 0.01) -> None:
        import ray

        super().__init__(hparams, seed, lr=lr)
        self.slow, self.delay, self.slowdown = Path(slow), delay, slowdown
        if ray.get_runtime_context().get_actor_id() is not None:  # not the config's probe on the driver
            try:
                with open(self.slow, "x") as claim:
                    claim.write(str(os.getpid()))
            except FileExistsError:
                pass

    def train(self, steps: int) -> None:
        slower = self.slow.read_text() == str(os.getpid())
        time.sleep(steps * self.delay * (self.slowdown if slower else 1.0))
        super().train(steps)


class BulkyToy(ToyQuadratic):
    """The toy, ``delay`` seconds per step, with a state of ``kb`` KB more (``ballast``, carried
    through ``get_state`` / ``set_state``): above Ray's 100 KB inline limit, states live in the
    shared-memory object store."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, kb: int = 256, delay: float = 0.0,
                 lr: float = 0.01) -> None:
        super().__init__(hparams, seed, lr=lr)
        self.ballast = np.zeros(kb * 1024 // 8)
        self.delay = delay

    def train(self, steps: int) -> None:
        time.sleep(steps * self.delay)
        super().train(steps)

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "ballast": self.ballast.copy()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        super().set_state(state)
        self.ballast = np.array(state["ballast"])


class GatedToy(ToyQuadratic):
    """The toy, held at its first ``train`` until the file ``release`` exists; it writes ``started``
    first, so a test can look at a search while its workers are up and busy."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, started: str, release: str,
                 lr: float = 0.01) -> None:
        super().__init__(hparams, seed, lr=lr)
        self.started, self.release = Path(started), Path(release)

    def train(self, steps: int) -> None:
        self.started.touch()
        deadline = time.monotonic() + 120
        while not self.release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.release} never appeared")
            time.sleep(0.02)
        super().train(steps)


class HeldOutToy(ToyQuadratic):
    """The toy with the optional ``test()``: ``test_steps``, the steps it has trained."""

    def test(self) -> dict[str, float]:
        return {"test_steps": float(self.step)}


class PlacedToy(ToyQuadratic):
    """The toy that also reports the GPUs Ray gave its worker: how many ids, and its share of them
    (none outside a worker, as in the config's probe on the driver)."""

    def evaluate(self) -> dict[str, float]:
        import ray

        context = ray.get_runtime_context()
        share = 0.0 if context.get_actor_id() is None else context.get_assigned_resources().get("GPU", 0.0)
        return {**super().evaluate(), "gpu_ids": float(len(ray.get_gpu_ids())), "gpu_share": share}


def toy_raw(*, population: int = 4, steps: int = 40, eval_every: int = 4, trainable: Mapping[str, Any] | None = None,
            initial: list | None = None, pbt: Mapping[str, Any] | None = None) -> dict:
    """A raw config (as read from TOML) for the toy or a ``trainables:SlowToy`` variant."""
    raw: dict[str, Any] = {
        "objective": "Q", "mode": "max",
        "trainable": dict(trainable or {"name": "toy", "lr": 0.01}),
        "space": {"h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]}},
        "budget": {"population": population, "steps": steps, "eval_every": eval_every},
    }
    if initial is not None:
        raw["initial"] = initial
    if pbt is not None:
        raw["pbt"] = dict(pbt)
    return raw


def slow_toy_config(path: Path, *, steps: int, pbt: Mapping[str, Any], delay: float = 0.02) -> Path:
    """Write a ``SlowToy`` search (``toy_raw``'s 4 members, ``delay`` seconds a step) as TOML to
    ``path``, for tests that run ``pbt`` as a command; returns ``path``."""
    raw = toy_raw(steps=steps, trainable={"name": "trainables:SlowToy", "delay": delay, "lr": 0.01}, pbt=pbt)
    scalars = [f"{key} = {_toml(value)}" for key, value in raw.items() if not isinstance(value, dict)]
    tables = [f"[{key}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in value.items())
              for key, value in raw.items() if isinstance(value, dict)]
    path.write_text("\n".join(scalars) + "\n\n" + "\n".join(tables))
    return path


def _toml(value: Any) -> str:
    """A TOML value: booleans, numbers, strings, arrays and inline tables of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def toy_q(hparams: Mapping[str, float], steps: int, lr: float = 0.01) -> float:
    """Q after ``steps`` toy steps with fixed ``hparams``, computed in-process."""
    toy = ToyQuadratic(hparams, 0, lr=lr)
    toy.train(steps)
    return toy.evaluate()["Q"]
