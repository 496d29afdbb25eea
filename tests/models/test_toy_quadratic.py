"""ToyQuadratic: the PBT paper's toy behaves as DESIGN §7 says."""

import numpy as np
import pytest

from models import ToyQuadratic
from models.errors import ConfigError


def test_starts_at_0_9_and_scores_the_true_objective():
    toy = ToyQuadratic({"h0": 1.0, "h1": 0.0}, seed=0)
    m = toy.evaluate()
    assert (m["theta0"], m["theta1"]) == (0.9, 0.9)
    assert m["Q"] == pytest.approx(1.2 - 1.62)
    assert m["Q_hat"] == pytest.approx(1.2 - 0.81)


def test_one_hot_h_stalls_at_q_0_39():
    toy = ToyQuadratic({"h0": 1.0, "h1": 0.0}, seed=0)
    toy.train(1000)
    m = toy.evaluate()
    assert m["theta0"] < 1e-6 and m["theta1"] == 0.9
    assert m["Q"] <= 0.39 + 1e-12 and m["Q"] == pytest.approx(0.39)
    assert m["Q_hat"] == pytest.approx(1.2)


def test_switching_h_midway_reaches_the_optimum():
    toy = ToyQuadratic({"h0": 1.0, "h1": 0.0}, seed=0)
    toy.train(500)
    toy.set_hparams({"h0": 0.0, "h1": 1.0})
    assert toy.evaluate()["theta1"] == 0.9  # set_hparams leaves θ alone
    toy.train(500)
    assert toy.evaluate()["Q"] == pytest.approx(1.2, abs=1e-6)


def test_one_step_is_a_gradient_step_of_size_lr():
    toy = ToyQuadratic({"h0": 0.5, "h1": 2.0}, seed=0, lr=0.1)
    toy.train(1)
    m = toy.evaluate()
    assert m["theta0"] == pytest.approx(0.9 - 0.1 * 2 * 0.5 * 0.9)
    assert m["theta1"] == pytest.approx(0.9 - 0.1 * 2 * 2.0 * 0.9)


def test_true_objective_on_a_grid():
    t0, t1 = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 3))
    q = ToyQuadratic.true_objective(t0, t1)
    assert q.shape == (3, 5) and q.max() == pytest.approx(1.2) and q[0, 0] == pytest.approx(-0.8)


@pytest.mark.parametrize("args,message", [
    (({"h0": 1, "h2": 0}, 0, {}), "space.h2: unknown"),
    (({"h0": float("nan")}, 0, {}), "space.h0: must be a finite number"),
    (({}, 0, {"lr": 0}), "trainable.lr: must be"),
    (({}, 0, {"steps": 3}), "trainable.steps: unknown"),
])
def test_bad_input(args, message):
    hparams, seed, settings = args
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        ToyQuadratic(hparams, seed, **settings)


def test_set_state_rejects_a_wrong_shape():
    toy = ToyQuadratic({}, seed=0)
    with pytest.raises(ConfigError, match=r"state\.theta: expected shape \(2,\), got \(3,\)"):
        toy.set_state({"theta": np.zeros(3), "step": np.array(0)})
