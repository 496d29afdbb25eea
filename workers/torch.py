"""Bring your own PyTorch model: ``TorchTrainable`` makes a model and its optimizer a Trainable (DESIGN §3).

A user subclasses it and writes three methods; the adapter provides the rest of the shape::

    class MyNet(TorchTrainable):
        def build(self, hparams, seed, **settings):  # -> (model, optimizer); data may be set up here
            ...
        def train_step(self) -> None:                 # one optimizer step
            ...
        def evaluate(self) -> dict[str, float]:       # validation metrics
            ...

torch is imported only when an adapter is constructed, so this module imports without it.
"""

from __future__ import annotations

import functools
import inspect
import json
import random
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from models import checks
from models.errors import ConfigError

if TYPE_CHECKING:
    import torch

INSTALL_HINT = 'PyTorch is not installed: pip install -e ".[torch]"'
BETAS = {"beta1": 0, "beta2": 1}  # hyperparameter names for the two items of a param group's "betas"
ARRAY = "__array__"  # in the optimizer's JSON skeleton: {ARRAY: key} stands for the tensor at state[key]


def import_torch() -> Any:
    """The ``torch`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(f"trainable: {INSTALL_HINT}") from None
    return torch


@dataclass(frozen=True)
class _Streams:
    """The process-wide random states a member's code draws from: Python's ``random``, numpy's legacy
    ``np.random``, torch's CPU generator and, on a GPU, its CUDA generator."""

    python: tuple
    numpy: tuple
    torch: Any
    cuda: Any = None

    @classmethod
    def capture(cls, device: torch.device) -> _Streams:
        import torch

        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

    @classmethod
    def seeded(cls, seed: int, device: torch.device) -> _Streams:
        """Fresh streams for ``seed``: three independent children of ``np.random.SeedSequence(seed)``."""
        import torch

        py, npy, tor = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
        python = random.Random(py).getstate()
        cuda = torch.Generator(device=device).manual_seed(tor).get_state() if device.type == "cuda" else None
        return cls(python, np.random.RandomState(npy).get_state(), torch.Generator().manual_seed(tor).get_state(), cuda)

    def install(self, device: torch.device) -> None:
        import torch

        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, device)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``rng.*`` arrays: Python's Mersenne Twister words and ``[has_gauss, gauss]``, numpy's
        key and ``[pos, has_gauss, cached_gaussian]``, torch's generator bytes (CUDA's on a GPU)."""
        version, words, gauss = self.python
        _, key, pos, has_gauss, cached = self.numpy
        arrays = {
            "rng.python": np.array(words, np.uint64),
            "rng.python_gauss": np.array([0.0, 0.0] if gauss is None else [1.0, gauss], np.float64),
            "rng.numpy": np.array(key, np.uint32),
            "rng.numpy_extra": np.array([pos, has_gauss, cached], np.float64),
            "rng.torch": self.torch.numpy().copy(),
        }
        if self.cuda is not None:
            arrays["rng.cuda"] = self.cuda.numpy().copy()
        return arrays

    @classmethod
    def from_arrays(cls, state: Mapping[str, np.ndarray], device: torch.device) -> _Streams:
        import torch

        has_python_gauss, python_gauss = (float(v) for v in state["rng.python_gauss"])
        pos, has_gauss, cached = (float(v) for v in state["rng.numpy_extra"])
        cuda = None
        if device.type == "cuda" and "rng.cuda" in state:
            cuda = torch.from_numpy(np.array(state["rng.cuda"], np.uint8))
        return cls((3, tuple(np.asarray(state["rng.python"]).tolist()), python_gauss if has_python_gauss else None),
                   ("MT19937", np.array(state["rng.numpy"], np.uint32), int(pos), int(has_gauss), cached),
                   torch.from_numpy(np.array(state["rng.torch"], np.uint8)), cuda)


class TorchTrainable:
    """A PyTorch model and optimizer as a Trainable. Subclass it and write ``build``, ``train_step``
    and ``evaluate`` (optionally ``test``, and ``extra_state`` / ``load_extra_state``).

    - ``__init__(hparams, seed, **settings)``: sets ``self.hparams``, ``self.step`` (0) and
      ``self.device`` (``cuda`` when the Ray worker was given a GPU, else ``cpu``; inside a worker,
      torch uses as many threads as the worker has CPUs), then calls ``build(hparams, seed,
      **settings)`` and keeps its ``(model, optimizer)`` as ``self.model`` and ``self.optimizer``.
    - Every member has its own random streams (Python's ``random``, ``np.random``, torch's, seeded
      from ``seed``): the adapter swaps them in around ``build``, ``train``, ``evaluate``, ``test``,
      ``get_state`` and ``set_state``, and out after, so members sharing a worker never move each
      other's streams, and code outside them sees its own.
    - ``train(steps)`` calls ``train_step`` ``steps`` times in train mode; ``evaluate`` and ``test``
      run in eval mode under ``torch.no_grad()``, their values returned as floats.
    - ``get_state()``: a flat dict of numpy arrays, without pickle: ``model.*`` (the model's
      ``state_dict``), ``optimizer`` (its ``state_dict`` without tensors, as JSON) and
      ``optimizer.*`` (its tensors: every slot), ``step``, ``rng.*``, and ``extra.*`` (the optional
      hook ``extra_state()``, for a scheduler, a GradScaler or a data cursor). ``set_state`` loads it
      all, so get_state -> set_state into a fresh instance -> train is bit-identical on CPU to
      never stopping. A param group's values named by a hyperparameter are the member's own: they
      travel as hyperparameters (an exploit's receiver keeps its explored values), the rest of each
      group travels in the state.
    - ``set_hparams``: every name that is a key of the optimizer's param groups (``lr``,
      ``momentum``, ``weight_decay``; ``beta1``/``beta2`` for the items of ``betas``) is applied to
      every group; all are kept in ``self.hparams`` for ``train_step`` to read; weights and slots
      are untouched.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("evaluate", "test"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_evaluating", False):  # a class rebuilt by value: once
                setattr(cls, name, _evaluating(method))

    def __init__(self, hparams: Mapping[str, Any], seed: int, **settings: Any) -> None:
        torch = import_torch()
        _check_settings(self.build, settings)
        self.hparams = dict(hparams)
        self.seed = checks.seed(seed)
        self.step = 0
        self.device = _worker_device(torch)
        self._streams = _Streams.seeded(self.seed, self.device)
        self._inside = False
        with self._own_streams():
            built = self.build(dict(hparams), self.seed, **settings)
        if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module)
                and isinstance(built[1], torch.optim.Optimizer)):
            raise TypeError(f"{type(self).__name__}.build must return (model, optimizer): a torch.nn.Module and a "
                            f"torch.optim.Optimizer, got {_kinds(built)}")
        self.model, self.optimizer = built
        self._apply_to_groups(self.hparams)

    # -- what the user writes ------------------------------------------------------------------
    def build(self, hparams: dict[str, Any], seed: int, **settings: Any) -> tuple[Any, Any]:
        """Return ``(model, optimizer)``, on ``self.device``; set up data here as attributes."""
        raise NotImplementedError(f"{type(self).__name__} must define build(hparams, seed, **settings)")

    def train_step(self) -> None:
        """One optimizer step: forward, ``loss.backward()``, ``self.optimizer.step()``."""
        raise NotImplementedError(f"{type(self).__name__} must define train_step()")

    def evaluate(self) -> dict[str, float]:
        """Validation metrics; ``test_*`` keys are reported, never used to choose."""
        raise NotImplementedError(f"{type(self).__name__} must define evaluate()")

    def extra_state(self) -> dict[str, Any]:
        """Optional: more state as ``{name: array}`` (numpy arrays, tensors or numbers)."""
        return {}

    def load_extra_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Optional: restore what ``extra_state`` returned (the arrays are copies, yours to keep)."""
        if state:
            raise NotImplementedError(f"{type(self).__name__}.extra_state() returned {', '.join(state)}: "
                                      "define load_extra_state(state) to restore them")

    # -- the Trainable shape -------------------------------------------------------------------
    def train(self, steps: int) -> None:
        """Call ``train_step`` ``steps`` times, with the model in train mode."""
        steps = checks.integer("steps", steps, lo=0)
        with self._own_streams():
            self.model.train()
            for _ in range(steps):
                self.train_step()
                self.step += 1

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of the model's and optimizer's state, the step, the random streams and the extras."""
        with self._own_streams():
            state = {f"model.{k}": _to_array(v, f"model.{k}") for k, v in self.model.state_dict().items()}
            state.update(_optimizer_arrays(self.optimizer.state_dict(), self._hparam_keys()))
            state["step"] = np.array(self.step, np.int64)
            state.update({f"extra.{k}": _to_array(v, f"extra.{k}") for k, v in self.extra_state().items()})
            state.update(_Streams.capture(self.device).to_arrays())
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a state from ``get_state`` of an instance built with the same settings."""
        live = self.model.state_dict()
        _check_keys(state, live)
        with self._own_streams():
            self.model.load_state_dict({k: _to_tensor(state[f"model.{k}"], v) for k, v in live.items()})
            self.optimizer.load_state_dict(_optimizer_state(state, self.optimizer.state_dict()))
            self.step = int(state["step"])
            self.load_extra_state({k.removeprefix("extra."): np.array(v) for k, v in state.items()
                                   if k.startswith("extra.")})
            _Streams.from_arrays(state, self.device).install(self.device)

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Keep ``hparams`` in ``self.hparams`` (others keep their values) and apply those that name a
        param group's key to every group; weights and optimizer slots are untouched."""
        self.hparams = {**self.hparams, **dict(hparams)}
        self._apply_to_groups(hparams)

    # -- inside ----------------------------------------------------------------------------------
    @contextmanager
    def _own_streams(self) -> Iterator[None]:
        """The member's random streams in, the process's back after (a nested call stays inside)."""
        if self._inside:
            yield
            return
        outside = _Streams.capture(self.device)
        self._streams.install(self.device)
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
            self._streams = _Streams.capture(self.device)
            outside.install(self.device)

    def _apply_to_groups(self, hparams: Mapping[str, Any]) -> None:
        import torch

        for group in self.optimizer.param_groups:
            for name, value in hparams.items():
                if name in BETAS and "betas" in group:
                    betas = list(group["betas"])
                    betas[BETAS[name]] = value
                    group["betas"] = tuple(betas)
                elif name in group and name != "params":
                    if isinstance(group[name], torch.Tensor):
                        group[name].fill_(value)
                    else:
                        group[name] = value

    def _hparam_keys(self) -> set[str]:
        """The param-group keys that hyperparameters set: they travel as hyperparameters, not state."""
        keys = set(self.hparams)
        return keys | {"betas"} if keys & set(BETAS) else keys


