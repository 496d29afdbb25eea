"""PBT's settings, the config's ``[pbt]`` table, validated where they enter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.errors import ConfigError


@dataclass(frozen=True)
class PBTSettings:
    """How often members are ready, how they exploit and how they explore (DESIGN §4)."""

    interval: int = 100
    burn_in: int = 0
    exploit: Literal["truncation", "tournament"] = "truncation"
    fraction: float = 0.25
    resample_probability: float = 0.25
    perturb_factors: tuple[float, ...] = (0.8, 1.2)
    synchronous: bool = False

    def __post_init__(self) -> None:
        _require_int("interval", self.interval, minimum=1)
        _require_int("burn_in", self.burn_in, minimum=0)
        if self.exploit not in ("truncation", "tournament"):
            raise ConfigError(f"pbt.exploit: must be 'truncation' or 'tournament', got {self.exploit!r}")
        if not _is_number(self.fraction) or not 0 < self.fraction <= 0.5:
            raise ConfigError(f"pbt.fraction: must be in (0, 0.5], got {self.fraction!r}")
        if not _is_number(self.resample_probability) or not 0 <= self.resample_probability <= 1:
            raise ConfigError(
                f"pbt.resample_probability: must be in [0, 1], got {self.resample_probability!r}"
            )
        factors = self.perturb_factors
        if (
            not isinstance(factors, (list, tuple))
            or not factors
            or not all(_is_number(f) and f > 0 for f in factors)
        ):
            raise ConfigError(f"pbt.perturb_factors: must be a non-empty list of numbers > 0, got {factors!r}")
        object.__setattr__(self, "perturb_factors", tuple(float(f) for f in factors))
        if not isinstance(self.synchronous, bool):
            raise ConfigError(f"pbt.synchronous: must be true or false, got {self.synchronous!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"pbt.{name}: must be an integer >= {minimum}, got {value!r}")
