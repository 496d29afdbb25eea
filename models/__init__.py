"""Numpy networks from modules, losses, optimizers, data sets and the built-in trainables."""

from models.toy import ToyQuadratic

__all__ = ["ToyQuadratic"]