def _evaluating(method: Callable[..., Mapping[str, Any]]) -> Callable[..., dict[str, float]]:
    """``method`` run with the member's streams, the model in eval mode and under ``torch.no_grad()``."""

    @functools.wraps(method)
    def evaluating(self: TorchTrainable, *args: Any, **kwargs: Any) -> dict[str, float]:
        import torch

        with self._own_streams(), torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            try:
                metrics = method(self, *args, **kwargs)
            finally:
                self.model.train(was_training)
        return {str(k): float(v) for k, v in metrics.items()}

    evaluating._evaluating = True  # type: ignore[attr-defined]
    return evaluating


def _check_settings(build: Callable[..., Any], settings: Mapping[str, Any]) -> None:
    """``ConfigError`` naming a setting that ``build`` does not take (when it takes no ``**settings``)."""
    parameters = list(inspect.signature(build).parameters.values())
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        checks.reject_unknown(settings, [p.name for p in parameters[2:]], "trainable")


def _worker_device(torch: Any) -> torch.device:
    """``cuda`` when this Ray worker was given a GPU, else ``cpu``; in a Ray worker, torch also gets
    one thread per CPU the worker was given (at least one)."""
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return torch.device("cpu")  # the driver (a config's probe) or a plain process
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    gpus = ray.get_gpu_ids()
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"this worker was given GPU {', '.join(map(str, gpus))} but torch {torch.__version__} "
                           "sees no CUDA device (a CPU build of torch?)")
    return torch.device("cuda")


