"""Asynchronous PBT at populations 8 to 1,024 on the same budget (issue 13); prints ONE JSON line.

The digits MLP of examples/digits.toml, asynchronous PBT with its other default settings, ``interval`` and
``eval_every`` 100, on 2 workers, each population given the same total budget (default 1,024 x
1,000 = 8 x 128,000 optimizer steps). Each population runs in a process of its own (its own
embedded Ray on loopback), so its driver's peak RSS is its own. Per population:

* ``steps_per_s``: whole-search optimizer steps per wall second (Ray's start-up excluded, as in
  the summary); ``ratio_to_smallest``: against the smallest population of the same invocation;
* ``driver_peak_rss_mb``: the driver process's peak resident set;
* ``object_store_end_bytes``: at the run's last progress report (the runner still holds every
  reference), Ray's shared-memory object store in use plus the driver's in-process store (states
  under Ray's 100 KB inline limit live there); ``object_store_peak_bytes``: the largest sample
  (one a second);
* ``checkpoint_end_bytes`` and ``checkpoint_peak_bytes``: the run's checkpoint files on disk;
  each also as a multiple of population x state size (``state_bytes``: one member's state);
* ``store_bytes``: run.db with its write-ahead log, at the end;
* the machine's load average (1 minute) at the start and the end of the population's run.

    python bench/scale.py [--populations 8,64,256,1024] [--total-steps 1024000] [--workers 2]

A smaller ``--total-steps`` (a multiple of 100 x each population) gives a quick run.
"""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback only (DESIGN §6): before ray's import

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pbt_overhead import digits_config  # noqa: E402

EVERY = 100
SAMPLE_EVERY_S = 1.0


def directory_bytes(directory: Path, pattern: str = "*") -> int:
    return sum(path.stat().st_size for path in directory.glob(pattern) if path.is_file())


def state_bytes(checkpoints: Path) -> int:
    """One member's state size in bytes: the arrays of a checkpoint file."""
    from search.checkpoints import load_checkpoint

    return sum(array.nbytes for array in load_checkpoint(next(checkpoints.glob("member-*.npz"))).values())


def one(population: int, steps: int, workers: int, out: Path) -> dict[str, Any]:
    """One search in this process: its figures (see the module's docstring)."""
    from pbt.api import run
    from workers.cluster import connect, disconnect, object_store_bytes

    checkpoints = out / "checkpoints"
    samples = {"at": -SAMPLE_EVERY_S, "store": 0, "disk": 0, "end_store": 0, "end_disk": 0}

    def sample(progress: Any) -> None:
        last = progress.steps_done == progress.budget_steps
        if not last and time.monotonic() - samples["at"] < SAMPLE_EVERY_S:
            return
        samples["at"] = time.monotonic()
        store, disk = object_store_bytes(), directory_bytes(checkpoints)
        samples["store"], samples["disk"] = max(samples["store"], store), max(samples["disk"], disk)
        if last:
            samples["end_store"], samples["end_disk"] = store, disk

    load_start = os.getloadavg()[0]
    connect(num_cpus=2)
    try:
        summary = run(digits_config(population, steps, EVERY), strategy="pbt", seed=0, out=out, workers=workers,
                      on_progress=sample)
    finally:
        disconnect()
    state = state_bytes(checkpoints)
    unit = population * state
    return {
        "population": population, "steps_per_member": steps, "exploits": summary["exploits"],
        "wall_s": round(summary["wall_seconds"], 1),
        "steps_per_s": round(summary["budget_steps"] / summary["wall_seconds"]),
        "utilisation": round(summary["train_seconds"] / (summary["wall_seconds"] * workers), 3),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "state_bytes": state,
        "object_store_end_bytes": samples["end_store"], "object_store_peak_bytes": samples["store"],
        "object_store_end_x": round(samples["end_store"] / unit, 2),
        "checkpoint_end_bytes": samples["end_disk"], "checkpoint_peak_bytes": samples["disk"],
        "checkpoint_end_x": round(samples["end_disk"] / unit, 2),
        "checkpoint_peak_x": round(samples["disk"] / unit, 2),
        "store_bytes": directory_bytes(out, "run.db*"),
        "best_val_accuracy": round(summary["best"]["objective"], 4),
        "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", default="8,64,256,1024", help="comma-separated populations")
    parser.add_argument("--total-steps", type=int, default=1_024_000, help="the budget of every population")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: this one population
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.total_steps // args.one, args.workers, args.out)))
        return
    try:
        populations = [int(p) for p in args.populations.split(",")]
    except ValueError:
        parser.exit(2, f"--populations: comma-separated integers, got {args.populations!r}\n")
    bad = [p for p in populations if p < 1 or args.total_steps % (p * EVERY)]
    if bad:
        parser.exit(2, f"--total-steps: {args.total_steps} is not a multiple of 100 x population {bad[0]}\n")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for population in populations:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(population), "--total-steps", str(args.total_steps),
                 "--workers", str(args.workers), "--out", str(Path(tmp) / f"p{population}")],
                capture_output=True, text=True, check=False,
                env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
            if child.returncode:
                sys.exit(f"population {population} failed: {child.stderr.strip().splitlines()[-1:]}")
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    smallest = min(runs, key=lambda r: r["population"])
    for r in runs:
        r["ratio_to_smallest"] = round(r["steps_per_s"] / smallest["steps_per_s"], 3)
    print(json.dumps({"bench": "scale", "total_steps": args.total_steps, "workers": args.workers,
                      "cores": os.cpu_count(), "runs": runs}))


if __name__ == "__main__":
    main()
