"""How much of the workers' time the runner spends training: random search, 8 members x 2,000 steps of
the digits MLP (examples/digits.toml), 2 workers. Prints ONE JSON line.

utilisation = train seconds / (wall seconds x workers), wall measured by the runner from the moment
its workers are up (Ray's and the workers' start-up excluded). dispatch overhead per train call =
(wall x workers - train seconds) / train calls, a train call being one member's steps in one go (a
work item; ``ray_calls`` counts the Ray calls, each carrying one or more items). Random search asks
each member's remaining steps as one segment, which the runner cuts into calls of up to ~0.2 s.
The search runs ``REPEATS`` times; the line gives the median run and every run's utilisation.
With ``ray[tune]`` installed, the same 8 configurations
(drawn by our RandomStrategy from the same seed) also run through Ray Tune in the same Ray, one trial
per CPU, reporting every 100 steps, and the line gains Tune's wall time and the ratio.

    python bench/runner_overhead.py [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pbt.config import load_config
from pbt.strategies import make_strategy
from search.runner import Runner, member_seed, strategy_rng
from search.store import RunStore
from workers.actor import TrainableSpec
from workers.cluster import connect, disconnect
from workers.pool import WorkerPool
from workers.trainable import resolve_trainable

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "digits.toml"
WORKERS = 2
REPEATS = 3


def ours(config, seed: int, out: Path) -> tuple[dict, list[dict]]:
    """The search on our runner; returns its figures and the members' hyperparameters."""
    strategy = make_strategy("random", config, strategy_rng(seed))
    hparams = [dict(h) for h in strategy.hparams]
    store = RunStore.create(out, config=config.raw, strategy="random", seed=seed,
                            population=config.budget.population, steps_per_member=config.budget.steps,
                            eval_every=config.budget.eval_every, objective=config.objective, mode=config.mode)
    spec = TrainableSpec(resolve_trainable(config.trainable.name), dict(config.trainable.settings))
    pool = WorkerPool(spec, WORKERS)
    try:
        runner = Runner(strategy, store, pool, budget=config.budget, objective=config.objective,
                        mode=config.mode, seed=seed)
        summary = runner.run()
    finally:
        pool.shutdown()
        store.close()
    wall, train = summary["wall_seconds"], summary["train_seconds"]
    return {
        "wall_seconds": round(wall, 3), "train_seconds": round(train, 3),
        "utilisation": round(train / (wall * WORKERS), 3), "train_calls": runner.train_calls,
        "ray_calls": runner.ray_calls,
        "dispatch_overhead_ms": round((wall * WORKERS - train) / runner.train_calls * 1000, 3),
        "budget_steps": summary["budget_steps"], "best_val": summary["best"]["objective"],
    }, hparams


def tune(config, seed: int, hparams: list[dict], storage: Path) -> dict | None:
    """The same members through Ray Tune (None when ``ray[tune]`` is not installed)."""
    try:
        from ray import tune as ray_tune
    except ImportError:
        return None
    cls = resolve_trainable(config.trainable.name)
    settings = dict(config.trainable.settings)
    steps, every = config.budget.steps, config.budget.eval_every

    def trainable(cfg: dict) -> None:
        member = cfg["member"]
        model = cls(hparams[member], member_seed(seed, member), **settings)
        train_seconds = 0.0
        for _ in range(steps // every):
            t0 = time.perf_counter()
            model.train(every)
            train_seconds += time.perf_counter() - t0
            ray_tune.report({**model.evaluate(), "train_seconds": train_seconds})

    tuner = ray_tune.Tuner(
        ray_tune.with_resources(trainable, {"cpu": 1}),
        param_space={"member": ray_tune.grid_search(list(range(len(hparams))))},
        tune_config=ray_tune.TuneConfig(metric=config.objective, mode=config.mode,
                                        max_concurrent_trials=WORKERS),
        run_config=ray_tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's tables would break the one JSON line
        results = tuner.fit()
    wall = time.perf_counter() - t0
    train = sum(r.metrics["train_seconds"] for r in results)
    return {"tune_wall_seconds": round(wall, 3), "tune_train_seconds": round(train, 3),
            "tune_utilisation": round(train / (wall * WORKERS), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = load_config(CONFIG)
    connect(num_cpus=WORKERS)  # an embedded Ray of its own, on loopback
    try:
        with tempfile.TemporaryDirectory() as tmp:
            line = {"bench": "runner_overhead", "strategy": "random", "members": config.budget.population,
                    "steps": config.budget.steps, "workers": WORKERS}
            runs = [ours(config, args.seed, Path(tmp) / f"run{i}") for i in range(REPEATS)]
            figures, hparams = sorted(runs, key=lambda run: run[0]["utilisation"])[REPEATS // 2]  # the median
            line.update(figures)
            line["utilisation_runs"] = [run[0]["utilisation"] for run in runs]
            theirs = None if os.environ.get("NO_TUNE") else tune(config, args.seed, hparams, Path(tmp) / "tune")
            if theirs is not None:
                line.update(theirs)
                line["wall_ratio_tune_over_ours"] = round(theirs["tune_wall_seconds"] / figures["wall_seconds"], 2)
    finally:
        disconnect()
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