def _kinds(value: Any) -> str:
    if isinstance(value, tuple):
        return f"({', '.join(type(v).__name__ for v in value)})"
    return type(value).__name__


@functools.cache
def _has_numpy_dtype(dtype: torch.dtype) -> bool:
    import torch

    try:
        torch.empty(0, dtype=dtype).numpy()
    except TypeError:
        return False
    return True


_BITS_OF_SIZE = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _to_array(value: Any, key: str) -> np.ndarray:
    """A copy of ``value`` (a tensor, array or number) as a numpy array; a tensor of a dtype numpy
    lacks (bfloat16, float8) as its raw bits."""
    import torch

    if not isinstance(value, torch.Tensor):
        if isinstance(value, (np.ndarray, np.generic, int, float, bool)):
            return np.array(value)
        raise TypeError(f"state.{key}: a {type(value).__name__} cannot travel without pickle; "
                        "return it from extra_state() as arrays")
    tensor = value.detach()
    if not _has_numpy_dtype(tensor.dtype):
        tensor = tensor.view(getattr(torch, _BITS_OF_SIZE[tensor.element_size()]))
    return tensor.to("cpu", copy=True).numpy()


def _to_tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``array`` as a tensor of ``like``'s dtype without a copy (``load_state_dict`` copies it in)."""
    import torch

    with warnings.catch_warnings():  # a state from Ray's object store is read-only, and only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.asarray(array))
    return tensor if _has_numpy_dtype(like.dtype) else tensor.view(like.dtype)


