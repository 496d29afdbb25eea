"""Numpy networks from modules, losses, optimizers, data sets and the built-in trainables."""

from models.datasets import Dataset, load_dataset
from models.mlp import MLPClassifier
from models.noisy_quadratic import NoisyQuadratic
from models.optim import SGD, Adam
from models.sequential import Sequential
from models.toy import ToyQuadratic

__all__ = ["Adam", "Dataset", "MLPClassifier", "NoisyQuadratic", "SGD", "Sequential", "ToyQuadratic", "load_dataset"]
