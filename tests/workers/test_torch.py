"""The PyTorch adapter (workers/torch.py): random streams per member, exact state, hyperparameters,
modes, and a worker's device and threads, on real torch and real Ray actors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ray  # noqa: E402
from torch_trainables import NoisyRegression, Placed  # noqa: E402

from models.errors import ConfigError  # noqa: E402
from workers import TrainableSpec, Worker  # noqa: E402
from workers.actor import WorkItem  # noqa: E402
from workers.torch import TorchTrainable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HP = {"lr": 0.05}


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_imports_without_torch_and_using_it_says_how_to_install_it_in_one_line(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        from workers.torch import TorchTrainable

        class Net(TorchTrainable):
            pass

        try:
            Net({{}}, 0)
        except Exception as exc:
            print(type(exc).__name__, exc, file=sys.stderr)
        from pbt.cli import main
        sys.exit(main(["run", "examples/torch_digits.toml", "--out", {str(tmp_path / "run")!r}]))
    """)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        'ConfigError trainable: PyTorch is not installed: pip install -e ".[torch]"',
        "pbt: error: examples/torch_digits.toml: trainable.name: cannot import module 'examples.torch_cnn' "
        '(import of torch halted; None in sys.modules); PyTorch is not installed: pip install -e ".[torch]"']
    assert not (tmp_path / "run").exists()


def test_state_round_trip_through_npz_is_bit_identical_with_adam_and_two_param_groups(tmp_path):
    a = NoisyRegression(HP, 3, optimizer="adam")
    a.train(7)
    np.savez(tmp_path / "s.npz", **a.get_state())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    assert {"optimizer.state.0.step", "optimizer.state.0.exp_avg", "optimizer.state.1.exp_avg_sq", "rng.torch",
            "rng.numpy", "rng.python", "model.weight"} <= set(state) and int(state["step"]) == 7
    b = NoisyRegression(HP, 11, optimizer="adam")
    b.set_state(state)
    assert b.step == 7 and b.evaluate() == a.evaluate()
    a.train(9)
    b.train(9)
    assert b.evaluate() == a.evaluate() and _equal_states(a.get_state(), b.get_state())


