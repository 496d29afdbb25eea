"""A small convolutional network on scikit-learn's 8×8 digits, in PyTorch, tuned by pbt-search.

    pbt run examples/torch_digits.toml [--strategy grid|random]      # from the repository's root

``TorchTrainable`` does the rest of the Trainable shape: checkpoints of the model, the optimizer,
the step and the random streams, hyperparameters applied to the optimizer, train and eval modes.
The data cursor is the one piece of state it cannot see: ``extra_state`` hands it over.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.datasets import load_dataset
from workers.torch import TorchTrainable


class DigitsCNN(TorchTrainable):
    """A 3×3 convolution, a 2×2 max-pool and two linear layers; SGD with momentum and weight decay.

    The data split is the built-in MLP's (60/20/20 with seed 0, standardised), so the two examples
    are scored on the same validation set. Minibatches walk a fresh permutation each epoch.
    """

    def build(self, hparams, seed, *, channels=16, hidden=64, batch_size=64):
        data = load_dataset("digits", 0)

        def images(X):
            return torch.tensor(X).reshape(-1, 1, 8, 8).to(self.device)

        self.X_train, self.y_train = images(data.X_train), torch.tensor(data.y_train).to(self.device)
        self.X_val, self.y_val = images(data.X_val), torch.tensor(data.y_val).to(self.device)
        self.X_test, self.y_test = images(data.X_test), torch.tensor(data.y_test).to(self.device)
        self.batch_size = batch_size
        self.order, self.cursor = torch.randperm(len(self.y_train)), 0

        model = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8×8 -> channels × 4×4
            nn.Flatten(), nn.Linear(channels * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10),
        ).to(self.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=hparams["lr"], momentum=hparams.get("momentum", 0.9),
                                    weight_decay=hparams.get("weight_decay", 0.0))
        return model, optimizer

    def train_step(self):
        if self.cursor + self.batch_size > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.order)), 0
        batch = self.order[self.cursor:self.cursor + self.batch_size].to(self.device)
        self.cursor += self.batch_size
        loss = F.cross_entropy(self.model(self.X_train[batch]), self.y_train[batch])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def evaluate(self):
        return self._scores(self.X_val, self.y_val, "val")

    def test(self):
        return self._scores(self.X_test, self.y_test, "test")

    def _scores(self, X, y, split):
        logits = self.model(X)
        return {f"{split}_loss": F.cross_entropy(logits, y).item(),
                f"{split}_accuracy": (logits.argmax(1) == y).float().mean().item()}

    def extra_state(self):
        return {"order": self.order, "cursor": np.array(self.cursor)}

    def load_extra_state(self, state):
        self.order, self.cursor = torch.from_numpy(state["order"]), int(state["cursor"])
