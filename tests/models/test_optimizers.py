"""SGD (momentum, weight decay) and Adam against their textbook update rules."""

import numpy as np
import pytest

from models.optim import SGD, Adam


def _problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 2)).astype(dtype), "b": rng.standard_normal(2).astype(dtype)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    return params, grads, rng


def test_sgd_momentum_weight_decay_matches_the_rule():
    params, grads, rng = _problem()
    opt = SGD(params, grads, lr=0.1, momentum=0.9, weight_decay=0.01)
    ref = {k: v.copy() for k, v in params.items()}
    vel = {k: np.zeros_like(v) for k, v in params.items()}
    for _ in range(3):
        for k in grads:
            grads[k][...] = rng.standard_normal(grads[k].shape)
            vel[k] = 0.9 * vel[k] + grads[k] + 0.01 * ref[k]
            ref[k] = ref[k] - 0.1 * vel[k]
        opt.step()
    for k in params:
        assert np.allclose(params[k], ref[k], rtol=1e-12)
        assert np.allclose(opt.slots[f"velocity.{k}"], vel[k], rtol=1e-12)


def test_sgd_hyperparameters_are_assignments_and_keep_the_slots():
    params, grads, _ = _problem()
    opt = SGD(params, grads, lr=0.1, momentum=0.9)
    grads["w"][...] = 1.0
    opt.step()
    velocity = opt.slots["velocity.w"].copy()
    before = params["w"].copy()
    opt.lr = 0.0
    opt.step()
    assert np.array_equal(params["w"], before)
    assert np.allclose(opt.slots["velocity.w"], 0.9 * velocity + 1.0)


def test_sgd_keeps_float32():
    params, grads, _ = _problem(np.float32)
    opt = SGD(params, grads, lr=0.1, momentum=0.9, weight_decay=1e-4)
    grads["w"][...] = 1.0
    opt.step()
    assert params["w"].dtype == np.float32 and opt.slots["velocity.w"].dtype == np.float32


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_the_rule(weight_decay):
    params, grads, rng = _problem()
    opt = Adam(params, grads, lr=0.01, weight_decay=weight_decay)
    ref = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t in range(1, 5):
        for k in grads:
            grads[k][...] = rng.standard_normal(grads[k].shape)
            g = grads[k] + weight_decay * ref[k]
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            m_hat, v_hat = m[k] / (1 - 0.9**t), v[k] / (1 - 0.999**t)
            ref[k] = ref[k] - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
        opt.step()
    assert int(opt.slots["t"]) == 4
    for k in params:
        assert np.allclose(params[k], ref[k], rtol=1e-10, atol=1e-12)


def test_adam_keeps_float32():
    params, grads, _ = _problem(np.float32)
    opt = Adam(params, grads, lr=0.01)
    grads["b"][...] = 1.0
    opt.step()
    assert params["b"].dtype == np.float32 and opt.slots["v.b"].dtype == np.float32
