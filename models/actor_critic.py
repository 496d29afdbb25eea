"""The built-in reinforcement-learning trainable: advantage actor-critic (A2C, Mnih et al. 2016) on
gymnasium's CartPole-v1 and Acrobot-v1, built from the project's numpy modules (DESIGN §3).

One optimizer step (``train``'s unit) is one update: every environment of the batch steps
``rollout`` times under the current policy, generalised advantage estimates (Schulman et al. 2016)
are computed from the critic, and Adam takes one step on the actor's and the critic's loss
(``models.losses.ActorCriticLoss``) over those ``n_envs`` × ``rollout`` transitions, less the
autoreset steps (``models.environments``), with the gradient's global norm clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models import checks
from models import functional as F
from models.activations import Tanh
from models.branches import Branches
from models.environments import EnvBatch, make_batch
from models.errors import ConfigError
from models.layers import Linear
from models.losses import ActorCriticLoss
from models.optim import Adam, clip_grad_norm
from models.sequential import Sequential
from models.state import check_state, rng_from_array, rng_to_array

HPARAM_DEFAULTS = {"lr": 7e-4, "entropy_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95, "value_coef": 0.5}
HPARAM_BOUNDS = {
    "lr": {"lo": 0.0, "lo_open": True},
    "entropy_coef": {"lo": 0.0},
    "gamma": {"lo": 0.0, "hi": 1.0},
    "gae_lambda": {"lo": 0.0, "hi": 1.0},
    "value_coef": {"lo": 0.0},
}
VALIDATION_EPISODES, VALIDATION_SEED = 30, 1_000_000  # fixed: every member, every evaluation
TEST_EPISODES, TEST_SEED = 100, 2_000_000
MAX_GRAD_NORM = 0.5
ADAM_EPS = 1e-5
POLICY_HEAD_SCALE = 0.01  # near-uniform initial policy


class ActorCritic:
    """A2C: a softmax policy and a value function, two tanh MLPs, trained together by one Adam.

    Settings (the config's ``[trainable]`` table): ``env`` (``CartPole-v1`` or ``Acrobot-v1``),
    ``n_envs`` (environments stepped together), ``rollout`` (steps of each per update, >= 2),
    ``hidden`` (widths of each network). Hyperparameters: ``lr``, ``entropy_coef``, ``gamma``,
    ``gae_lambda``, ``value_coef`` (defaults 7e-4, 0.01, 0.99, 0.95, 0.5). Float32.

    The actor and the critic share no layer: on CartPole a shared trunk swung between 150 and 500
    long into training, where separate networks settled at 500 (seeds 0-2, 6,000 updates). So
    ``value_coef`` weighs the critic's loss only through what the two share, Adam's step after
    the gradient's global norm is clipped (as in Stable-Baselines3's A2C).

    ``evaluate`` plays the greedy policy (the most probable action) for ``VALIDATION_EPISODES``
    fixed seeded episodes, ``test`` for ``TEST_EPISODES`` others; neither touches the training
    environments or counts toward ``env_steps``. The seed decides the initial weights, the
    sampled actions and the training environments' seeds.
    """

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, env: str = "CartPole-v1", n_envs: int = 8,
                 rollout: int = 8, hidden: Sequence[int] = (64, 64), **unknown: Any) -> None:
        checks.reject_unknown(unknown, ("env", "n_envs", "rollout", "hidden"), "trainable")
        seed = checks.seed(seed)
        self.hparams = checks.hparams(hparams, HPARAM_DEFAULTS, HPARAM_BOUNDS)
        n_envs = checks.integer("trainable.n_envs", n_envs, lo=1)
        self.rollout = checks.integer("trainable.rollout", rollout, lo=2)  # >= 2: every env has a real transition
        if not isinstance(hidden, (list, tuple)) or not hidden:
            raise ConfigError(f"trainable.hidden: must be a non-empty list of layer widths, got {hidden!r}")
        widths = [checks.integer("trainable.hidden", h, lo=1) for h in hidden]
        if not isinstance(env, str):
            raise ConfigError(f"trainable.env: must be an environment name, got {env!r}")

        self.envs: EnvBatch = make_batch(env, n_envs)
        self._validation_envs = make_batch(env, VALIDATION_EPISODES)
        self._test_envs = make_batch(env, TEST_EPISODES)
        init_rng, self._action_rng, env_rng = np.random.default_rng(seed).spawn(3)
        self.net = actor_critic_network(self.envs.obs_dim, self.envs.n_actions, widths, init_rng)
        self.loss = ActorCriticLoss()
        self.optimizer = Adam(self.net.params, self.net.grads, lr=self.hparams["lr"], eps=ADAM_EPS)
        self.set_hparams(self.hparams)

        self._obs = self.envs.reset(seed=int(env_rng.integers(2**31)))
        self._step = 0
        self._env_steps = 0

    def train(self, steps: int) -> None:
        """``steps`` updates, each on a fresh rollout of every environment."""
        checks.integer("steps", steps, lo=0)
        for _ in range(steps):
            self._update()
        self._step += steps

    def _update(self) -> None:
        envs, net, k = self.envs, self.net, self.envs.n_actions
        T, n = self.rollout, envs.n
        obs = np.empty((T, n, envs.obs_dim), np.float32)
        actions = np.empty((T, n), np.int64)
        rewards = np.empty((T, n), np.float32)
        terminated = np.empty((T, n), np.bool_)
        ended = np.empty((T, n), np.bool_)
        real = np.empty((T, n), np.bool_)
        values = np.empty((T + 1, n), np.float32)
        current = self._obs
        for t in range(T):
            real[t] = ~envs.resetting
            out = net.forward(current)
            values[t] = out[:, k]
            actions[t] = sample_actions(out[:, :k], self._action_rng)
            obs[t] = current
            current, rewards[t], terminated[t], truncated = envs.step(actions[t])
            ended[t] = terminated[t] | truncated
        values[T] = net.forward(current)[:, k]
        self._obs = current
        self._env_steps += T * n

        advantages = generalized_advantages(rewards, values, terminated, ended,
                                            self.hparams["gamma"], self.hparams["gae_lambda"])
        returns = advantages + values[:T]
        self.loss.forward(net.forward(obs[real]), actions[real], advantages[real], returns[real])
        net.backward(self.loss.backward())
        clip_grad_norm(net.grads, MAX_GRAD_NORM)
        self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        """``val_return``: the mean return of the greedy policy over the fixed validation episodes;
        ``val_entropy``: the mean entropy of the policy over the states they visit;
        ``val_env_steps``: the steps they took (not counted in ``env_steps``);
        ``env_steps``: training environment steps so far. Read-only."""
        return {**self._play(self._validation_envs, VALIDATION_SEED, "val"), "env_steps": float(self._env_steps)}

    def test(self) -> dict[str, float]:
        """``test_return``, ``test_entropy`` and ``test_env_steps`` over the test episodes (other seeds).
        Read-only."""
        return self._play(self._test_envs, TEST_SEED, "test")

    def _play(self, envs: EnvBatch, seed: int, split: str) -> dict[str, float]:
        """One episode per environment of ``envs`` under the greedy policy: mean return, mean
        entropy over the states visited, steps."""
        k = envs.n_actions
        obs = envs.reset(seed)
        returns = np.zeros(envs.n, np.float64)
        done = np.zeros(envs.n, np.bool_)
        steps, entropy = 0, 0.0
        while not done.all():
            logits = self.net.forward(obs)[:, :k]
            entropy += float(np.add.reduce(F.entropy(F.log_softmax(logits))[~done], dtype=np.float64))
            steps += int(np.count_nonzero(~done))
            obs, reward, terminated, truncated = envs.step(np.argmax(logits, axis=1))
            returns += np.where(done, 0.0, reward)
            done |= terminated | truncated
        return {f"{split}_return": float(returns.mean()), f"{split}_entropy": entropy / steps,
                f"{split}_env_steps": float(steps)}

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of: ``param.*``, ``opt.*`` (Adam's slots), ``step``, ``env_steps``, ``obs`` (the
        current observations), ``rng.action``, and ``env.*``: the training environments' physics,
        episode step counters, pending resets and random generators (the episodes in progress)."""
        state = {f"param.{k}": v.copy() for k, v in self.net.params.items()}
        state.update({f"opt.{k}": v.copy() for k, v in self.optimizer.slots.items()})
        state.update({f"env.{k}": v for k, v in self.envs.get_state().items()})
        state.update({
            "step": np.array(self._step, np.int64),
            "env_steps": np.array(self._env_steps, np.int64),
            "obs": self._obs.copy(),
            "rng.action": rng_to_array(self._action_rng),
        })
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of an ActorCritic with the same settings."""
        check_state(state, self.get_state())
        for prefix, arrays in (("param.", self.net.params), ("opt.", self.optimizer.slots)):
            for k, v in arrays.items():
                v[...] = state[prefix + k]
        self.envs.set_state({k[len("env."):]: v for k, v in state.items() if k.startswith("env.")})
        self._step = int(state["step"])
        self._env_steps = int(state["env_steps"])
        self._obs = np.array(state["obs"], np.float32)
        rng_from_array(self._action_rng, state["rng.action"])

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Change the given hyperparameters (others keep their values); weights, slots and episodes untouched."""
        self.hparams = checks.hparams(hparams, self.hparams, HPARAM_BOUNDS)
        self.optimizer.lr = self.hparams["lr"]
        self.loss.policy.entropy_coef = self.hparams["entropy_coef"]
        self.loss.value_coef = self.hparams["value_coef"]


