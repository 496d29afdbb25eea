"""Training throughput of one a2c member: environment steps per second on one core, ours and PyTorch's.

Ours is ``models.ActorCritic.train``. PyTorch's is the same algorithm written the usual PyTorch way:
the same actor and critic (two tanh MLPs, the policy head scaled to start near uniform), the same
``n_envs``, ``rollout`` and ``hidden``, the same vectorised environments (``models.environments``),
actions sampled from the softmax, GAE, the same loss, Adam (eps 1e-5) and global gradient-norm
clipping at 0.5. Both on one thread (one BLAS thread, ``torch.set_num_threads(1)``).

Prints ONE JSON line: env steps/s of each (the best of ``--repeats`` timed runs of ``--updates``
updates, taken alternately after a warm-up; evaluation is not timed), the ratio ours/PyTorch, and
each one's greedy validation return after all the runs (the two learn, not only run). Without
torch, ``torch_version`` is null and only ours is measured (``pip install torch==2.13.0``).

    python bench/rl_throughput.py [--env CartPole-v1] [--updates 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from models import ActorCritic
from models.actor_critic import (ADAM_EPS, HPARAM_DEFAULTS, MAX_GRAD_NORM, POLICY_HEAD_SCALE, VALIDATION_EPISODES,
                                 VALIDATION_SEED)
from models.environments import make_batch

HPARAMS = HPARAM_DEFAULTS  # lr 7e-4, entropy_coef 0.01, gamma 0.99, gae_lambda 0.95, value_coef 0.5
SETTINGS = {"n_envs": 8, "rollout": 8, "hidden": [64, 64]}
Member = tuple[Callable[[], None], Callable[[], float]]  # (train the timed updates, greedy validation return)


def ours(env: str, updates: int) -> Member:
    """A warmed-up ActorCritic: training ``updates`` updates, and its validation return."""
    member = ActorCritic(HPARAMS, 0, env=env, **SETTINGS)
    member.train(50)
    return (lambda: member.train(updates)), (lambda: member.evaluate()["val_return"])


def torch_run(env: str, updates: int) -> tuple[Member, str]:
    """The same algorithm in PyTorch (one thread); raises ImportError without torch."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    envs = make_batch(env, SETTINGS["n_envs"])
    n, T, k = envs.n, SETTINGS["rollout"], envs.n_actions

    def mlp(d_out: int, head_scale: float) -> torch.nn.Sequential:
        sizes = [envs.obs_dim, *SETTINGS["hidden"]]
        layers: list[torch.nn.Module] = []
        for d_in, width in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(d_in, width), torch.nn.Tanh()]
        head = torch.nn.Linear(sizes[-1], d_out)
        with torch.no_grad():
            head.weight.mul_(head_scale)
        return torch.nn.Sequential(*layers, head)

    actor, critic = mlp(k, POLICY_HEAD_SCALE), mlp(1, 1.0)
    parameters = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(parameters, lr=HPARAMS["lr"], eps=ADAM_EPS)
    gamma, lam = HPARAMS["gamma"], HPARAMS["gae_lambda"]
    state = {"obs": torch.from_numpy(envs.reset(seed=0))}

    def update() -> None:
        obs = torch.empty((T, n, envs.obs_dim))
        actions = torch.empty((T, n), dtype=torch.int64)
        rewards, values = torch.empty((T, n)), torch.empty((T + 1, n))
        terminated, ended, real = (torch.empty((T, n), dtype=torch.bool) for _ in range(3))
        current = state["obs"]
        with torch.no_grad():
            for t in range(T):
                real[t] = torch.from_numpy(~envs.resetting)
                values[t] = critic(current)[:, 0]
                actions[t] = torch.multinomial(torch.softmax(actor(current), dim=1), 1)[:, 0]
                obs[t] = current
                step_obs, reward, term, trunc = envs.step(actions[t].numpy())
                current = torch.from_numpy(step_obs)
                rewards[t], terminated[t], ended[t] = (torch.from_numpy(a) for a in (reward, term, term | trunc))
            values[T] = critic(current)[:, 0]
            advantages = torch.empty((T, n))
            running = torch.zeros(n)
            for t in reversed(range(T)):
                delta = rewards[t] + gamma * values[t + 1] * ~terminated[t] - values[t]
                running = delta + gamma * lam * ~ended[t] * running
                advantages[t] = running
            returns = advantages + values[:T]
        state["obs"] = current
        x, a, adv, ret = obs[real], actions[real], advantages[real], returns[real]
        log_probs = torch.log_softmax(actor(x), dim=1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        policy_loss = -(adv * log_probs.gather(1, a[:, None])[:, 0]).mean() - HPARAMS["entropy_coef"] * entropy
        value_loss = 0.5 * ((critic(x)[:, 0] - ret) ** 2).mean()
        loss = policy_loss + HPARAMS["value_coef"] * value_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        opt.step()

    validation = make_batch(env, VALIDATION_EPISODES)

    def greedy_return() -> float:
        obs, done = validation.reset(VALIDATION_SEED), np.zeros(validation.n, np.bool_)
        returns = np.zeros(validation.n)
        with torch.no_grad():
            while not done.all():
                action = actor(torch.from_numpy(obs)).argmax(dim=1).numpy()
                obs, reward, term, trunc = validation.step(action)
                returns += np.where(done, 0.0, reward)
                done |= term | trunc
        return float(returns.mean())

    for _ in range(50):
        update()

    def train() -> None:
        for _ in range(updates):
            update()

    return (train, greedy_return), torch.__version__


def timed(train: Callable[[], None], env_steps: int) -> float:
    """Env steps per second of one timed run of ``train``."""
    start = time.perf_counter()
    train()
    return env_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", choices=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env_steps = args.updates * SETTINGS["n_envs"] * SETTINGS["rollout"]
    with threadpool_limits(limits=1):
        runners = {"ours": ours(args.env, args.updates)}
        result: dict[str, object] = {"env": args.env, **SETTINGS, "network": "actor and critic, tanh MLPs",
                                     "threads": 1, "updates": args.updates, "env_steps": env_steps,
                                     "repeats": args.repeats}
        try:
            runners["torch"], result["torch_version"] = torch_run(args.env, args.updates)
        except ImportError:
            result["torch_version"] = None
        rates = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, (train, _) in runners.items():
                rates[name].append(timed(train, env_steps))
        for name, (_, validation_return) in runners.items():
            result[f"{name}_env_steps_per_s"] = round(max(rates[name]), 1)
            result[f"{name}_val_return"] = round(validation_return(), 1)
    if "torch" in runners:
        result["ratio_ours_to_torch"] = round(max(rates["ours"]) / max(rates["torch"]), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