def test_members_interleaved_on_one_worker_never_move_each_others_streams(ray_session):
    """Member 0 alone on one worker, and interleaved with member 1 on another: the same states."""
    spec = TrainableSpec(NoisyRegression, {})

    def run(worker, items):
        refs = worker.run.options(num_returns=len(items) + 1).remote(items)
        reports = ray.get(refs[0])
        assert all(r.error is None and not r.reloaded for r in reports[len(items) // 2:])  # held, never reloaded
        return reports, ray.get(refs[1:])

    alone, together = Worker.remote("alone", spec), Worker.remote("together", spec)
    try:
        a_reports, a_states = run(alone, [WorkItem(0, 5, HP, None, 0, 6, 3), WorkItem(0, 5, HP, 0, 1, 6, 3)])
        t_reports, t_states = run(together, [
            WorkItem(0, 5, HP, None, 0, 6, 3), WorkItem(1, 6, HP, None, 1, 6, 3),
            WorkItem(0, 5, HP, 0, 2, 6, 3), WorkItem(1, 6, HP, 1, 3, 6, 3)])
    finally:
        ray.kill(alone, no_restart=True)
        ray.kill(together, no_restart=True)
    assert _equal_states(a_states[1], t_states[2])
    assert a_reports[1].evaluations[-1][1] == t_reports[2].evaluations[-1][1]
    assert not np.array_equal(t_states[2]["model.weight"], t_states[3]["model.weight"])  # two members, two paths


def test_a_member_leaves_the_process_streams_as_it_found_them():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = random.getstate(), np.random.get_state(), torch.get_rng_state()
    member = NoisyRegression(HP, 0)
    member.train(5)
    member.evaluate()
    twin = NoisyRegression(HP, 9)
    twin.set_state(member.get_state())
    twin.set_hparams({"lr": 0.01})
    after = random.getstate(), np.random.get_state(), torch.get_rng_state()
    assert after[0] == before[0] and torch.equal(after[2], before[2])
    assert all(np.array_equal(x, y) for x, y in zip(after[1], before[1]))


def test_set_hparams_sets_every_param_group_keeps_the_rest_and_touches_no_weight_or_slot():
    member = NoisyRegression({"lr": 0.1, "noise": 1.0}, 0, optimizer="adam")
    member.train(5)
    before = member.get_state()
    member.set_hparams({"lr": 0.02, "beta1": 0.5, "weight_decay": 0.01, "noise": 0.0})
    assert [(g["lr"], g["betas"], g["weight_decay"]) for g in member.optimizer.param_groups] == \
        [(0.02, (0.5, 0.999), 0.01)] * 2
    assert member.hparams == {"lr": 0.02, "noise": 0.0, "beta1": 0.5, "weight_decay": 0.01}
    after = member.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before if k != "optimizer")  # weights, slots, streams
    quiet = NoisyRegression({"lr": 0.1, "noise": 1.0}, 0, optimizer="adam")
    quiet.train(5)
    quiet.set_hparams({"noise": 0.0})  # read by train_step only
    loud = NoisyRegression({"lr": 0.1, "noise": 1.0}, 0, optimizer="adam")
    loud.train(5)
    quiet.train(3)
    loud.train(3)
    assert quiet.evaluate() != loud.evaluate()


def test_a_state_carries_the_param_groups_but_not_the_receivers_hyperparameters():
    donor = NoisyRegression({"lr": 0.1}, 0, optimizer="adam")
    donor.train(4)
    for group in donor.optimizer.param_groups:
        group["eps"] = 1e-3  # as a schedule would: a group value that is no hyperparameter
    receiver = NoisyRegression({"lr": 0.01}, 1, optimizer="adam")
    receiver.set_state(donor.get_state())
    assert [(g["lr"], g["eps"], g["betas"]) for g in receiver.optimizer.param_groups] == [(0.01, 1e-3, (0.9, 0.999))] * 2


def test_train_step_runs_in_train_mode_and_evaluate_in_eval_mode_without_gradients():
    member = NoisyRegression(HP, 0)
    member.model.eval()
    member.train(2)
    metrics = member.evaluate()
    assert member.modes == [("train_step", True, True)] * 2 + [("evaluate", False, False)]
    assert member.model.training and torch.is_grad_enabled()
    assert all(type(v) is float for v in metrics.values())  # a tensor the user returned comes back a float


def test_an_evaluate_under_a_decorator_of_its_own_still_runs_in_eval_mode():
    class Decorated(NoisyRegression):
        @torch.no_grad()
        def evaluate(self):
            self.modes.append(("evaluate", self.model.training, torch.is_grad_enabled()))
            return {"x": torch.tensor(1.0)}

    member = Decorated(HP, 0)
    assert member.evaluate() == {"x": 1.0} and member.modes == [("evaluate", False, False)]


def test_what_a_user_gets_wrong_is_said_in_one_line():
    with pytest.raises(ConfigError, match=r"^trainable.colour: unknown; expected one of optimizer, features$"):
        NoisyRegression(HP, 0, colour="red")

    class ModelOnly(NoisyRegression):
        def build(self, hparams, seed):
            return super().build(hparams, seed)[0]

    with pytest.raises(TypeError, match=r"ModelOnly.build must return \(model, optimizer\): .* got Linear$"):
        ModelOnly(HP, 0)

    class Cursor(NoisyRegression):
        def extra_state(self):
            return {"cursor": np.array(3)}

    with pytest.raises(NotImplementedError, match=r"Cursor.extra_state\(\) returned cursor: define load_extra_state"):
        Cursor(HP, 0).set_state(Cursor(HP, 1).get_state())
    with pytest.raises(ConfigError, match=r"^state: missing array\(s\) model.bias, model.weight$"):
        NoisyRegression(HP, 0).set_state({k: v for k, v in NoisyRegression(HP, 1).get_state().items()
                                          if not k.startswith("model.")})


def test_a_bfloat16_model_travels_as_its_bits():
    class Half(NoisyRegression):
        def build(self, hparams, seed, **settings):
            model, _ = super().build(hparams, seed, **settings)
            model = model.to(torch.bfloat16)
            return model, torch.optim.SGD(model.parameters(), lr=hparams["lr"])

        def train_step(self):
            x = torch.randn(16, self.target.shape[0], dtype=torch.bfloat16)
            loss = (self.model(x) ** 2).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    a = Half(HP, 0)
    a.train(3)
    state = a.get_state()
    assert state["model.weight"].dtype == np.int16
    b = Half(HP, 1)
    b.set_state(state)
    assert torch.equal(a.model.weight, b.model.weight) and b.model.weight.dtype == torch.bfloat16


def test_a_worker_gives_torch_one_thread_per_cpu(ray_session):
    threads = []
    for cpus in (1, 2):
        worker = Worker.options(num_cpus=cpus).remote("w", TrainableSpec(Placed, {}))
        try:
            reports = ray.get(worker.run.options(num_returns=2).remote([WorkItem(0, 0, HP, None, 0, 2, 2)])[0])
        finally:
            ray.kill(worker, no_restart=True)
        metrics = reports[0].evaluations[-1][1]
        threads.append(metrics["threads"])
        assert metrics["cuda"] == 0.0 and metrics["gpus"] == 0.0
    assert threads == [1, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason=f"no CUDA device here (torch {torch.__version__})")
def test_a_worker_given_a_gpu_puts_the_model_on_cuda(ray_session):
    worker = Worker.options(num_cpus=0.5, num_gpus=1).remote("g", TrainableSpec(Placed, {}))
    try:
        reports = ray.get(worker.run.options(num_returns=2).remote([WorkItem(0, 0, HP, None, 0, 2, 2)])[0])
    finally:
        ray.kill(worker, no_restart=True)
    assert reports[0].error is None and reports[0].evaluations[-1][1]["cuda"] == 1.0


def test_the_adapter_is_the_whole_trainable_shape():
    from workers.trainable import Trainable

    assert isinstance(NoisyRegression(HP, 0), Trainable) and issubclass(NoisyRegression, TorchTrainable)


@pytest.mark.parametrize("strategy", ["grid", "random", "pbt"])
def test_the_torch_example_runs_under_every_strategy(ray_session, tmp_path, monkeypatch, strategy):
    import tomllib

    from pbt.api import run
    from pbt.config import parse_config
    from search.store import load_run

    monkeypatch.syspath_prepend(str(ROOT))  # as `pbt run` from the repository's root
    raw = tomllib.loads((ROOT / "examples" / "torch_digits.toml").read_text())
    raw["trainable"].update(channels=4, hidden=16)
    raw["budget"].update(population=4, steps=200, eval_every=50)
    raw["grid"] = {"lr": [0.01, 0.1], "momentum": [0.9]}  # x 2 weight decays: a grid of 4
    raw["pbt"].update(interval=50, burn_in=50)
    summary = run(parse_config(raw, "torch_digits"), strategy=strategy, seed=0, out=tmp_path / "run", workers=2)
    results = load_run(tmp_path / "run").results
    assert sorted(zip(results["member"], results["step"])) == [(m, s) for m in range(4) for s in (50, 100, 150, 200)]
    assert summary["budget_steps"] == 4 * 200 and summary["best"]["objective"] > 0.5
    assert set(summary["best"]["test"]) == {"test_accuracy", "test_loss"}
