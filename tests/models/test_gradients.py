"""Every module's backward, every parameter, the losses and a whole network against central
differences in float64 (models.gradcheck), plus the float32 path and mode switches."""

import numpy as np
import pytest

from models.actor_critic import actor_critic_network
from models.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from models.branches import Branches
from models.gradcheck import check_gradients, check_module, relative_error
from models.layers import BatchNorm, Dropout, Linear
from models.losses import ActorCriticLoss, PolicyGradientLoss, SoftmaxCrossEntropy, SquaredError
from models.optim import clip_grad_norm
from models.sequential import Sequential

TOL = 1e-6


def _x(rng, shape=(6, 5)):
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep kinks (ReLU at 0) away from the finite-difference step
    return x


def _modules(rng):
    return {
        "linear": Linear(5, 4, rng, dtype=np.float64),
        "linear_glorot": Linear(5, 4, rng, init="glorot", dtype=np.float64),
        "relu": ReLU(),
        "leaky_relu": LeakyReLU(0.1),
        "sigmoid": Sigmoid(),
        "tanh": Tanh(),
        "batchnorm": BatchNorm(5, dtype=np.float64),
        "branches": Branches([Linear(5, 2, rng, dtype=np.float64),
                              Sequential([Linear(5, 3, rng, dtype=np.float64), Tanh()]),
                              Linear(5, 1, rng, dtype=np.float64)]),
    }


@pytest.mark.parametrize("name", list(_modules(np.random.default_rng(0))))
def test_module_gradients(name):
    rng = np.random.default_rng(1)
    module = _modules(rng)[name]
    if "gamma" in module.params:  # a non-trivial affine part
        module.params["gamma"][...] = rng.uniform(0.5, 1.5, 5)
        module.params["beta"][...] = rng.standard_normal(5)
    errors = check_module(module, _x(rng), rng)
    assert set(errors) == {"x", *module.params}
    assert max(errors.values()) < TOL, errors


def test_dropout_gradient_with_a_fixed_mask():
    rng = np.random.default_rng(2)
    drop = Dropout(0.4, np.random.default_rng(7))
    saved = drop.rng.bit_generator.state

    def reset():
        drop.rng.bit_generator.state = saved

    errors = check_module(drop, _x(rng), rng, before_forward=reset)
    assert errors["x"] < TOL


def test_batchnorm_in_evaluation_uses_running_statistics():
    rng = np.random.default_rng(3)
    bn = BatchNorm(5, momentum=0.5, dtype=np.float64)
    x = rng.standard_normal((50, 5)) * 3 + 2
    bn.forward(x)
    assert np.allclose(bn.buffers["running_mean"], 0.5 * x.mean(axis=0))
    bn.set_training(False)
    errors = check_module(bn, _x(rng), rng)
    assert max(errors.values()) < TOL, errors
    single = bn.forward(x[:1])  # one sample works in evaluation, independent of the batch
    assert np.allclose(single, bn.forward(x)[:1])


def test_softmax_cross_entropy_gradient_and_stability():
    rng = np.random.default_rng(4)
    logits, y = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, y)
    errors = check_gradients(lambda: loss.forward(logits, y), {"logits": loss.backward().copy()},
                             {"logits": logits})
    assert errors["logits"] < TOL
    huge = np.array([[1000.0, 0.0], [-1000.0, 0.0]])
    value = loss.forward(huge, np.array([0, 0]))
    assert np.isfinite(value) and value == pytest.approx(500.0)
    assert np.all(np.isfinite(loss.backward()))


def test_squared_error_gradient():
    rng = np.random.default_rng(5)
    pred, target = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    loss = SquaredError()
    assert loss.forward(pred, target) == pytest.approx(0.5 * np.sum((pred - target) ** 2) / 6)
    errors = check_gradients(lambda: loss.forward(pred, target), {"pred": loss.backward().copy()},
                             {"pred": pred})
    assert errors["pred"] < TOL


def test_branches_concatenate_their_outputs_and_name_their_parameters():
    rng = np.random.default_rng(12)
    first, second = Linear(5, 2, rng, dtype=np.float64), Linear(5, 3, rng, dtype=np.float64)
    both = Branches([first, second])
    x = _x(rng)
    out = both.forward(x)
    assert np.array_equal(out, np.concatenate([first.forward(x), second.forward(x)], axis=1))
    assert both.params["1.W"] is second.params["W"] and both.grads["0.b"] is first.grads["b"]
    data_only = Branches([Linear(5, 2, rng, input_grad=False), Linear(5, 1, rng)])
    data_only.forward(x.astype(np.float32))
    assert data_only.backward(np.ones((6, 3), np.float32)) is None


def _policy_batch(rng, n=9, k=3):
    logits = rng.standard_normal((n, k)) * 2
    return logits, rng.integers(0, k, n), rng.standard_normal(n)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
def test_policy_gradient_loss_gradient(entropy_coef):
    """The actor's loss, −A·log π(a|s) − c·H, against central differences, with and without entropy."""
    rng = np.random.default_rng(13)
    logits, actions, advantages = _policy_batch(rng)
    loss = PolicyGradientLoss(entropy_coef)
    loss.forward(logits, actions, advantages)
    errors = check_gradients(lambda: loss.forward(logits, actions, advantages),
                             {"logits": loss.backward().copy()}, {"logits": logits})
    assert errors["logits"] < TOL


