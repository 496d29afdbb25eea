"""Connecting the driver to Ray: an embedded local Ray on loopback, or an existing cluster (DESIGN §6)."""

from __future__ import annotations

import os
import sys
from types import ModuleType

import ray

from models.errors import ConfigError

PACKAGES = ("models", "workers", "search", "pbt")


def _loopback_only() -> None:
    # ray 2.60 on Linux binds the machine's address unless this is set before Ray starts (DESIGN §6).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def runtime_env(extra: tuple[ModuleType, ...] = ()) -> dict:
    """The runtime environment that ships the project's packages (and ``extra`` modules) to nodes
    that do not have them installed."""
    modules = [sys.modules.get(name) or __import__(name) for name in PACKAGES]
    return {"py_modules": [*modules, *extra]}


def connect(address: str | None = None, *, extra_modules: tuple[ModuleType, ...] = ()) -> bool:
    """Make sure this process is a Ray driver; returns True if this call started Ray (and so the
    caller should ``ray.shutdown()`` when done).

    An already-initialised Ray is reused. ``None``: an embedded local Ray listening on loopback
    only. ``"auto"`` or ``"ray://host:port"`` (or ``host:port``): an existing cluster, with the
    project's packages shipped through Ray's runtime environment (``py_modules``).
    """
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"address: must be 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    if ray.is_initialized():
        return False
    _loopback_only()
    if address is None:  # "local": a new instance, never another process's cluster found on this machine
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        return True
    try:
        ray.init(address=address, runtime_env=runtime_env(extra_modules), log_to_driver=False,
                 configure_logging=False)
    except ConnectionError as exc:
        raise ConfigError(f"address: cannot connect to a Ray cluster at {address!r} ({exc})") from None
    return True
