"""PBT's overhead on the runner (issue 4 item 8); prints ONE JSON line.

* The digits search (8 members x 2,000 steps, evaluated and ready every 100) with PBT in
  synchronous and asynchronous mode on 2 workers: utilisation = train seconds / (wall seconds x
  workers), Ray's start-up excluded (the runner's clock starts after the workers are warm); steps
  executed / budget; exploit count. Targets: utilisation >= 0.85 sync, >= 0.90 async; ratio 1.
* Hand-over: from a member being ready (its last evaluation before the exploit, timed inside the
  trainable) to its next ``train`` starting on the donor's weights (timed inside the trainable,
  after ``set_state``), through the real runner, for a 1 MB and a 100 MB state. Target <= 5 ms at 1 MB.
* With ``ray[tune]`` installed (``pip install -e ".[bench]"``): Ray Tune's PBT on the same search
  (same MLP, same mutations, quantile 0.25, perturbation every 100 steps) in the same run, and ours/Tune.

Run: ``python bench/pbt_overhead.py`` (about two minutes on 2 cores, most of it Ray Tune).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = 2


class Blob:
    """A trainable with a state of ``mbytes`` MB that times its own ``train`` and ``evaluate``.

    A step takes ``step_seconds`` (sleeping, so two workers fit on two cores beside the driver);
    the score grows by ``rate`` per step, so a member with a lower rate falls behind and exploits.
    """

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, mbytes: float = 1.0,
                 step_seconds: float = 0.02) -> None:
        self.weights = np.zeros(int(mbytes * 2**20) // 8)
        self.score = 0.0
        self.rate = float(hparams["rate"])
        self.step_seconds = step_seconds
        self.train_started = float("nan")
        self.set_state_seconds = 0.0

    def train(self, steps: int) -> None:
        self.train_started = time.time()
        time.sleep(steps * self.step_seconds)
        self.score += steps * self.rate
        self.weights[0] = self.score

    def evaluate(self) -> dict[str, float]:
        return {"score": self.score, "train_started": self.train_started, "evaluated": time.time(),
                "set_state_seconds": self.set_state_seconds}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "score": np.array(self.score)}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        self.weights = np.array(state["weights"])  # a writable copy, as a real trainable needs
        self.score = float(state["score"])
        self.set_state_seconds = time.perf_counter() - t0

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.rate = float(hparams["rate"])


def digits_config(population: int = 8, steps: int = 2000, every: int = 100, synchronous: bool = False) -> Any:
    """examples/digits.toml at ``population`` x ``steps``, evaluating and deciding every ``every``
    steps (``eval_every`` and PBT's ``interval``); every other PBT setting its default. The digits
    search of every bench here."""
    import tomllib

    from pbt.config import parse_config

    path = ROOT / "examples" / "digits.toml"
    raw = tomllib.loads(path.read_text())
    raw["budget"].update(population=population, steps=steps, eval_every=every)
    raw["pbt"] = {"interval": every, "synchronous": synchronous}
    return parse_config(raw, source=str(path))


def ours(strategy: str, synchronous: bool, out: Path, repeats: int = 3) -> dict[str, Any]:
    """The search ``repeats`` times (seed 0; a run lasts ~1-2 s, so one is noisy on a shared
    machine): the run of median utilisation, and every run's utilisation."""
    from pbt.api import run

    config = digits_config(synchronous=synchronous)
    runs = []
    for i in range(repeats):
        summary = run(config, strategy=strategy, seed=0, out=out / str(i), workers=WORKERS)
        runs.append({
            "wall_s": round(summary["wall_seconds"], 3),
            "train_s": round(summary["train_seconds"], 3),
            "utilisation": round(summary["train_seconds"] / (summary["wall_seconds"] * WORKERS), 3),
            "budget_ratio": summary["budget_steps"] / config.budget.total_steps,
            "exploits": summary["exploits"],
            "best_val_accuracy": round(summary["best"]["objective"], 4),
        })
    runs.sort(key=lambda r: r["utilisation"])
    return {**runs[len(runs) // 2], "utilisation_runs": [r["utilisation"] for r in runs]}


def timed_handover_search(trainable: str, cls: type, mbytes: float, steps: int, out: Path,
                          **pbt: Any) -> tuple[Any, dict[tuple[int, int], float]]:
    """Asynchronous PBT of two members of ``cls`` (named ``trainable`` in the config) on the real
    runner and ``WORKERS`` workers; the receiver always explores its rate down (factor 0.5), so it
    falls behind again and exploits at every boundary. Returns the run's data and, per (member,
    step), when the runner told the strategy the member was ready. ``pbt`` adds PBT settings."""
    from pbt.config import parse_config
    from pbt.strategy import PBTStrategy
    from search.runner import Runner, strategy_rng
    from search.store import RunStore, load_run
    from workers import TrainableSpec, WorkerPool

    class TimedPBT(PBTStrategy):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.told_at: dict[tuple[int, int], float] = {}

        def tell(self, result: Any) -> None:
            self.told_at[(result.member, result.end_step)] = time.time()
            super().tell(result)

    raw = {
        "objective": "score", "mode": "max",
        "trainable": {"name": trainable, "mbytes": mbytes},
        "space": {"rate": {"uniform": [0.01, 1.0]}},
        "budget": {"population": 2, "steps": steps, "eval_every": 1},
        "pbt": {"interval": 2, "fraction": 0.5, "resample_probability": 0.0, "perturb_factors": [0.5], **pbt},
        "initial": [{"rate": 1.0}, {"rate": 0.5}],
    }
    config = parse_config(raw, source="handover")
    strategy = TimedPBT(config.space, config.budget, config.pbt, config.initial, strategy_rng(0))
    store = RunStore.create(out, config=raw, strategy="pbt", seed=0, population=2, steps_per_member=steps,
                            eval_every=1, objective="score", mode="max")
    pool = WorkerPool(TrainableSpec(cls, {"mbytes": mbytes}), WORKERS)
    try:
        Runner(strategy, store, pool, budget=config.budget, objective="score", mode="max", seed=0).run()
    finally:
        pool.shutdown()
        store.close()
    return load_run(out), strategy.told_at


def handover(mbytes: float, steps: int, out: Path) -> dict[str, Any]:
    """Hand-over times of ``timed_handover_search`` on Blob. ``from_ready``: the runner telling the
    strategy the member is ready -> ``train`` starting on the donor's weights on a worker;
    ``in_set_state`` is the part of it spent in the trainable's own ``set_state`` (copying the
    weights). ``from_last_eval``: the same from the end of the member's last evaluation on its
    worker (adds returning its own state).
    """
    from search.store import exploits

    data, told_at = timed_handover_search("pbt_overhead:Blob", Blob, mbytes, steps, out)
    rows = data.results.set_index(["member", "step"])
    started = [(e, rows.loc[(e.member, e.step + 1), "train_started"]) for e in exploits(data).itertuples()]
    from_ready = [1000 * (t - told_at[(e.member, e.step)]) for e, t in started]
    from_eval = [1000 * (t - rows.loc[(e.member, e.step), "evaluated"]) for e, t in started]
    copying = [1000 * rows.loc[(e.member, e.step + 1), "set_state_seconds"] for e, _ in started]
    return {"state_mb": mbytes, "exploits": len(started), "from_ready_ms": _stats(from_ready),
            "in_set_state_ms": _stats(copying), "from_last_eval_ms": _stats(from_eval)}


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median": _r(np.median(ms)), "p90": _r(np.percentile(ms, 90))}


def _r(value: float) -> float:
    return round(float(value), 2)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Tune prints its banners on file descriptor 1; the one JSON line must be alone on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def tune_available() -> bool:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        return False
    return True


def tune_mutations(space: Mapping[str, Any]) -> dict[str, Any]:
    """Our search space as Ray Tune's distributions (log-uniform or uniform), for its PBT's mutations."""
    from ray import tune as rt

    return {name: rt.loguniform(dim.low, dim.high) if dim.kind == "loguniform" else rt.uniform(dim.low, dim.high)
            for name, dim in space.items()}


def tune_counter() -> Any:
    """A Ray Tune callback counting results, training seconds and hyperparameters outside the space
    that the trainable reports (``train_seconds``, ``outside``)."""
    from ray import tune as rt

    class Count(rt.Callback):
        def __init__(self) -> None:
            self.results, self.train_seconds, self.outside = 0, 0.0, 0

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.results += 1
            self.train_seconds += result["train_seconds"]
            self.outside += result["outside"]

    return Count()


def tune(synchronous: bool, storage: Path, config: Any = None) -> dict[str, Any]:
    """Ray Tune's PBT on the same search (or ``config``'s): an iteration of ``interval`` steps
    (20 of 100 steps per trial here), perturbing at every iteration, 2 trials at a time."""
    from ray import tune as rt
    from ray.tune.schedulers import PopulationBasedTraining

    config = config or digits_config(synchronous=synchronous)
    iteration = config.pbt.interval
    space, settings = config.space, dict(config.trainable.settings)

    class DigitsMLP(rt.Trainable):
        """Tune's PBT perturbs past the declared ranges (momentum 0.99 x 1.2); values are clipped
        back, as a Tune user must, and counted as ``outside``."""

        def setup(self, cfg: dict) -> None:
            from models import MLPClassifier

            self.outside = 0
            self.model = MLPClassifier(self._hparams(cfg), int(cfg["seed"]), **settings)

        def _hparams(self, cfg: dict) -> dict:
            self.outside += sum(not space[k].contains(cfg[k]) for k in space)
            return {k: space[k].clip(cfg[k]) for k in space}

        def step(self) -> dict:
            t0 = time.perf_counter()
            self.model.train(iteration)
            seconds = time.perf_counter() - t0
            outside, self.outside = self.outside, 0
            return {**self.model.evaluate(), "train_seconds": seconds, "outside": outside}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            np.savez(os.path.join(checkpoint_dir, "state.npz"), **self.model.get_state())

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            with np.load(os.path.join(checkpoint_dir, "state.npz"), allow_pickle=False) as f:
                self.model.set_state({k: f[k] for k in f.files})

        def reset_config(self, new_config: dict) -> bool:
            self.model.set_hparams(self._hparams(new_config))
            return True

    mutations = tune_mutations(space)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=1, hyperparam_mutations=mutations,
        quantile_fraction=config.pbt.fraction, resample_probability=config.pbt.resample_probability,
        perturbation_factors=tuple(sorted(config.pbt.perturb_factors, reverse=True)), synch=synchronous,
    )
    count = tune_counter()
    tuner = rt.Tuner(
        rt.with_resources(DigitsMLP, {"cpu": 1}),
        param_space={**mutations, "seed": rt.randint(0, 2**31)},
        tune_config=rt.TuneConfig(scheduler=pbt, num_samples=config.budget.population, metric="val_accuracy",
                                  mode="max", reuse_actors=True),
        run_config=rt.RunConfig(stop={"training_iteration": config.budget.steps // iteration}, storage_path=str(storage),
                                name=f"tune-{'sync' if synchronous else 'async'}", verbose=0,
                                callbacks=[count]),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    best = grid.get_best_result(metric="val_accuracy", mode="max", scope="last")
    return {
        "wall_s": round(wall, 3), "train_s": round(count.train_seconds, 3),
        "utilisation": round(count.train_seconds / (wall * WORKERS), 3),
        "budget_ratio": round(count.results * iteration / config.budget.total_steps, 3),
        "hparams_outside_space": count.outside,
        "best_val_accuracy": round(best.metrics["val_accuracy"], 4),
    }


def main() -> None:
    import tempfile

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(HERE))
    from workers.cluster import connect, disconnect

    connect(num_cpus=WORKERS)  # an embedded Ray of its own on loopback, never a cluster already running here
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            line: dict[str, Any] = {
                "search": "digits mlp, 8 members x 2000 steps, interval 100, 2 workers",
                "random_baseline": ours("random", False, tmp_path / "random"),
                "sync": ours("pbt", True, tmp_path / "sync"),
                "async": ours("pbt", False, tmp_path / "async"),
                "handover": [handover(1.0, 100, tmp_path / "h1"), handover(100.0, 20, tmp_path / "h100")],
            }
            if tune_available():
                with stdout_to_stderr():
                    line["tune_sync"] = tune(True, tmp_path / "tune")
                    line["tune_async"] = tune(False, tmp_path / "tune")
                for mode in ("sync", "async"):
                    ours_, theirs = line[mode], line[f"tune_{mode}"]
                    line[f"ratio_{mode}"] = {
                        "wall_tune_over_ours": round(theirs["wall_s"] / ours_["wall_s"], 2),
                        "utilisation_ours_over_tune": round(ours_["utilisation"] / theirs["utilisation"], 2),
                    }
            else:
                line["tune"] = "ray[tune] not installed"
    finally:
        disconnect()
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