def test_policy_gradient_loss_value_and_entropy():
    rng = np.random.default_rng(14)
    logits, actions, advantages = _policy_batch(rng)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    entropy = -(probs * np.log(probs)).sum(axis=1)
    loss = PolicyGradientLoss(0.2)
    value = loss.forward(logits, actions, advantages)
    expected = np.mean(-advantages * np.log(probs[np.arange(9), actions]) - 0.2 * entropy)
    assert value == pytest.approx(expected, rel=1e-12)
    assert loss.entropy == pytest.approx(entropy.mean(), rel=1e-12)
    huge = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    assert np.isfinite(loss.forward(huge, np.array([1, 1]), np.ones(2)))
    assert np.all(np.isfinite(loss.backward()))


def test_actor_critic_loss_gradient_through_the_network():
    """The whole A2C loss (actor and critic) against central differences, for every parameter of
    both networks, with every coefficient non-zero."""
    rng = np.random.default_rng(15)
    net = actor_critic_network(4, 3, [6, 5], rng, dtype=np.float64)
    for p in net.params.values():  # biases off zero and a policy head of ordinary size
        p[...] = rng.standard_normal(p.shape) * 0.5
    obs, actions = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    advantages, returns = rng.standard_normal(8), rng.standard_normal(8) * 3
    loss = ActorCriticLoss(entropy_coef=0.1, value_coef=0.7)
    loss.forward(net.forward(obs), actions, advantages, returns)
    net.backward(loss.backward())
    analytic = {k: g.copy() for k, g in net.grads.items()}
    errors = check_gradients(lambda: loss.forward(net.forward(obs), actions, advantages, returns), analytic,
                             net.params)
    assert set(errors) == set(net.params) and len(errors) == 12
    assert max(errors.values()) < TOL, errors


def test_actor_critic_loss_is_the_sum_of_its_parts():
    rng = np.random.default_rng(16)
    logits, actions, advantages = _policy_batch(rng, k=2)
    values, returns = rng.standard_normal(9), rng.standard_normal(9)
    total = ActorCriticLoss(entropy_coef=0.05, value_coef=0.7).forward(
        np.column_stack([logits, values]), actions, advantages, returns)
    actor = PolicyGradientLoss(0.05).forward(logits, actions, advantages)
    assert total == pytest.approx(actor + 0.7 * 0.5 * np.mean((values - returns) ** 2), rel=1e-12)


def test_clip_grad_norm_scales_only_above_the_limit():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0)
    assert grads["a"][0] == 3.0
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    assert np.sqrt(np.sum(grads["a"] ** 2) + np.sum(grads["b"] ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert grads["a"][0] / grads["b"][0, 0] == pytest.approx(0.75)


def test_whole_network_gradient_through_the_loss():
    rng = np.random.default_rng(6)
    net = Sequential([
        Linear(5, 8, rng, dtype=np.float64), Tanh(), BatchNorm(8, dtype=np.float64),
        Sequential([Linear(8, 6, rng, init="glorot", dtype=np.float64), LeakyReLU(0.1)]),
        Linear(6, 3, rng, dtype=np.float64),
    ])
    assert "3.0.W" in net.params and "2.running_var" in net.buffers
    x, y = _x(rng, (10, 5)), rng.integers(0, 3, 10)
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    dx = net.backward(loss.backward())
    analytic = {"x": dx, **{k: g.copy() for k, g in net.grads.items()}}
    errors = check_gradients(lambda: loss.forward(net.forward(x), y), analytic, {"x": x, **net.params})
    assert set(errors) == {"x", *net.params} and len(errors) == 9
    assert max(errors.values()) < TOL, errors


def test_gradcheck_catches_a_wrong_gradient():
    rng = np.random.default_rng(7)
    lin = Linear(3, 2, rng, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    errors = check_gradients(lambda: float(np.sum(lin.forward(x))),
                             {"W": np.ones((3, 2))}, {"W": lin.params["W"]})
    assert errors["W"] > 0.1
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_float32_network_matches_float64():
    rng64, rng32 = np.random.default_rng(8), np.random.default_rng(8)
    nets = [Sequential([Linear(5, 4, r, dtype=dt), ReLU(), Linear(4, 3, r, dtype=dt)])
            for r, dt in ((rng64, np.float64), (rng32, np.float32))]
    x = np.random.default_rng(9).standard_normal((6, 5))
    out64, out32 = nets[0].forward(x), nets[1].forward(x.astype(np.float32))
    assert out32.dtype == np.float32
    assert np.allclose(out32, out64, atol=1e-4)
    dx32 = nets[1].backward(np.ones((6, 3), np.float32))
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in nets[1].grads.values())


def test_dropout_is_inverted_in_training_and_identity_in_evaluation():
    drop = Dropout(0.5, np.random.default_rng(0))
    x = np.ones((200, 50), np.float32)
    out = drop.forward(x)
    assert out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, 2.0}
    assert abs(out.mean() - 1.0) < 0.05
    drop.set_training(False)
    assert drop.forward(x) is x


def test_first_linear_layer_skips_the_input_gradient():
    rng = np.random.default_rng(10)
    lin = Linear(3, 2, rng, input_grad=False)
    lin.forward(np.ones((4, 3), np.float32))
    assert lin.backward(np.ones((4, 2), np.float32)) is None
    assert np.all(lin.grads["b"] == 4.0)


def test_initialisers_have_the_textbook_scale():
    from models.init import glorot_uniform, he_normal

    rng = np.random.default_rng(11)
    he = he_normal(rng, 400, 300)
    assert he.dtype == np.float32 and he.shape == (400, 300)
    assert abs(he.std() / np.sqrt(2 / 400) - 1) < 0.02 and abs(he.mean()) < 0.002
    gl = glorot_uniform(rng, 400, 300, np.float64)
    bound = np.sqrt(6 / 700)
    assert gl.dtype == np.float64 and np.abs(gl).max() <= bound and np.abs(gl).max() > 0.99 * bound
    assert abs(gl.std() / (bound / np.sqrt(3)) - 1) < 0.02
