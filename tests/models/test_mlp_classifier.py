"""MLPClassifier: it learns, its state is exact, its settings and hyperparameters are validated."""

import numpy as np
import pytest

from models import Dataset, MLPClassifier
from models.errors import ConfigError

PAPER = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def test_digits_reaches_95_percent_validation_accuracy_within_1500_steps():
    mlp = MLPClassifier(PAPER, seed=0, dataset="digits", hidden=[128], batch_size=64)
    first = mlp.evaluate()
    assert first["val_accuracy"] < 0.3
    mlp.train(1500)
    metrics = mlp.evaluate()
    assert metrics["val_accuracy"] >= 0.95, metrics
    assert metrics["val_loss"] < first["val_loss"] / 5
    assert all(type(v) is float for v in metrics.values())
    assert set(metrics) == {"val_loss", "val_accuracy", "train_loss"}  # the test split only on request:
    tested = mlp.test()
    assert set(tested) == {"test_loss", "test_accuracy"} and tested["test_accuracy"] >= 0.93
    assert mlp.evaluate() == metrics and mlp.test() == tested  # read-only



def test_worker_settings_carry_the_data_set_not_its_name(tmp_path):
    """Loaded on the driver: a node needs neither scikit-learn (digits) nor the driver's .npz file."""
    digits = MLPClassifier.worker_settings({"dataset": "digits", "hidden": [8]})
    assert isinstance(digits["dataset"], Dataset) and digits["hidden"] == [8]
    assert digits["dataset"].X_train.shape[1] == 64
    assert isinstance(MLPClassifier.worker_settings({})["dataset"], Dataset)  # the default, digits
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", X=rng.normal(size=(200, 3)), y=rng.integers(0, 2, 200))
    mine = MLPClassifier.worker_settings({"dataset": str(tmp_path / "mine.npz")})
    (tmp_path / "mine.npz").unlink()  # gone, as it is on a node that never had it
    assert MLPClassifier(PAPER, 0, **mine).data.n_features == 3

def test_two_hidden_units_learn_xor_and_no_hidden_layer_does_not():
    hp = {"lr": 0.1, "momentum": 0.9}
    two = MLPClassifier(hp, seed=0, dataset="xor", hidden=[2], activation="tanh", batch_size=32)
    linear = MLPClassifier(hp, seed=0, dataset="xor", hidden=[], batch_size=32)
    for m in (two, linear):
        m.train(1500)
    assert two.evaluate()["val_accuracy"] >= 0.98
    assert linear.evaluate()["val_accuracy"] <= 0.8


def test_sixteen_hidden_units_learn_the_quadrants():
    mlp = MLPClassifier({"lr": 0.1, "momentum": 0.9}, seed=0, dataset="quadrants", hidden=[16], batch_size=32)
    mlp.train(1500)
    assert mlp.evaluate()["val_accuracy"] >= 0.97


def _weights(m):
    return {k: v for k, v in m.get_state().items() if k.startswith(("param.", "opt."))}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_state_resumes_bit_identically_in_an_instance_of_another_seed(dropout):
    hp = {**PAPER, "dropout": dropout}
    settings = {"hidden": [32], "batch_size": 50}  # 1078 / 50: the epoch boundary falls inside train(b)
    whole = MLPClassifier(hp, seed=1, **settings)
    whole.train(17 + 13)
    first = MLPClassifier(hp, seed=1, **settings)
    first.train(17)
    second = MLPClassifier(hp, seed=99, **settings)
    assert not np.array_equal(second.get_state()["param.0.W"], first.get_state()["param.0.W"])
    second.set_state(first.get_state())
    second.train(13)
    a, b = whole.get_state(), second.get_state()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert whole.evaluate() == second.evaluate()