def actor_critic_network(obs_dim: int, n_actions: int, hidden: Sequence[int], rng: np.random.Generator,
                         dtype: type = np.float32) -> Branches:
    """The actor and the critic, two tanh MLPs of widths ``hidden`` (Glorot-initialised) side by side
    on the observations: (N, obs_dim) in, (N, n_actions + 1) out, the policy's logits then the value.
    The policy starts near uniform."""
    def mlp(d_out: int, head_scale: float) -> Sequential:
        sizes = [obs_dim, *hidden]
        layers: list = []
        for i, (d_in, width) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [Linear(d_in, width, rng, init="glorot", dtype=dtype, input_grad=i > 0), Tanh()]
        head = Linear(sizes[-1], d_out, rng, init="glorot", dtype=dtype)
        head.params["W"] *= head_scale
        return Sequential([*layers, head])

    return Branches([mlp(n_actions, POLICY_HEAD_SCALE), mlp(1, 1.0)])


def sample_actions(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``logits`` (N, K), drawn from its softmax by one uniform per row."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(logits)) * cumulative[:, -1]
    return np.count_nonzero(cumulative[:, :-1] <= u[:, None], axis=1)


def generalized_advantages(rewards: np.ndarray, values: np.ndarray, terminated: np.ndarray, ended: np.ndarray,
                           gamma: float, lam: float) -> np.ndarray:
    """GAE(γ, λ) advantages (T, n) of a rollout: ``rewards``, ``terminated`` and ``ended`` (terminated
    or truncated) (T, n), the critic's ``values`` (T + 1, n) of every observation and the next one.

    A terminated episode has no value after it; a truncated one is bootstrapped from the value of
    its final observation (under next-step autoreset, the observation after it). Nothing flows
    back across an episode's end.
    """
    T = len(rewards)
    advantages = np.empty_like(rewards)
    running = np.zeros_like(rewards[0])
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * values[t + 1] * ~terminated[t] - values[t]
        running = delta + gamma * lam * ~ended[t] * running
        advantages[t] = running
    return advantages
