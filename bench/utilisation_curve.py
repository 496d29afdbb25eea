"""Utilisation against segment length, 10 ms to 2 s of CPU-bound training (issue 13); prints ONE JSON line.

The digits MLP of examples/digits.toml, 8 members on 2 workers. A segment is ``steps`` optimizer
steps of one member between two decisions (PBT's ``interval`` and ``eval_every`` both ``steps``; random
search is evaluated as often). The MLP's pace is measured first (in this process, one core), and
each target length (10 ms to 2 s of training) becomes the steps that take that long at that pace.
For each, random search, asynchronous PBT and synchronous PBT (their other settings the defaults)
run ``segments`` segments per member (20 for short segments, down to 4 for 2 s ones), and with
``ray[tune]`` installed Ray Tune's PBT (asynchronous) the same search at the ``--tune-seconds``
lengths (by default 0.5 and 2 s: at 50 ms of training a segment, loaded cores cost Tune minutes).

utilisation = train seconds / (wall seconds x workers), Ray's start-up excluded; ``segment_s`` is
the measured mean training seconds of a segment, the curve's abscissa. First, in the same
invocation, ``bench/ray_call_floor.py`` gives Ray's own ceiling for the shape of
``bench/pbt_overhead.py`` (segments of 100 steps, 20 per member), and asynchronous and synchronous
PBT run that search: the line gives asynchronous PBT over the floor's pipelined shape and synchronous
PBT over its barrier shape (targets 0.97 and 0.95). At segments >= 0.5 s it gives whether random
and asynchronous PBT reach 0.95 and synchronous PBT 0.93. Every point records the machine's 1-minute
load average.

    python bench/utilisation_curve.py [--seconds 0.01,0.03,0.1,0.3,0.5,1,2] [--tune-seconds 0.5,2]
                                      [--figure PATH] [--no-floor]
    python bench/utilisation_curve.py --redraw LINE.json --figure PATH   # the figure of a printed line
"""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback only (DESIGN §6): before ray's import

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pbt_overhead import digits_config  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "examples" / "digits.toml"
WORKERS = 2
POPULATION = 8
SECONDS = (0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 2.0)
MEMBER_SECONDS = 8.0  # training seconds per member at the longer segments (at least 4 segments, at most 20)
FLOOR_STEPS, FLOOR_SEGMENTS = 100, 20  # the shape bench/ray_call_floor.py mimics
STRATEGIES = {"random": ("random", False), "async_pbt": ("pbt", False), "sync_pbt": ("pbt", True)}
REALISTIC_S = 0.5
TARGETS = {"random": 0.95, "async_pbt": 0.95, "sync_pbt": 0.93}


def segments_for(seconds: float) -> int:
    return max(4, min(20, round(MEMBER_SECONDS / seconds)))


