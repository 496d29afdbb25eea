"""Validation of settings and hyperparameters where they enter a trainable.

Every failure is one ``ConfigError`` line naming the field (``trainable.<setting>`` or
``space.<hparam>``) and the problem.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from models.errors import ConfigError


def reject_unknown(given: Iterable[str], allowed: Iterable[str], prefix: str) -> None:
    """Raise naming the first key of ``given`` that is not in ``allowed``."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise ConfigError(f"{prefix}.{key}: unknown; expected one of {', '.join(allowed)}")


def real(field: str, value: Any, *, lo: float = -math.inf, hi: float = math.inf,
         lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` (any real type, numpy's too; not a bool) as a finite float inside the interval;
    ``lo_open``/``hi_open`` exclude the ends."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ConfigError(f"{field}: must be a finite number{_interval(lo, hi, lo_open, hi_open)}, got {value!r}")
    return float(value)


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    if math.isinf(lo) and math.isinf(hi):
        return ""
    if math.isinf(hi):
        return f" {'>' if lo_open else '>='} {lo:g}"
    if math.isinf(lo):
        return f" {'<' if hi_open else '<='} {hi:g}"
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def integer(field: str, value: Any, *, lo: int) -> int:
    """``value`` (any integral type, numpy's too; not a bool) as an int ``>= lo``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < lo:
        raise ConfigError(f"{field}: must be an integer >= {lo}, got {value!r}")
    return int(value)


def seed(value: Any) -> int:
    """A trainable's seed: a non-negative integer."""
    return integer("seed", value, lo=0)


def hparams(given: Mapping[str, Any], current: Mapping[str, float],
            bounds: Mapping[str, dict[str, Any]]) -> dict[str, float]:
    """Merge ``given`` over ``current`` after checking names and values (``space.<name>``)."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"space: hyperparameters must be a mapping of name to value, got {given!r}")
    reject_unknown(given, current, "space")
    merged = {**current, **given}
    return {name: real(f"space.{name}", value, **bounds.get(name, {})) for name, value in merged.items()}
