"""The worker interface, the Ray actor that hosts trainables, the pool and the cluster connection."""

from workers.actor import Report, StateUnavailable, TrainableSpec, Worker
from workers.cluster import connect
from workers.pool import WorkerPool
from workers.trainable import Trainable, resolve_trainable

__all__ = [
    "Report", "StateUnavailable", "Trainable", "TrainableSpec", "Worker", "WorkerPool", "connect",
    "resolve_trainable",
]