def steps_per_second() -> float:
    """The digits MLP's optimizer steps per second in this process, over about a second."""
    import time

    from models import MLPClassifier

    settings = tomllib.loads(CONFIG.read_text())["trainable"]
    model = MLPClassifier({"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}, 0,
                          **{k: v for k, v in settings.items() if k != "name"})
    model.train(100)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        model.train(100)
        steps += 100
    return steps / (time.perf_counter() - start)


def point(strategy: str, synchronous: bool, steps: int, segments: int, out: Path) -> dict[str, Any]:
    from pbt.api import run

    config = digits_config(POPULATION, steps * segments, steps, synchronous)
    summary = run(config, strategy=strategy, seed=0, out=out, workers=WORKERS)
    done = summary["budget_steps"] / steps
    return {"steps": steps, "segment_s": round(summary["train_seconds"] / done, 4),
            "utilisation": round(summary["train_seconds"] / (summary["wall_seconds"] * WORKERS), 3),
            "wall_s": round(summary["wall_seconds"], 2), "exploits": summary["exploits"],
            "load_average": round(os.getloadavg()[0], 1)}


def tune_point(steps: int, segments: int, out: Path) -> dict[str, Any]:
    import pbt_overhead

    with pbt_overhead.stdout_to_stderr():
        result = pbt_overhead.tune(False, out, config=digits_config(POPULATION, steps * segments, steps))
    return {"steps": steps, "segment_s": round(result["train_s"] / (POPULATION * segments), 4),
            "utilisation": result["utilisation"],
            "wall_s": result["wall_s"], "load_average": round(os.getloadavg()[0], 1)}


def ray_floor() -> dict[str, Any]:
    """bench/ray_call_floor.py's line, run as a process of its own (its own Ray)."""
    child = subprocess.run([sys.executable, str(HERE / "ray_call_floor.py")], capture_output=True, text=True,
                           check=True, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    return json.loads(child.stdout.strip().splitlines()[-1])


def draw(line: dict[str, Any], path: Path) -> None:
    """Utilisation against segment seconds (log axis), one line per strategy, Ray's floor marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in line["curves"].items():
        points = sorted(points, key=lambda p: p["segment_s"])  # measured lengths: the load moves them
        ax.plot([p["segment_s"] for p in points], [p["utilisation"] for p in points], marker="o", label=name)
    floor = line.get("ray_floor")
    if floor:
        at = line["at_floor_shape"]
        ax.scatter([at["async_pbt"]["segment_s"], at["sync_pbt"]["segment_s"]],
                   [floor["pipelined_utilisation"], floor["barrier_utilisation"]], marker="x", color="black",
                   zorder=3, label="Ray's floor, PBT's 100-step shape (pipelined, barrier)")
    ax.axvline(REALISTIC_S, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds per segment (between two decisions)")
    ax.set_ylabel("utilisation (train s / wall s x workers)")
    ax.set_ylim(top=1.0)
    loads = [p["load_average"] for points in line["curves"].values() for p in points]
    ax.set_title(f"digits MLP, {POPULATION} members, {WORKERS} workers; load average {min(loads)}-{max(loads)} "
                 f"on {line.get('cores', os.cpu_count())} cores", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default=",".join(map(str, SECONDS)),
                        help="comma-separated training seconds per segment")
    parser.add_argument("--tune-seconds", default="0.5,2", help="lengths for Ray Tune's PBT ('' for none)")
    parser.add_argument("--figure", type=Path, help="also draw the curve into this PNG")
    parser.add_argument("--redraw", type=Path, help="draw --figure from this saved line; run nothing")
    parser.add_argument("--no-floor", action="store_true", help="skip bench/ray_call_floor.py")
    args = parser.parse_args()
    try:
        lengths = [float(s) for s in args.seconds.split(",")]
        tune_lengths = [float(s) for s in args.tune_seconds.split(",") if s]
    except ValueError:
        parser.exit(2, f"--seconds, --tune-seconds: comma-separated numbers, got {args.seconds!r}, {args.tune_seconds!r}\n")
    if any(not 0 < s <= 60 for s in lengths + tune_lengths):
        parser.exit(2, f"--seconds, --tune-seconds: every length must be in (0, 60], got {args.seconds!r}, {args.tune_seconds!r}\n")
    if args.redraw:
        if not args.figure:
            parser.exit(2, "--redraw: needs --figure\n")
        draw(json.loads(args.redraw.read_text().strip().splitlines()[-1]), args.figure)
        return
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    from pbt_overhead import tune_available

    from workers.cluster import connect, disconnect

    line: dict[str, Any] = {"bench": "utilisation_curve", "population": POPULATION, "workers": WORKERS,
                            "cores": os.cpu_count(),
                            "load_average": [round(os.getloadavg()[0], 1)]}
    if not args.no_floor:
        line["ray_floor"] = {k: v for k, v in ray_floor().items() if k != "bench"}
    curves: dict[str, list] = {name: [] for name in STRATEGIES}
    connect(num_cpus=WORKERS)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not args.no_floor:
                line["at_floor_shape"] = {
                    name: point(*STRATEGIES[name], FLOOR_STEPS, FLOOR_SEGMENTS, Path(tmp) / f"floor-{name}")
                    for name in ("async_pbt", "sync_pbt")}
            pace = steps_per_second()
            line["mlp_steps_per_s"] = round(pace)
            plan = [(max(1, round(seconds * pace)), segments_for(seconds)) for seconds in lengths]
            for steps, segments in plan:
                for name, (strategy, synchronous) in STRATEGIES.items():
                    curves[name].append(point(strategy, synchronous, steps, segments, Path(tmp) / f"{name}-{steps}"))
            if tune_available():
                curves["tune_async_pbt"] = [tune_point(max(1, round(seconds * pace)), segments_for(seconds),
                                                       Path(tmp) / "tune") for seconds in tune_lengths]
            else:
                line["tune"] = "ray[tune] not installed"
    finally:
        disconnect()
    line["curves"] = curves
    line["load_average"].append(round(os.getloadavg()[0], 1))
    floor = line.get("ray_floor")
    if floor:
        at = line["at_floor_shape"]
        line["over_floor"] = {"async_over_pipelined": round(at["async_pbt"]["utilisation"]
                                                            / floor["pipelined_utilisation"], 3),
                              "sync_over_barrier": round(at["sync_pbt"]["utilisation"] / floor["barrier_utilisation"], 3)}
    realistic = {name: [p["utilisation"] for p in curves[name] if p["segment_s"] >= REALISTIC_S] for name in TARGETS}
    line["realistic"] = {name: {"lowest_utilisation": min(us), "target": TARGETS[name], "met": min(us) >= TARGETS[name]}
                         for name, us in realistic.items() if us}
    if args.figure:
        draw(line, args.figure)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
