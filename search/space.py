"""The search space: the config's ``[space]`` table as named, validated dimensions (DESIGN §6).

Each dimension maps onto one of Optuna's distributions (``distribution``), so Optuna's samplers
can draw from it; sampling from the prior, clipping and membership are small enough to do here
with the run's ``np.random.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from models.errors import ConfigError

Kind = Literal["uniform", "loguniform", "int", "choice"]
KINDS: tuple[str, ...] = ("uniform", "loguniform", "int", "choice")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


def _same_choice(a: object, b: object) -> bool:
    """Equality that keeps booleans apart from numbers (``True == 1`` in Python)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter: ``uniform``/``loguniform`` floats or ``int`` in ``[low, high]``, or a ``choice``."""

    name: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def distribution(self) -> BaseDistribution:
        """The equivalent Optuna distribution."""
        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")

    def sample(self, rng: np.random.Generator) -> Any:
        """A draw from the prior (log-uniform for ``loguniform``), as a plain Python value."""
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.kind == "int":
            return int(rng.integers(self.low, self.high + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def clip(self, value: Any) -> Any:
        """``value`` moved into ``[low, high]`` (rounded for ``int``); a choice must already be one."""
        if self.kind == "choice":
            for choice in self.choices:
                if _same_choice(choice, value):
                    return choice
            raise ValueError(f"{self.name}: {value!r} is not one of {list(self.choices)}")
        if self.kind == "int":
            return int(min(max(round(value), self.low), self.high))
        return float(min(max(float(value), self.low), self.high))

    def contains(self, value: Any) -> bool:
        """True if ``value`` is a legal value of this dimension."""
        if self.kind == "choice":
            return any(_same_choice(c, value) for c in self.choices)
        if self.kind == "int":
            return _is_integer(value) and self.low <= value <= self.high
        return _is_number(value) and math.isfinite(value) and self.low <= value <= self.high

    def points(self, n: int) -> list[Any]:
        """``n`` evenly spread values: the centres of ``n`` equal cells (log cells for ``loguniform``).

        Centres rather than endpoints, so one point is the middle of the range and a grid never
        sits on the extremes (``lr = 1.0``, ``momentum = 0.0``). Choices give all their values.
        """
        if self.kind == "choice":
            return list(self.choices)
        fractions = (np.arange(n) + 0.5) / n
        if self.kind == "loguniform":
            lo, hi = math.log(self.low), math.log(self.high)
            values = [math.exp(lo + f * (hi - lo)) for f in fractions]
        else:
            values = [self.low + f * (self.high - self.low) for f in fractions]
        if self.kind == "int":
            return [int(round(v)) for v in values]
        return [float(f"{v:.12g}") for v in values]  # 1e-3, not 0.0010000000000000002

    def canonical(self, value: Any) -> Any:
        """``value`` (already ``contains``-checked) in this dimension's Python type."""
        if self.kind == "choice":
            return self.clip(value)
        return int(value) if self.kind == "int" else float(value)


def _dimension_from_config(name: str, spec: Any) -> Dimension:
    field = f"space.{name}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(
            f"{field}: must be one of {{ uniform = [lo, hi] }}, {{ loguniform = [lo, hi] }}, "
            f"{{ int = [lo, hi] }}, {{ choice = [a, b, ...] }}, got {spec!r}"
        )
    (kind, args), = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{field}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "choice":
        if not isinstance(args, (list, tuple)) or not args:
            raise ConfigError(f"{field}: choice must be a non-empty list, got {args!r}")
        for value in args:
            if not isinstance(value, (str, int, float, bool)) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise ConfigError(f"{field}: choices must be strings, numbers or booleans, got {value!r}")
        for i, value in enumerate(args):
            if any(_same_choice(value, other) for other in args[:i]):
                raise ConfigError(f"{field}: choice {value!r} is listed twice")
        return Dimension(name, "choice", choices=tuple(args))
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ConfigError(f"{field}: {kind} needs [low, high], got {args!r}")
    low, high = args
    check = _is_integer if kind == "int" else _is_number
    if not (check(low) and check(high)) or not (math.isfinite(low) and math.isfinite(high)):
        what = "integers" if kind == "int" else "finite numbers"
        raise ConfigError(f"{field}: {kind} bounds must be {what}, got {args!r}")
    if low >= high:
        raise ConfigError(f"{field}: low must be < high, got [{low!r}, {high!r}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{field}: loguniform low must be > 0, got {low!r}")
    if kind == "int":
        return Dimension(name, "int", int(low), int(high))
    return Dimension(name, kind, float(low), float(high))


