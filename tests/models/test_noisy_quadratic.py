"""NoisyQuadratic: the task where a learning-rate schedule beats every constant."""

import math

import numpy as np
import pytest

from models import NoisyQuadratic
from models.errors import ConfigError

STEPS = 2000
CONSTANTS = np.geomspace(0.01, 1.5, 12)


def _final_loss(lrs, seed: int) -> float:
    """The loss after one step at each learning rate of ``lrs``, in turn."""
    model = NoisyQuadratic({"lr": float(lrs[0])}, seed)
    for lr in lrs:
        model.set_hparams({"lr": float(lr)})
        model.train(1)
    return model.evaluate()["loss"]


def test_a_decaying_schedule_beats_every_constant_learning_rate():
    seeds = range(3)
    best_constant = min(np.mean([_final_loss([lr] * STEPS, s) for s in seeds]) for lr in CONSTANTS)
    decay = np.mean([_final_loss(np.geomspace(1.0, 0.005, STEPS), s) for s in seeds])
    assert decay < best_constant / 3  # about 5x in expectation (module docstring)


def test_without_noise_the_loss_falls_monotonically_to_zero():
    model = NoisyQuadratic({"lr": 1.0}, 0, dim=10, noise=0.0)
    losses = []
    for _ in range(50):
        model.train(20)
        losses.append(model.evaluate()["loss"])
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 1e-3


def test_starts_at_half_the_trace_of_the_curvature():
    assert NoisyQuadratic({}, 0, dim=4).evaluate()["loss"] == pytest.approx(0.5 * (1 + 1 / 2 + 1 / 3 + 1 / 4))


def test_a_diverging_learning_rate_reports_inf():
    model = NoisyQuadratic({"lr": 2.5}, 0)
    model.train(2000)
    assert model.evaluate()["loss"] == math.inf


@pytest.mark.parametrize("settings, message", [
    ({"dim": 0}, "trainable.dim: must be an integer >= 1"),
    ({"noise": -1.0}, "trainable.noise: must be a finite number >= 0"),
    ({"width": 3}, "trainable.width: unknown"),
])
def test_bad_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        NoisyQuadratic({}, 0, **settings)
