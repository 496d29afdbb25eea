"""The built-in classifier trainable: a numpy MLP trained by SGD with momentum (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models import checks
from models.activations import ACTIVATIONS
from models.datasets import Dataset, load_dataset
from models.errors import ConfigError
from models.functional import cross_entropy_and_accuracy
from models.layers import Dropout, Linear
from models.losses import SoftmaxCrossEntropy
from models.optim import SGD
from models.sequential import Sequential
from models.state import check_state, rng_from_array, rng_to_array

SPLIT_SEED = 0  # every member of a search sees the same data split, whatever its own seed
HPARAM_DEFAULTS = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "dropout": 0.0}
HPARAM_BOUNDS = {
    "lr": {"lo": 0.0, "lo_open": True},
    "momentum": {"lo": 0.0, "hi": 1.0, "hi_open": True},
    "weight_decay": {"lo": 0.0},
    "dropout": {"lo": 0.0, "hi": 1.0, "hi_open": True},
}
TRAIN_LOSS_DECAY = 0.98  # the reported train_loss averages roughly the last 50 minibatches


class MLPClassifier:
    """A fully connected classifier: Linear → activation → Dropout, per hidden width, → Linear.

    Settings (the config's ``[trainable]`` table): ``dataset`` (built-in name or ``.npz`` path, or
    the ``Dataset`` that ``worker_settings`` loaded from one), ``hidden`` (widths), ``activation``
    (relu, leaky_relu, sigmoid, tanh), ``batch_size``.
    Hyperparameters: ``lr``, ``momentum``, ``weight_decay``, ``dropout`` (defaults 0.01, 0.9,
    0, 0). Float32. Minibatches walk a fresh random permutation of the training split each epoch
    (the incomplete tail is skipped). The seed decides initial weights, data order and dropout.
    """

    def __init__(self, hparams: Mapping[str, Any], seed: int, *, dataset: str | Dataset = "digits",
                 hidden: Sequence[int] = (128,), activation: str = "relu", batch_size: int = 64,
                 **unknown: Any) -> None:
        checks.reject_unknown(unknown, ("dataset", "hidden", "activation", "batch_size"), "trainable")
        seed = checks.seed(seed)
        self.hparams = checks.hparams(hparams, HPARAM_DEFAULTS, HPARAM_BOUNDS)
        if not isinstance(hidden, (list, tuple)):
            raise ConfigError(f"trainable.hidden: must be a list of layer widths, got {hidden!r}")
        widths = [checks.integer("trainable.hidden", h, lo=1) for h in hidden]
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ConfigError(f"trainable.activation: must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        batch_size = checks.integer("trainable.batch_size", batch_size, lo=1)
        self.data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, SPLIT_SEED)
        n_train = len(self.data.y_train)
        if batch_size > n_train:
            source = repr(dataset) if isinstance(dataset, str) else "the data set"
            raise ConfigError(f"trainable.batch_size: must be <= the {n_train} training samples "
                              f"of {source}, got {batch_size}")
        self.batch_size = batch_size

        init_rng, self._data_rng, self._dropout_rng = np.random.default_rng(seed).spawn(3)
        init = "he" if activation in ("relu", "leaky_relu") else "glorot"
        sizes = [self.data.n_features, *widths, self.data.n_classes]
        modules = []
        self._dropouts = []
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            modules.append(Linear(d_in, d_out, init_rng, init=init, input_grad=i > 0))
            if i < len(widths):
                self._dropouts.append(Dropout(0.0, self._dropout_rng))
                modules += [ACTIVATIONS[activation](), self._dropouts[-1]]
        self.net = Sequential(modules)
        self.loss = SoftmaxCrossEntropy()
        self.optimizer = SGD(self.net.params, self.net.grads, lr=self.hparams["lr"])
        self.set_hparams(self.hparams)

        self._order = self._data_rng.permutation(n_train)
        self._cursor = 0
        self._step = 0
        self._loss_ema = 0.0  # bias-corrected like Adam's moments: ema / (1 - decay**step)

    @classmethod
    def worker_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """``settings`` with the data set loaded and split here, on the driver: the workers get its
        arrays, so a node needs neither scikit-learn (digits) nor the driver's ``.npz`` file."""
        dataset = settings.get("dataset", "digits")
        if isinstance(dataset, str):
            dataset = load_dataset(dataset, SPLIT_SEED)
        return {**settings, "dataset": dataset}

    def train(self, steps: int) -> None:
        """``steps`` minibatch SGD steps."""
        checks.integer("steps", steps, lo=0)
        X, y, bs = self.data.X_train, self.data.y_train, self.batch_size
        net, loss, opt = self.net, self.loss, self.optimizer
        ema = self._loss_ema
        for _ in range(steps):
            if self._cursor + bs > len(self._order):
                self._order = self._data_rng.permutation(len(self._order))
                self._cursor = 0
            idx = self._order[self._cursor:self._cursor + bs]
            self._cursor += bs
            value = loss.forward(net.forward(X[idx]), y[idx])
            net.backward(loss.backward())
            opt.step()
            ema = TRAIN_LOSS_DECAY * ema + (1.0 - TRAIN_LOSS_DECAY) * value
        self._loss_ema = ema
        self._step += steps

    def evaluate(self) -> dict[str, float]:
        """``val_loss``, ``val_accuracy`` (a full pass over the validation split in evaluation mode)
        and ``train_loss``: the exponential moving average (decay 0.98, bias-corrected) of the
        training minibatch losses, which costs nothing; before any step, a full pass over the
        training split. Read-only: does not change the state.
        """
        val_loss, val_acc = self._split_metrics(self.data.X_val, self.data.y_val)
        if self._step:
            train_loss = self._loss_ema / (1.0 - TRAIN_LOSS_DECAY ** self._step)
        else:
            train_loss = self._split_metrics(self.data.X_train, self.data.y_train)[0]
        return {"val_loss": val_loss, "val_accuracy": val_acc, "train_loss": float(train_loss)}

    def test(self) -> dict[str, float]:
        """``test_loss``, ``test_accuracy``: a full pass over the test split in evaluation mode.
        Reported for a member's final weights only; never used to choose. Read-only."""
        test_loss, test_acc = self._split_metrics(self.data.X_test, self.data.y_test)
        return {"test_loss": test_loss, "test_accuracy": test_acc}

    def _split_metrics(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``(X, y)`` in evaluation mode (no dropout)."""
        self.net.set_training(False)
        try:
            return cross_entropy_and_accuracy(self.net.forward(X), y)
        finally:
            self.net.set_training(True)

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of: ``param.*`` (weights), ``buffer.*``, ``opt.*`` (optimizer slots), ``step``,
        ``data.order``, ``data.cursor``, ``train_loss_ema``, ``rng.data``, ``rng.dropout``."""
        state = {f"param.{k}": v.copy() for k, v in self.net.params.items()}
        state.update({f"buffer.{k}": v.copy() for k, v in self.net.buffers.items()})
        state.update({f"opt.{k}": v.copy() for k, v in self.optimizer.slots.items()})
        state.update({
            "step": np.array(self._step, np.int64),
            "data.order": self._order.copy(),
            "data.cursor": np.array(self._cursor, np.int64),
            "train_loss_ema": np.array(self._loss_ema, np.float64),
            "rng.data": rng_to_array(self._data_rng),
            "rng.dropout": rng_to_array(self._dropout_rng),
        })
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of an MLPClassifier with the same settings."""
        check_state(state, self.get_state())
        order = np.asarray(state["data.order"])
        if not np.array_equal(np.sort(order), np.arange(len(order))):
            raise ConfigError("state.data.order: not a permutation of the training split")
        for prefix, arrays in (("param.", self.net.params), ("buffer.", self.net.buffers),
                               ("opt.", self.optimizer.slots)):
            for k, v in arrays.items():
                v[...] = state[prefix + k]
        self._step = int(state["step"])
        self._order = order.astype(np.int64, copy=True)
        self._cursor = int(state["data.cursor"])
        self._loss_ema = float(state["train_loss_ema"])
        rng_from_array(self._data_rng, state["rng.data"])
        rng_from_array(self._dropout_rng, state["rng.dropout"])

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Change the given hyperparameters (others keep their values); weights and slots untouched."""
        self.hparams = checks.hparams(hparams, self.hparams, HPARAM_BOUNDS)
        self.optimizer.lr = self.hparams["lr"]
        self.optimizer.momentum = self.hparams["momentum"]
        self.optimizer.weight_decay = self.hparams["weight_decay"]
        for d in self._dropouts:
            d.p = self.hparams["dropout"]
