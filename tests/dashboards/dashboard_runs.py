"""Runs written through the real ``RunStore`` (a real SQLite file): a miniature toy driver and scripted runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dashboards.server import DashboardServer, make_server
from models import ToyQuadratic
from search.store import RunStore, load_run, schedule

SPACE = {"h0": {"loguniform": [1e-3, 1.0]}, "h1": {"uniform": [0.0, 1.0]}}
INITIAL = [{"h0": 1.0, "h1": 0.0}, {"h0": 1e-3, "h1": 0.9}, {"h0": 0.5, "h1": 0.5}]


class ToyRunWriter:
    """Trains ``ToyQuadratic`` members in lock-step and writes what a driver writes: start events,
    results every ``eval_every`` steps, exploit/explore events (PBT: the worst member copies the
    best one when strictly worse, then its hparams are perturbed), members, summary, status.
    """

    def __init__(self, run_dir: Path, *, strategy: str = "pbt", seed: int = 0, population: int = 3,
                 steps: int = 40, eval_every: int = 4, interval: int = 8, config: dict | None = None) -> None:
        self.strategy, self.steps, self.eval_every, self.interval = strategy, steps, eval_every, interval
        self.rng = np.random.default_rng(seed)
        self.config = config or {
            "objective": "Q", "mode": "max", "trainable": {"name": "toy", "lr": 0.05},
            "space": SPACE, "budget": {"population": population, "steps": steps, "eval_every": eval_every},
        }
        self.store = RunStore.create(
            run_dir, config=self.config, strategy=strategy, seed=seed, population=population,
            steps_per_member=steps, eval_every=eval_every, objective="Q", mode="max",
        )
        self.started = time.time()
        self.hparams = [dict(INITIAL[m % len(INITIAL)]) for m in range(population)]
        self.members = [ToyQuadratic(h, seed, lr=0.05) for h in self.hparams]
        self.step = 0
        self.exploits = 0
        self.latest: list[float] = [float("nan")] * population
        for m, h in enumerate(self.hparams):
            self.store.add_event(self._now(), "start", m, 0, {"hparams": h})
            self.store.put_member(m, status="running", step=0, objective=None, hparams=h)

    def _now(self) -> float:
        return time.time() - self.started

    def advance(self) -> bool:
        """One ``eval_every`` segment for every member (and PBT's decisions); False once done."""
        if self.step >= self.steps:
            return False
        self.step += self.eval_every
        rows = []
        for m, trainable in enumerate(self.members):
            began = time.perf_counter()
            trainable.train(self.eval_every)
            metrics = trainable.evaluate()
            self.latest[m] = metrics["Q"]
            rows.append({"member": m, "step": self.step, "objective": metrics["Q"], "metrics": metrics,
                         "hparams": self.hparams[m], "worker": f"worker-{m % 2}", "node": "127.0.0.1",
                         "wall_time": self._now(), "train_seconds": time.perf_counter() - began})
        self.store.add_results(rows)
        if self.strategy == "pbt" and self.step % self.interval == 0 and self.step < self.steps:
            self._exploit()
        for m, h in enumerate(self.hparams):
            self.store.put_member(m, status="running", step=self.step, objective=self.latest[m], hparams=h)
        return self.step < self.steps

    def _exploit(self) -> None:
        worst, best = int(np.argmin(self.latest)), int(np.argmax(self.latest))
        if not self.latest[best] > self.latest[worst]:
            return
        old = self.hparams[worst]
        new = {k: float(np.clip(v * self.rng.choice([0.8, 1.2]), 1e-3, 1.0))
               for k, v in self.hparams[best].items()}
        self.members[worst].set_state(self.members[best].get_state())
        self.members[worst].set_hparams(new)
        self.hparams[worst] = new
        data = {"donor": best, "donor_step": self.step, "member_objective": self.latest[worst],
                "donor_objective": self.latest[best], "old_hparams": old, "new_hparams": new}
        self.store.add_event(self._now(), "exploit", worst, self.step, data)
        self.store.add_event(self._now(), "explore", worst, self.step,
                             {"ops": {k: "perturb" for k in new}, "old_hparams": self.hparams[best],
                              "new_hparams": new})
        self.exploits += 1

    def finish(self, summary: bool = True) -> None:
        """Members finished, ``summary.json`` (best on validation Q), status, close."""
        for m, h in enumerate(self.hparams):
            self.store.put_member(m, status="finished", step=self.step, objective=self.latest[m], hparams=h)
        if summary:
            best = int(np.argmax(self.latest))
            lineage = schedule(load_run(self.store.run_dir), best)
            self.store.write_summary({
                "strategy": self.strategy, "seed": 0, "population": len(self.members),
                "steps_per_member": self.steps, "budget_steps": self.step * len(self.members),
                "wall_seconds": self._now(), "train_seconds": 0.0, "exploits": self.exploits,
                "objective": "Q", "mode": "max",
                "best": {"member": best, "objective": self.latest[best], "test": {"test_Q": self.latest[best]},
                         "hparams": self.hparams[best], "schedule": [[s, h] for s, h in lineage]},
            })
        self.store.finish("finished")
        self.store.close()


def write_toy_run(run_dir: Path, **kwargs) -> ToyRunWriter:
    """A finished toy run in ``run_dir``."""
    writer = ToyRunWriter(run_dir, **kwargs)
    while writer.advance():
        pass
    writer.finish()
    return writer


def write_scripted_run(
    run_dir: Path, *, population: int, steps: int, eval_every: int,
    exploits: list[tuple[int, int, int, int]] = (), hparams: dict | Callable[[int, int], dict] | None = None,
    space: dict | None = None, objective=lambda member, step: member + step / 100,
    errors: dict[int, str] | None = None, config_extra: dict | None = None, mode: str = "max",
) -> Path:
    """A run whose story is given: ``exploits`` as ``(step, member, donor, donor_step)`` in the order
    they happen, results of ``objective(member, step)``, ``hparams`` (or ``hparams(member, step)``),
    optional member ``errors``; through ``RunStore``.
    """
    fixed = hparams or {"lr": 0.1}
    hparams_at = fixed if callable(fixed) else (lambda member, step: fixed)
    space = space or {"lr": {"loguniform": [1e-4, 1.0]}}
    config = {"objective": "val_accuracy", "mode": mode, "trainable": {"name": "mlp"}, "space": space,
              **(config_extra or {})}
    store = RunStore.create(run_dir, config=config, strategy="pbt", seed=0, population=population,
                            steps_per_member=steps, eval_every=eval_every, objective="val_accuracy", mode=mode)
    with store.batch():
        for m in range(population):
            store.add_event(0.0, "start", m, 0, {"hparams": hparams_at(m, 0)})
    pending = list(exploits)
    for step in range(eval_every, steps + 1, eval_every):
        store.add_results([
            {"member": m, "step": step, "objective": objective(m, step),
             "metrics": {"val_accuracy": objective(m, step), "test_accuracy": objective(m, step) / 2},
             "hparams": hparams_at(m, step), "worker": "worker-0", "node": "127.0.0.1",
             "wall_time": step + m / 10, "train_seconds": 0.01}
            for m in range(population)
        ])
        with store.batch():
            while pending and pending[0][0] == step:
                at, member, donor, donor_step = pending.pop(0)
                store.add_event(float(step), "exploit", member, at, {
                    "donor": donor, "donor_step": donor_step, "member_objective": objective(member, at),
                    "donor_objective": objective(donor, donor_step), "old_hparams": hparams_at(member, at),
                    "new_hparams": hparams_at(member, at + eval_every),
                })
    with store.batch():
        for m in range(population):
            error = (errors or {}).get(m)
            store.put_member(m, status="failed" if error else "finished", step=steps,
                             objective=objective(m, steps), hparams=hparams_at(m, steps), error=error)
    store.finish("finished")
    store.close()
    return run_dir


class ManualClock:
    """A monotonic clock that moves only when told: ``advance(seconds)``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def serving(run_dirs: list[Path], **settings) -> Iterator[DashboardServer]:
    """The dashboard over ``run_dirs`` on a free loopback port, served from a thread; shut down after.
    ``settings`` go to ``make_server`` (``refresh``, ``clock``)."""
    server = make_server(run_dirs, host="127.0.0.1", port=0, **settings)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
