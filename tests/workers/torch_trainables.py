"""PyTorch trainables for the adapter's tests, written against ``TorchTrainable`` as a user would.

Importable by Ray workers (``tests/conftest.py`` puts this directory on ``PYTHONPATH``); kept apart
from ``trainables.py``, which must import without torch.
"""

from __future__ import annotations

import random

import numpy as np
import ray
import torch
from torch import nn

from workers.torch import TorchTrainable


class NoisyRegression(TorchTrainable):
    """A linear regression whose every step draws from Python's, numpy's and torch's global random
    streams, so a member whose streams another moved takes another path. Two param groups (the
    weights, the bias at a tenth of the rate and no momentum), SGD or Adam. ``noise`` (a
    hyperparameter no param group has) scales the label noise. ``modes`` records, per call, whether
    the model was in train mode and gradients were on."""

    def build(self, hparams, seed, *, optimizer="sgd", features=4):
        self.target = torch.linspace(-1.0, 1.0, features).reshape(features, 1)  # the data: the same for every seed
        self.modes: list[tuple[str, bool, bool]] = []
        model = nn.Linear(features, 1)
        groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": hparams["lr"] / 10}]
        if optimizer == "adam":
            return model, torch.optim.Adam(groups, lr=hparams["lr"])
        groups[1]["momentum"] = 0.0
        return model, torch.optim.SGD(groups, lr=hparams["lr"], momentum=0.9)

    def train_step(self):
        self.modes.append(("train_step", self.model.training, torch.is_grad_enabled()))
        x = torch.randn(16, self.target.shape[0])
        noise = random.gauss(0.0, 0.1) + np.random.normal(0.0, 0.1)
        y = x @ self.target + noise * self.hparams.get("noise", 1.0)
        loss = ((self.model(x) - y) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def evaluate(self):
        self.modes.append(("evaluate", self.model.training, torch.is_grad_enabled()))
        return {"error": ((self.model.weight.T - self.target) ** 2).sum(), "bias": self.model.bias.item()}


class Placed(NoisyRegression):
    """``NoisyRegression`` that also reports where it runs: torch's threads, CUDA or not, and the
    GPUs Ray gave its worker."""

    def evaluate(self):
        return {**super().evaluate(), "threads": torch.get_num_threads(), "cuda": self.device.type == "cuda",
                "gpus": len(ray.get_gpu_ids())}
