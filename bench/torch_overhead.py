"""What a PyTorch model costs on the runner (issue 12); prints ONE JSON line.

* Utilisation: asynchronous PBT (PBT's other defaults, interval 100) on the torch example
  (examples/torch_digits.toml: a small CNN on the digits, 8 members x 2,000 steps), 2 workers:
  train seconds / (wall seconds x workers), the runner's clock starting once the workers are warm; the
  median of ``--repeats`` runs. With ``ray[tune]`` (``pip install -e ".[bench]"``), the same search as
  a Ray Tune PBT *function* trainable (the same DigitsCNN, a checkpoint with every report of 100
  steps, quantile 0.25, the same mutations), in the same run, and the ratios: once with
  ``reuse_actors=True`` (Tune's advice for PBT), once with Tune's default. Targets: utilisation
  >= 0.85, wall time at least 5x shorter than Tune's.
* Hand-over: from a member being ready (the runner telling the strategy) to its ``train`` starting
  on the donor's weights, through the real runner, for a TorchTrainable of ~1 MB and ~100 MB whose
  donor and receiver are on different workers; against a plain ``ray.put`` + ``ray.get`` of the same
  state on the driver. Targets: <= 5 ms at 1 MB, <= 2x put+get at 100 MB.
* Quality: PBT's best validation (and its test) accuracy on the torch example against the numpy MLP
  example (examples/digits.toml) at the same budget, seeds 0 .. ``--seeds``-1.

Run from the repository's root: ``python bench/torch_overhead.py`` (~20 minutes on 2 shared cores,
half of it Ray Tune with its default settings).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = 2
sys.path[:0] = [str(HERE), str(ROOT)]  # this module (TorchBlob) and examples.* for the driver, as for the workers

from pbt_overhead import (  # noqa: E402
    stdout_to_stderr, timed_handover_search, tune_available, tune_counter, tune_mutations,
)

from workers.torch import TorchTrainable  # noqa: E402

TORCH_CONFIG = ROOT / "examples" / "torch_digits.toml"
MLP_CONFIG = ROOT / "examples" / "digits.toml"


class TorchBlob(TorchTrainable):
    """A torch model of ``mbytes`` MB (one bias-free square linear layer in float32, plain SGD: no
    slots) that times its own ``train`` and ``set_state``. A step sleeps ``step_seconds`` and adds the
    hyperparameter ``rate`` to a ``score`` buffer (so it travels with the weights): a member with a
    lower rate falls behind and exploits."""

    def build(self, hparams, seed, *, mbytes=1.0, step_seconds=0.02):
        width = int(math.sqrt(mbytes * 2**20 / 4))
        model = nn.Linear(width, width, bias=False)
        model.register_buffer("score", torch.zeros(()))
        self.step_seconds = step_seconds
        self.train_started, self.set_state_seconds = math.nan, 0.0
        return model, torch.optim.SGD(model.parameters(), lr=0.0)

    def train(self, steps: int) -> None:
        self.train_started = time.time()
        super().train(steps)

    def train_step(self):
        time.sleep(self.step_seconds)
        self.model.score += self.hparams["rate"]

    def evaluate(self):
        return {"score": self.model.score.item(), "train_started": self.train_started, "evaluated": time.time(),
                "set_state_seconds": self.set_state_seconds}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        super().set_state(state)
        self.set_state_seconds = time.perf_counter() - t0


def ours(out: Path, repeats: int) -> dict[str, Any]:
    """The torch example's PBT search ``repeats`` times (seed 0): the run of median utilisation."""
    from pbt.api import run
    from pbt.config import load_config, parse_config

    raw = load_config(TORCH_CONFIG).raw
    config = parse_config({**raw, "pbt": {**raw["pbt"], "synchronous": False}}, TORCH_CONFIG.name)
    runs = []
    for i in range(repeats):
        summary = run(config, strategy="pbt", seed=0, out=out / str(i), workers=WORKERS)
        runs.append({
            "wall_s": round(summary["wall_seconds"], 3), "train_s": round(summary["train_seconds"], 3),
            "utilisation": round(summary["train_seconds"] / (summary["wall_seconds"] * WORKERS), 3),
            "budget_ratio": summary["budget_steps"] / config.budget.total_steps, "exploits": summary["exploits"],
            "best_val_accuracy": round(summary["best"]["objective"], 4),
        })
    runs.sort(key=lambda r: r["utilisation"])
    return {**runs[len(runs) // 2], "utilisation_runs": [r["utilisation"] for r in runs]}


def tune(storage: Path, reuse_actors: bool | None) -> dict[str, Any]:
    """Ray Tune's asynchronous PBT on the same search, DigitsCNN in a function trainable that reports
    (with a checkpoint) every 100 steps, 2 trials at a time; ``reuse_actors``: ``True`` as Tune advises
    for PBT, ``None`` Tune's default (a trial that exploits restarts in a new actor)."""
    from ray import tune as rt
    from ray.tune.schedulers import PopulationBasedTraining

    from examples.torch_cnn import DigitsCNN
    from pbt.config import load_config

    config = load_config(TORCH_CONFIG)
    space, settings, every = config.space, dict(config.trainable.settings), config.budget.eval_every

    def trainable(cfg: dict) -> None:
        hparams = {k: space[k].clip(cfg[k]) for k in space}  # Tune perturbs past the ranges: clipped back
        outside = sum(not space[k].contains(cfg[k]) for k in space)
        model = DigitsCNN(hparams, int(cfg["seed"]), **settings)
        checkpoint = rt.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder, np.load(Path(folder) / "state.npz", allow_pickle=False) as f:
                model.set_state({k: f[k] for k in f.files})
        while True:
            t0 = time.perf_counter()
            model.train(every)
            seconds = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as folder:
                np.savez(Path(folder) / "state.npz", **model.get_state())
                rt.report({**model.evaluate(), "train_seconds": seconds, "outside": outside},
                          checkpoint=rt.Checkpoint.from_directory(folder))
            outside = 0

    mutations = tune_mutations(space)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=config.pbt.interval // every,
        hyperparam_mutations=mutations, quantile_fraction=config.pbt.fraction,
        resample_probability=config.pbt.resample_probability,
        perturbation_factors=tuple(sorted(config.pbt.perturb_factors, reverse=True)), synch=False,
    )
    count = tune_counter()
    tuner = rt.Tuner(
        rt.with_resources(trainable, {"cpu": 1}),
        param_space={**mutations, "seed": rt.randint(0, 2**31)},
        tune_config=rt.TuneConfig(scheduler=pbt, num_samples=config.budget.population, metric=config.objective,
                                  mode=config.mode, max_concurrent_trials=WORKERS, reuse_actors=reuse_actors),
        run_config=rt.RunConfig(stop={"training_iteration": config.budget.steps // every}, storage_path=str(storage),
                                name=f"tune-torch-{reuse_actors}", verbose=0, callbacks=[count]),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    best = grid.get_best_result(metric=config.objective, mode=config.mode, scope="last")
    return {
        "wall_s": round(wall, 3), "train_s": round(count.train_seconds, 3),
        "utilisation": round(count.train_seconds / (wall * WORKERS), 3),
        "budget_ratio": round(count.results * every / config.budget.total_steps, 3),
        "hparams_outside_space": count.outside, "best_val_accuracy": round(best.metrics[config.objective], 4),
    }


def handover(mbytes: float, steps: int, out: Path) -> dict[str, Any]:
    """Asynchronous PBT of two TorchBlob members on the real runner and 2 workers, timed per exploit
    whose donor trained on the other worker. The receiver always explores its rate down (factor
    0.5), so it falls behind again and exploits at every ready point (every 2 steps).
    ``from_ready``: the runner telling the strategy the member is ready -> ``train`` starting on the
    donor's weights; ``in_set_state``: the part spent in the adapter's ``set_state``."""
    import ray

    from search.store import exploits
    from workers.trainable import resolve_trainable

    name = "torch_overhead:TorchBlob"  # imported as a module, not __main__'s class, as pbt run imports it
    data, told_at = timed_handover_search(name, resolve_trainable(name), mbytes, steps, out, burn_in=0)
    rows = data.results.set_index(["member", "step"])
    crossed = [e for e in exploits(data).itertuples()
               if rows.loc[(e.member, e.step + 1), "worker"] != rows.loc[(e.donor, e.donor_step), "worker"]]
    from_ready = [1000 * (rows.loc[(e.member, e.step + 1), "train_started"] - told_at[(e.member, e.step)])
                  for e in crossed]
    copying = [1000 * rows.loc[(e.member, e.step + 1), "set_state_seconds"] for e in crossed]

    state = TorchBlob({"rate": 1.0}, 0, mbytes=mbytes).get_state()
    put_get = []
    for _ in range(7):
        t0 = time.perf_counter()
        ray.get(ray.put(state))
        put_get.append(1000 * (time.perf_counter() - t0))
    result = {"state_mb": round(sum(a.nbytes for a in state.values()) / 2**20, 2), "exploits": len(exploits(data)),
              "across_workers": len(crossed), "from_ready_ms": _stats(from_ready),
              "in_set_state_ms": _stats(copying), "put_get_ms": _stats(put_get)}
    result["from_ready_over_put_get"] = round(result["from_ready_ms"]["median"] / result["put_get_ms"]["median"], 2)
    return result


def quality(seeds: int, out: Path) -> dict[str, Any]:
    """PBT's best validation accuracy and its test accuracy per seed, torch CNN against numpy MLP."""
    from pbt.api import run
    from pbt.config import load_config

    line = {}
    for name, path in (("torch_cnn", TORCH_CONFIG), ("numpy_mlp", MLP_CONFIG)):
        config = load_config(path)
        runs = [run(config, strategy="pbt", seed=s, out=out / f"{name}-{s}", workers=WORKERS) for s in range(seeds)]
        val = [r["best"]["objective"] for r in runs]
        test = [r["best"]["test"]["test_accuracy"] for r in runs]
        line[name] = {"val_accuracy": [round(v, 4) for v in val], "val_mean": round(statistics.mean(val), 4),
                      "test_accuracy": [round(t, 4) for t in test], "test_mean": round(statistics.mean(test), 4)}
    line["torch_at_least_mlp"] = line["torch_cnn"]["val_mean"] >= line["numpy_mlp"]["val_mean"]
    return line


def _stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"median": math.nan, "p90": math.nan}
    return {"median": round(float(np.median(ms)), 2), "p90": round(float(np.percentile(ms, 90)), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of our search (the median is reported)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the quality comparison (0: skip it)")
    args = parser.parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(ROOT), os.environ.get("PYTHONPATH")]))
    from workers.cluster import connect, disconnect

    connect(num_cpus=WORKERS)  # an embedded Ray of its own, on loopback
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            line: dict[str, Any] = {
                "bench": "torch_overhead", "torch": torch.__version__,
                "search": f"{tomllib.loads(TORCH_CONFIG.read_text())['trainable']['name']}, async PBT, "
                          f"8 members x 2000 steps, interval 100, {WORKERS} workers",
                "ours": ours(folder / "ours", args.repeats),
            }
            if tune_available():
                for name, reuse in (("tune_reuse_actors", True), ("tune_default", None)):
                    with stdout_to_stderr():
                        line[name] = tune(folder / "tune", reuse)
                    line[f"{name}_ratio"] = {
                        "wall_tune_over_ours": round(line[name]["wall_s"] / line["ours"]["wall_s"], 2),
                        "utilisation_ours_over_tune": round(line["ours"]["utilisation"] / line[name]["utilisation"], 2)}
            else:
                line["tune"] = "ray[tune] not installed"
            line["handover"] = [handover(1.0, 100, folder / "h1"), handover(100.0, 40, folder / "h100")]
            if args.seeds:
                line["quality"] = quality(args.seeds, folder / "quality")
    finally:
        disconnect()
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
