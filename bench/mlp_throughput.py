"""Training throughput of the digits MLP (64→128→10, batch 64, SGD with momentum), one BLAS thread.

Prints ONE JSON line: our steps/second through ``MLPClassifier.train`` and, when torch imports, the
same network, optimizer, batch and data order in PyTorch on the CPU (one thread), and the ratio
ours/PyTorch. Each figure is the best of ``--repeats`` timed runs of ``--steps`` steps, taken
alternately, after a warm-up.

    python bench/mlp_throughput.py [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from models import MLPClassifier

HPARAMS = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def ours(steps: int) -> Callable[[], float]:
    """A warmed-up MLPClassifier; the returned run trains ``steps`` steps, returns val accuracy."""
    mlp = MLPClassifier(HPARAMS, seed=0, dataset="digits", hidden=[128], batch_size=64)
    mlp.train(200)

    def run() -> float:
        mlp.train(steps)
        return mlp.evaluate()["val_accuracy"]

    return run


def torch_run(steps: int) -> tuple[Callable[[], float], str]:
    """The same network, optimizer, batch and data in PyTorch (one thread); raises ImportError."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = MLPClassifier(HPARAMS, seed=0).data
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    Xv, yv = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    state = {"order": torch.from_numpy(rng.permutation(len(y))), "cursor": 0}

    def train(n: int) -> None:
        for _ in range(n):
            if state["cursor"] + 64 > len(y):
                state["order"], state["cursor"] = torch.from_numpy(rng.permutation(len(y))), 0
            idx = state["order"][state["cursor"]:state["cursor"] + 64]
            state["cursor"] += 64
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    train(200)

    def run() -> float:
        train(steps)
        with torch.no_grad():
            return float((model(Xv).argmax(1) == yv).float().mean())

    return run, torch.__version__


def timed(run: Callable[[], float], steps: int) -> tuple[float, float]:
    """(steps per second, validation accuracy after the run) of one timed run."""
    start = time.perf_counter()
    accuracy = run()
    return steps / (time.perf_counter() - start), accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        runners = {"ours": ours(args.steps)}
        result: dict[str, object] = {"network": "64-128-10 relu", "batch": 64, "optimizer": "sgd momentum",
                                     "blas_threads": 1, "steps": args.steps, "repeats": args.repeats}
        try:
            runners["torch"], result["torch_version"] = torch_run(args.steps)
        except ImportError:
            result["torch_version"] = None
        rates = {name: [] for name in runners}
        accuracy = {}
        for _ in range(args.repeats):
            for name, run in runners.items():
                rate, accuracy[name] = timed(run, args.steps)
                rates[name].append(rate)
    for name in runners:
        result[f"{name}_steps_per_s"] = round(max(rates[name]), 1)
        result[f"{name}_val_accuracy"] = round(accuracy[name], 4)
    if "torch" in runners:
        result["ratio_ours_to_torch"] = round(max(rates["ours"]) / max(rates["torch"]), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
