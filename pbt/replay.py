"""``pbt replay DIR``: retrain one fresh member from scratch on the best member's schedule.

PBT's best member owes its result to its hyperparameter schedule *and* to the weights it
inherited. Replaying the schedule alone (hyperparameters change at the same steps; exploits
change hyperparameters only) on a fresh member tells a good schedule from a lucky member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import StoreError
from pbt.config import parse_config
from search.store import DB_NAME, load_run, schedule, weight_steps
from workers.trainable import held_out_metrics, resolve_trainable

REPLAY_BRANCH = 2  # the run seed's tree: 0 the strategy, 1 the members, 2 replays


def replay(run_dir: str | Path, seed: int | None = None) -> dict[str, Any]:
    """Train a fresh member in-process on the best member's schedule; its metrics beside the original's.

    ``seed`` is the fresh trainable's seed; by default a branch of the run's seed that no member
    used. Returns ``member``, ``seed``, ``steps`` (on the clock of the best member's weights),
    ``objective``, ``mode``, ``schedule`` (``[[step, hparams], ...]``), and ``original`` and
    ``replay``: the final metrics (validation and ``test_*``) of the best member and of the replay.
    """
    run = load_run(run_dir)
    if run.summary is None:
        raise StoreError(f"{run.run_dir}: the run has not finished (no summary.json); replay it once it has")
    if run.summary.get("best") is None:
        raise StoreError(f"{run.run_dir}: no member has a validation objective, so there is no schedule to replay")
    config = parse_config(run.info["config"], source=str(Path(run_dir) / DB_NAME))
    member = int(run.summary["best"]["member"])
    plan = schedule(run, member)
    final = run.results[run.results["member"] == member].sort_values("step").iloc[-1]
    steps = weight_steps(run, member, int(final["step"]))
    if seed is None:
        seed = int(np.random.SeedSequence(int(run.info["seed"]), spawn_key=(REPLAY_BRANCH,)).generate_state(1)[0])
    trainable = resolve_trainable(config.trainable.name)(plan[0][1], seed, **config.trainable.settings)
    for (start, hparams), (end, _) in zip(plan, plan[1:] + [(steps, None)]):
        trainable.set_hparams(hparams)
        trainable.train(end - start)
    metrics = {**{k: float(v) for k, v in trainable.evaluate().items()}, **held_out_metrics(trainable)}
    return {
        "member": member, "seed": seed, "steps": steps, "objective": config.objective, "mode": config.mode,
        "schedule": [[step, dict(hparams)] for step, hparams in plan],
        "original": {k: float(final[k]) for k in metrics if k in final and pd.notna(final[k])},
        "replay": metrics,
    }


def format_replay(result: dict[str, Any]) -> str:
    """What ``pbt replay`` prints: the schedule, then each metric for the original and the replay."""
    lines = [f"best member {result['member']}: schedule over {result['steps']} steps "
             f"(objective {result['objective']}, {result['mode']})"]
    lines += [f"  from step {step:>6}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in hparams.items())
              for step, hparams in result["schedule"]]
    lines.append(f"{'metric':<20} {'original':>12} {'replay':>12}")
    for key, value in result["replay"].items():
        original = result["original"].get(key)
        lines.append(f"{key:<20} {'-' if original is None else _fmt(original):>12} {_fmt(value):>12}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)

