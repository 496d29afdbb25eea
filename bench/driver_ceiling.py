"""How many workers one driver can keep busy: asynchronous PBT on a trainable that does almost nothing.

The paper's toy trains 10 steps in microseconds, so the search is all driver: taking results in,
deciding (PBT is ready at every evaluation, ``interval = eval_every = 10``), writing the store and
sending calls, for populations of 64, 256 and 1,024 members on ``WORKERS`` worker actors with
fractional CPUs. A segment is one member's 10 steps: one result row, one decision, one place in a
call. The driver's CPU time per segment bounds what it sustains: with segments of 1 s of training,
one driver keeps about ``1000 / ms_per_segment`` workers busy.

    python bench/driver_ceiling.py [--workers 32] [--steps 100]

Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pbt.api import run
from pbt.config import parse_config
from workers.cluster import connect, disconnect

POPULATIONS = (64, 256, 1024)


def one(population: int, workers: int, steps: int, out: Path) -> dict:
    """One search; the driver's CPU seconds per segment and the segments per wall second."""
    raw = {"objective": "Q", "mode": "max", "trainable": {"name": "toy"},
           "space": {"h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]}},
           "budget": {"population": population, "steps": steps, "eval_every": 10},
           "pbt": {"interval": 10, "burn_in": 0, "synchronous": False}}
    config = parse_config(raw, "driver_ceiling")
    cpu = time.process_time()
    summary = run(config, strategy="pbt", seed=0, out=out, workers=workers)
    cpu = time.process_time() - cpu  # the driver's threads, workers' start-up included
    segments = population * steps // 10
    ms = 1000 * cpu / segments
    return {"population": population, "segments": segments, "exploits": summary["exploits"],
            "wall_s": round(summary["wall_seconds"], 2), "segments_per_s": round(segments / summary["wall_seconds"]),
            "driver_ms_per_segment": round(ms, 3), "workers_at_1s_segments": int(1000 / ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    connect(num_cpus=2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runs = [one(p, args.workers, args.steps, Path(tmp) / f"p{p}") for p in POPULATIONS]
    finally:
        disconnect()
    print(json.dumps({"bench": "driver_ceiling", "workers": args.workers, "runs": runs}))


if __name__ == "__main__":
    main()
