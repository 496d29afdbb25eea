"""Batches of gymnasium environments stepped together, with their whole state as arrays.

Both batches follow gymnasium 1.x's vector convention (``AutoresetMode.NEXT_STEP``): an environment
whose episode ended is reset by the NEXT ``step``, which ignores its action and returns the first
observation of the new episode with reward 0, neither terminated nor truncated. ``resetting`` says
which environments the next ``step`` resets, so a learner can leave those transitions out.

- ``CartPole-v1``: gymnasium's own ``CartPoleVectorEnv`` (one numpy expression over every
  environment). Its state is public: the physics ``state`` (4, n), the episode ``steps`` that
  truncate at 500, ``prev_done``, and one ``np_random`` that draws every reset.
- ``Acrobot-v1``: gymnasium has no vector version, and ``SyncVectorEnv`` would keep the step
  counters and pending resets in private attributes of its wrappers. So a thin batch of
  ``AcrobotEnv`` instances: each one's physics ``state`` and ``np_random`` are its whole state
  (its torque noise is off); the batch owns the step counters and truncates at the spec's 500.

gymnasium is imported here, lazily: without it, building a batch is one ``ConfigError`` line
that says what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Protocol

import numpy as np

from models.errors import ConfigError
from models.state import check_state, rng_from_array, rng_to_array

INSTALL = 'pip install -e ".[rl]" (or pip install "gymnasium>=1.4,<2")'


def require_gymnasium() -> ModuleType:
    """The ``gymnasium`` module, or ``ConfigError`` saying how to install it."""
    try:
        import gymnasium
    except ImportError:
        raise ConfigError(f"trainable.name: 'a2c' needs gymnasium, which is not installed: {INSTALL}") from None
    return gymnasium


class EnvBatch(Protocol):
    """``n`` environments of one kind, stepped together (the autoreset convention above)."""

    n: int
    obs_dim: int
    n_actions: int

    def reset(self, seed: int) -> np.ndarray:
        """Start a fresh episode everywhere, seeded by ``seed``; the observations (n, obs_dim) float32."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step of every environment: observations (n, obs_dim) float32, rewards (n,) float32,
        terminated (n,) bool, truncated (n,) bool."""

    @property
    def resetting(self) -> np.ndarray:
        """(n,) bool: the environments the next ``step`` resets (their episode just ended)."""

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of everything that decides the next steps: physics, step counters, pending resets, RNGs."""

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of a batch of the same environment and size."""


class CartPoleBatch:
    """``n`` CartPole-v1 environments as gymnasium's ``CartPoleVectorEnv``."""

    def __init__(self, n: int) -> None:
        gym = require_gymnasium()
        self._env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
        if self._env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.NEXT_STEP:
            raise ConfigError(f"trainable.env: this gymnasium's CartPole-v1 does not reset on the next step; {INSTALL}")
        self.n = n
        self.obs_dim = self._env.single_observation_space.shape[0]
        self.n_actions = int(self._env.single_action_space.n)

    def reset(self, seed: int) -> np.ndarray:
        return self._env.reset(seed=seed)[0]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs, reward, terminated, truncated, _ = self._env.step(actions)
        return obs, reward, terminated, truncated

    @property
    def resetting(self) -> np.ndarray:
        return self._env.prev_done

    def get_state(self) -> dict[str, np.ndarray]:
        """``physics`` (4, n) float64, ``steps`` (n,) int32, ``resetting`` (n,) bool, ``rng`` (6,) uint64."""
        env = self._env
        return {"physics": env.state.copy(), "steps": env.steps.copy(), "resetting": env.prev_done.copy(),
                "rng": rng_to_array(env.np_random)}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        check_state(state, self.get_state())
        env = self._env
        env.state = np.array(state["physics"], np.float64)
        env.steps = np.array(state["steps"], np.int32)
        env.prev_done = np.array(state["resetting"], np.bool_)
        rng_from_array(env.np_random, state["rng"])


class InstanceBatch:
    """``n`` instances of a classic-control environment whose whole state is its ``state`` array and
    its ``np_random`` (Acrobot-v1), stepped one after another, truncated at the spec's episode length.

    ``reset(seed)`` seeds instance ``i`` with ``seed + i``, as gymnasium's vector environments do.
    """

    def __init__(self, env_id: str, n: int) -> None:
        gym = require_gymnasium()
        self._envs = [gym.make(env_id, disable_env_checker=True).unwrapped for _ in range(n)]
        self.max_episode_steps = int(gym.spec(env_id).max_episode_steps)
        self.n = n
        self.obs_dim = self._envs[0].observation_space.shape[0]
        self.n_actions = int(self._envs[0].action_space.n)
        self._steps = np.zeros(n, np.int64)
        self._resetting = np.zeros(n, np.bool_)

    def reset(self, seed: int) -> np.ndarray:
        obs = np.empty((self.n, self.obs_dim), np.float32)
        for i, env in enumerate(self._envs):
            obs[i] = env.reset(seed=seed + i)[0]
        self._steps[:] = 0
        self._resetting[:] = False
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs = np.empty((self.n, self.obs_dim), np.float32)
        reward = np.zeros(self.n, np.float32)
        terminated = np.zeros(self.n, np.bool_)
        for i, env in enumerate(self._envs):
            if self._resetting[i]:
                obs[i] = env.reset()[0]
                self._steps[i] = 0
            else:
                obs[i], reward[i], terminated[i] = env.step(int(actions[i]))[:3]
                self._steps[i] += 1
        truncated = (self._steps >= self.max_episode_steps) & ~self._resetting
        self._resetting = terminated | truncated
        return obs, reward, terminated, truncated

    @property
    def resetting(self) -> np.ndarray:
        return self._resetting

    def get_state(self) -> dict[str, np.ndarray]:
        """``physics`` (n, 4) float64, ``steps`` (n,) int64, ``resetting`` (n,) bool, ``rng`` (n, 6) uint64.

        An instance's physics right after a reset is float32 in gymnasium; it is kept as float64,
        which holds the same values, and every step computes in float64 either way."""
        return {
            "physics": np.stack([np.asarray(env.state, np.float64) for env in self._envs]),
            "steps": self._steps.copy(),
            "resetting": self._resetting.copy(),
            "rng": np.stack([rng_to_array(env.np_random) for env in self._envs]),
        }

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        check_state(state, self.get_state())
        for env, physics, rng in zip(self._envs, state["physics"], state["rng"]):
            env.state = np.array(physics, np.float64)
            rng_from_array(env.np_random, rng)
        self._steps = np.array(state["steps"], np.int64)
        self._resetting = np.array(state["resetting"], np.bool_)


ENVIRONMENTS = {"CartPole-v1": CartPoleBatch, "Acrobot-v1": lambda n: InstanceBatch("Acrobot-v1", n)}


def make_batch(env_id: str, n: int) -> EnvBatch:
    """A batch of ``n`` environments ``env_id`` (a key of ``ENVIRONMENTS``), not yet reset."""
    if env_id not in ENVIRONMENTS:
        raise ConfigError(f"trainable.env: must be one of {', '.join(ENVIRONMENTS)}, got {env_id!r}")
    return ENVIRONMENTS[env_id](n)
