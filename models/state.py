"""Flat ``{name: ndarray}`` state: checking it on the way in, and random generators as arrays.

A state must load with ``np.load(..., allow_pickle=False)``, so a generator's
``bit_generator.state`` (PCG64: two 128-bit integers and a flag) is encoded as a small uint64
array rather than a dict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.errors import ConfigError

_MASK64 = (1 << 64) - 1


def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    """The full state of a PCG64 generator as a ``(6,)`` uint64 array."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise TypeError(f"only PCG64 generators are supported, got {st['bit_generator']}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array(
        [s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, st["has_uint32"], st["uinteger"]],
        dtype=np.uint64,
    )


def rng_from_array(rng: np.random.Generator, arr: np.ndarray) -> None:
    """Restore ``rng`` in place from ``rng_to_array``'s output."""
    a = [int(v) for v in arr]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
        "has_uint32": a[4],
        "uinteger": a[5],
    }


def check_state(state: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    """Raise ``ConfigError`` unless ``state`` has exactly ``expected``'s keys, shapes and dtype kinds."""
    missing = [k for k in expected if k not in state]
    if missing:
        raise ConfigError(f"state: missing array(s) {', '.join(missing)}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ConfigError(f"state: unexpected array(s) {', '.join(extra)}")
    for key, ref in expected.items():
        got = np.asarray(state[key])
        if got.shape != ref.shape:
            raise ConfigError(f"state.{key}: expected shape {ref.shape}, got {got.shape}")
        if got.dtype.kind != ref.dtype.kind:
            raise ConfigError(f"state.{key}: expected dtype kind {ref.dtype}, got {got.dtype}")