def _optimizer_arrays(state_dict: Mapping[str, Any], hparam_keys: set[str]) -> dict[str, np.ndarray]:
    """``optimizer``: the state dict as JSON, each tensor replaced by ``{ARRAY: key}``, and the
    tensors as ``optimizer.*`` arrays; the param groups' keys in ``hparam_keys`` left out."""
    arrays: dict[str, np.ndarray] = {}
    groups = [{k: v for k, v in group.items() if k not in hparam_keys} for group in state_dict["param_groups"]]
    skeleton = _encode({"state": state_dict["state"], "param_groups": groups}, "optimizer", arrays)
    arrays["optimizer"] = np.array(json.dumps(skeleton))
    return arrays


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        arrays[key] = _to_array(value, key)
        return {ARRAY: key}
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"state.{key}: a {type(value).__name__} in the optimizer's state cannot travel without pickle")


def _optimizer_state(state: Mapping[str, np.ndarray], live: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer state dict that ``_optimizer_arrays`` encoded, each param group completed by the
    live group's values for the keys it left out (the member's hyperparameters)."""
    skeleton = json.loads(str(np.asarray(state["optimizer"])))
    decoded = _decode(skeleton, state)
    if len(decoded["param_groups"]) != len(live["param_groups"]):
        raise ConfigError(f"state.optimizer: {len(decoded['param_groups'])} param groups, "
                          f"this optimizer has {len(live['param_groups'])}")
    groups = []
    for saved, current in zip(decoded["param_groups"], live["param_groups"]):
        groups.append({**current, **{k: tuple(v) if isinstance(current.get(k), tuple) else v
                                     for k, v in saved.items()}})
    return {"state": {int(k): v for k, v in decoded["state"].items()}, "param_groups": groups}


def _decode(value: Any, state: Mapping[str, np.ndarray]) -> Any:
    import torch

    if isinstance(value, dict):
        if set(value) == {ARRAY}:
            return torch.from_numpy(np.array(state[value[ARRAY]]))  # a writable copy: the optimizer keeps it
        return {k: _decode(v, state) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, state) for v in value]
    return value


def _check_keys(state: Mapping[str, np.ndarray], live: Mapping[str, Any]) -> None:
    """``ConfigError`` naming arrays the state lacks or that this model does not have."""
    model = {f"model.{k}" for k in live}
    required = model | {"optimizer", "step", "rng.python", "rng.python_gauss", "rng.numpy", "rng.numpy_extra",
                        "rng.torch"}
    missing = sorted(required - set(state))
    if missing:
        raise ConfigError(f"state: missing array(s) {', '.join(missing)}")
    unexpected = sorted(k for k in state if k.startswith("model.") and k not in model)
    if unexpected:
        raise ConfigError(f"state: unexpected array(s) {', '.join(unexpected)}")