class SearchSpace(Mapping[str, Dimension]):
    """An ordered, immutable mapping ``name -> Dimension``."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        self._dims = {d.name: d for d in dimensions}
        if len(self._dims) != len(dimensions):
            raise ConfigError("space: dimension names must be unique")

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> SearchSpace:
        """Build from the config's ``[space]`` table; ``ConfigError`` naming ``space.<name>`` if wrong."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"space: must be a table of hyperparameters, got {table!r}")
        if not table:
            raise ConfigError("space: must define at least one hyperparameter")
        return cls([_dimension_from_config(name, spec) for name, spec in table.items()])

    def __getitem__(self, name: str) -> Dimension:
        return self._dims[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __repr__(self) -> str:
        return f"SearchSpace({list(self._dims.values())!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and list(self._dims.values()) == list(other._dims.values())

    __hash__ = None  # type: ignore[assignment]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every dimension as an Optuna distribution, in order."""
        return {name: d.distribution for name, d in self._dims.items()}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One draw from the prior of every dimension, in order."""
        return {name: d.sample(rng) for name, d in self._dims.items()}

    def validate(self, hparams: Mapping[str, Any], field: str) -> dict[str, Any]:
        """``hparams`` checked to hold exactly the space's names with legal values, in space order.

        Raises ``ConfigError`` naming ``<field>.<name>`` for an unknown, missing or outside value.
        """
        if not isinstance(hparams, Mapping):
            raise ConfigError(f"{field}: must be a table of hyperparameters, got {hparams!r}")
        for name in hparams:
            if name not in self._dims:
                raise ConfigError(
                    f"{field}.{name}: unknown hyperparameter; the space has {', '.join(self._dims)}"
                )
        out = {}
        for name, dim in self._dims.items():
            if name not in hparams:
                raise ConfigError(f"{field}.{name}: missing; every hyperparameter of the space needs a value")
            value = hparams[name]
            if not dim.contains(value):
                raise ConfigError(f"{field}.{name}: {value!r} is outside the space ({_describe(dim)})")
            out[name] = dim.canonical(value)
        return out

    def grid_values(self, explicit: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """The ``[grid]`` table checked: each list non-empty, of distinct values of its dimension,
        in the dimension's Python type. Raises ``ConfigError`` naming ``grid.<name>``."""
        lists: dict[str, list[Any]] = {}
        for name, values in explicit.items():
            if name not in self._dims:
                raise ConfigError(f"grid.{name}: not a dimension of [space] ({', '.join(self._dims)})")
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"grid.{name}: must be a non-empty list of values, got {values!r}")
            dim = self._dims[name]
            canon: list[Any] = []
            for value in values:
                if not dim.contains(value):
                    raise ConfigError(f"grid.{name}: {value!r} is outside the space ({_describe(dim)})")
                if any(_same_choice(dim.canonical(value), c) for c in canon):
                    raise ConfigError(f"grid.{name}: {value!r} is listed twice")
                canon.append(dim.canonical(value))
            lists[name] = canon
        return lists

    def grid(self, explicit: Mapping[str, Sequence[Any]], count: int) -> list[dict[str, Any]]:
        """Exactly ``count`` grid points: the cross product of one value list per dimension, in order.

        ``explicit`` (the ``[grid]`` table) gives lists for some dimensions; every other dimension
        gets ``n`` points (``Dimension.points``), all its values for a choice, with ``n`` chosen so
        the product is ``count``. Raises ``ConfigError`` saying the sizes and how to fix them.
        """
        lists = self.grid_values(explicit)
        if count == 0:
            return []
        free = [n for n, d in self._dims.items() if n not in lists and d.kind != "choice"]
        fixed = math.prod(
            len(lists[n]) if n in lists else len(self._dims[n].choices)
            for n in self._dims
            if n not in free
        )
        n = _points_per_dimension(count, fixed, len(free))
        if n is None:
            raise ConfigError(_misfit(count, fixed, free, self._dims))
        for name in self._dims:
            if name not in free:
                lists.setdefault(name, list(self._dims[name].choices))
        for name in free:
            points = self._dims[name].points(n)
            if len(set(points)) < n:
                raise ConfigError(
                    f"grid.{name}: {n} distinct points do not fit in {_describe(self._dims[name])}; "
                    f"list its values in [grid] or change budget.population"
                )
            lists[name] = points
        names = list(self._dims)
        return [dict(zip(names, combo)) for combo in itertools.product(*(lists[n] for n in names))]


def _describe(dim: Dimension) -> str:
    if dim.kind == "choice":
        return f"choice of {list(dim.choices)}"
    return f"{dim.kind} [{dim.low!r}, {dim.high!r}]"


def _points_per_dimension(count: int, fixed: int, free: int) -> int | None:
    """The ``n`` with ``fixed * n**free == count``, or None."""
    if free == 0:
        return 1 if fixed == count else None
    if count % fixed:
        return None
    n = round((count // fixed) ** (1 / free))
    for candidate in (n - 1, n, n + 1):
        if candidate >= 1 and candidate**free * fixed == count:
            return candidate
    return None


def _misfit(count: int, fixed: int, free: list[str], dims: Mapping[str, Dimension]) -> str:
    if not free:
        sizes = " x ".join(
            f"{len(d.choices)} ({name})" for name, d in dims.items() if d.kind == "choice"
        )
        return (
            f"grid: [grid] lists and choices give {fixed} points but {count} grid members are needed; "
            f"set budget.population so that {fixed} members come from the grid, or change [grid]"
            + (f" (choice sizes: {sizes})" if sizes else "")
        )
    fits = [fixed * n ** len(free) for n in range(1, 6)]
    return (
        f"grid: {count} grid members cannot be {fixed} fixed point(s) x n^{len(free)} "
        f"for the free dimension(s) {', '.join(free)}; set budget.population so the grid has one of "
        f"{', '.join(map(str, fits))} members, or list values for some dimensions in [grid]"
    )