def test_state_holds_weights_slots_counters_and_random_state():
    mlp = MLPClassifier({**PAPER, "dropout": 0.2}, seed=0, hidden=[16])
    mlp.train(3)
    state = mlp.get_state()
    assert {"param.0.W", "param.0.b", "param.3.W", "opt.velocity.0.W", "step", "rng.data",
            "rng.dropout", "data.order", "data.cursor", "train_loss_ema"} <= set(state)
    assert int(state["step"]) == 3 and state["rng.data"].dtype == np.uint64
    state["param.0.W"][...] = 0  # a copy, not the live weights
    assert np.any(mlp.get_state()["param.0.W"] != 0)


def test_set_hparams_changes_hyperparameters_not_weights_or_slots():
    mlp = MLPClassifier(PAPER, seed=0, hidden=[16])
    mlp.train(5)
    before = _weights(mlp)
    mlp.set_hparams({"lr": 0.01, "dropout": 0.5})
    assert mlp.hparams == {**PAPER, "lr": 0.01, "dropout": 0.5}
    after = _weights(mlp)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert mlp.optimizer.lr == 0.01 and mlp.net.modules[2].p == 0.5  # Linear, ReLU, Dropout, Linear


def test_evaluate_is_read_only_and_train_loss_tracks_minibatches():
    mlp = MLPClassifier(PAPER, seed=0, hidden=[32])
    mlp.train(200)
    state = mlp.get_state()
    one, two = mlp.evaluate(), mlp.evaluate()
    assert one == two
    assert all(np.array_equal(v, mlp.get_state()[k]) for k, v in state.items())
    assert 0 < one["train_loss"] < 0.5


def test_set_state_rejects_another_configuration():
    small = MLPClassifier(PAPER, seed=0, hidden=[16])
    large = MLPClassifier(PAPER, seed=0, hidden=[32])
    with pytest.raises(ConfigError, match=r"state\.param\.0\.W: expected shape \(64, 32\), got \(64, 16\)"):
        large.set_state(small.get_state())
    state = small.get_state()
    del state["rng.data"]
    with pytest.raises(ConfigError, match="missing array"):
        small.set_state(state)


@pytest.mark.parametrize("kwargs,message", [
    ({"hparams": {"lr": 0.1, "lrr": 1}}, "space.lrr: unknown"),
    ({"hparams": {"lr": 0}}, "space.lr: must be a finite number > 0, got 0"),
    ({"hparams": {"momentum": 1.0}}, "space.momentum: must be a finite number in [0, 1), got 1.0"),
    ({"hparams": {"dropout": "half"}}, "space.dropout: must be"),
    ({"hidden": [128, 0]}, "trainable.hidden: must be an integer >= 1, got 0"),
    ({"hidden": 128}, "trainable.hidden: must be a list"),
    ({"activation": "gelu"}, "trainable.activation: must be one of"),
    ({"batch_size": 5000}, "trainable.batch_size: must be <= the 1078 training samples"),
    ({"batch_size": 1.5}, "trainable.batch_size: must be an integer"),
    ({"optimizer": "adam"}, "trainable.optimizer: unknown"),
    ({"seed": -1}, "seed: must be an integer >= 0"),
    ({"hparams": [0.1]}, "space: hyperparameters must be a mapping"),
])
def test_bad_settings_and_hyperparameters_are_one_line_config_errors(kwargs, message):
    args = {"hparams": PAPER, "seed": 0, **kwargs}
    with pytest.raises(ConfigError) as err:
        MLPClassifier(args.pop("hparams"), args.pop("seed"), **args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_numpy_scalars_are_accepted():
    mlp = MLPClassifier({"lr": np.float32(0.05), "momentum": np.float64(0.5)}, np.int64(3),
                        hidden=[np.int64(8)], batch_size=np.int32(16))
    assert mlp.hparams["lr"] == pytest.approx(0.05) and type(mlp.hparams["lr"]) is float
    assert mlp.batch_size == 16 and type(mlp.batch_size) is int


def test_set_hparams_validates_too():
    mlp = MLPClassifier(PAPER, seed=0, hidden=[8])
    with pytest.raises(ConfigError, match="space.weight_decay"):
        mlp.set_hparams({"weight_decay": -1.0})
    assert mlp.hparams == PAPER | {"dropout": 0.0}
