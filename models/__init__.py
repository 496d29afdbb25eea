"""Numpy networks from modules, losses, optimizers, data sets, environments and the built-in trainables."""

from models.actor_critic import ActorCritic
from models.datasets import Dataset, load_dataset
from models.mlp import MLPClassifier
from models.noisy_quadratic import NoisyQuadratic
from models.optim import SGD, Adam
from models.sequential import Sequential
from models.toy import ToyQuadratic

__all__ = ["ActorCritic", "Adam", "Dataset", "MLPClassifier", "NoisyQuadratic", "SGD", "Sequential", "ToyQuadratic", "load_dataset"]
