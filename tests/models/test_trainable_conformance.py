"""One contract test over every built-in Trainable (DESIGN §3), and the PyTorch example through the adapter."""

import importlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from models import ActorCritic, MLPClassifier, NoisyQuadratic, ToyQuadratic
from workers.trainable import Trainable, settings_for_workers

CASES = {
    "mlp": (MLPClassifier, {"lr": 0.05, "momentum": 0.9, "dropout": 0.2}, {"lr": 0.01, "dropout": 0.0},
            {"hidden": [16], "batch_size": 32}),
    "toy": (ToyQuadratic, {"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}, {}),
    "nqm": (NoisyQuadratic, {"lr": 0.5, "momentum": 0.5}, {"lr": 0.05, "momentum": 0.0}, {"dim": 20}),
    "torch_cnn": ("examples.torch_cnn:DigitsCNN", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
                  {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.0}, {"channels": 4, "hidden": 16, "batch_size": 32}),
    "a2c-cartpole": (ActorCritic, {"lr": 0.01, "entropy_coef": 0.05}, {"lr": 0.001, "entropy_coef": 0.0, "gamma": 0.9},
                     {"env": "CartPole-v1", "n_envs": 4, "rollout": 5, "hidden": [16]}),
    "a2c-acrobot": (ActorCritic, {"lr": 0.01, "value_coef": 1.0}, {"lr": 0.002, "value_coef": 1.0, "gae_lambda": 0.5},
                    {"env": "Acrobot-v1", "n_envs": 3, "rollout": 4, "hidden": [8, 8]}),
}
ROOT = Path(__file__).resolve().parents[2]  # examples.* imports from the repository's root, as pbt run does there


@pytest.fixture(params=list(CASES))
def case(request, monkeypatch):
    cls, *rest = CASES[request.param]
    if isinstance(cls, str):
        pytest.importorskip("torch")
        if str(ROOT) not in sys.path:
            monkeypatch.syspath_prepend(str(ROOT))
        module, _, name = cls.partition(":")
        cls = getattr(importlib.import_module(module), name)
    return (cls, *rest)


def _run(cls, hp, new_hp, settings, seed, state=None, steps=(20, 20)):
    t = cls(hp, seed, **settings)
    if state is not None:
        t.set_state(state)
    t.train(steps[0])
    t.set_hparams(new_hp)
    t.train(steps[1])
    return t


def test_is_a_trainable(case):
    cls, hp, _, settings = case
    assert isinstance(cls(hp, 0, **settings), Trainable)


def test_state_round_trips_bit_exactly_through_npz(case, tmp_path):
    cls, hp, new_hp, settings = case
    t = _run(cls, hp, new_hp, settings, seed=3)
    np.savez(tmp_path / "s.npz", **t.get_state())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    fresh = cls(new_hp, 7, **settings)
    fresh.set_state(loaded)
    assert fresh.evaluate() == t.evaluate()
    t.train(15)
    fresh.train(15)
    assert fresh.evaluate() == t.evaluate()
    sa, sb = t.get_state(), fresh.get_state()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_set_hparams_mid_run_changes_the_path_but_not_the_state(case):
    cls, hp, new_hp, settings = case
    t = cls(hp, 0, **settings)
    t.train(20)
    before = t.get_state()
    t.set_hparams(new_hp)
    after = t.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    changed = _run(cls, hp, new_hp, settings, seed=0)
    kept = _run(cls, hp, hp, settings, seed=0)
    assert changed.evaluate() != kept.evaluate()


def test_same_seed_same_metrics(case):
    cls, hp, new_hp, settings = case
    assert _run(cls, hp, new_hp, settings, 5).evaluate() == _run(cls, hp, new_hp, settings, 5).evaluate()


def test_metrics_are_python_floats(case):
    cls, hp, _, settings = case
    metrics = cls(hp, 0, **settings).evaluate()
    assert metrics and all(type(v) is float for v in metrics.values())


def test_the_settings_workers_get_build_the_same_trainable(case):
    """What a cluster's workers build from (made on the driver, pickled on the way) trains the same."""
    cls, hp, new_hp, settings = case
    shipped = pickle.loads(pickle.dumps(settings_for_workers(cls, settings)))
    assert _run(cls, hp, new_hp, shipped, 5).evaluate() == _run(cls, hp, new_hp, settings, 5).evaluate()
