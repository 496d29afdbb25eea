"""Connecting the driver to Ray: an embedded local Ray on loopback, or an existing cluster (DESIGN §6)."""

from __future__ import annotations

import os
import sys
from types import ModuleType

import ray
from ray._private import ray_constants, services

from models.errors import ConfigError

PACKAGES = ("models", "workers", "search", "pbt")
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class LoopbackError(ConfigError):
    """An embedded Ray could not be confined to loopback, so none was started."""


def runtime_env(extra: tuple[ModuleType, ...] = ()) -> dict:
    """The runtime environment that ships the project's packages (and ``extra`` modules) to nodes
    that do not have them installed."""
    modules = [sys.modules.get(name) or __import__(name) for name in PACKAGES]
    return {"py_modules": [*modules, *extra]}


def connect(address: str | None = None, *, extra_modules: tuple[ModuleType, ...] = (),
            num_cpus: int | None = None) -> bool:
    """Make sure this process is a Ray driver; returns True if this call started Ray (and so the
    caller should ``disconnect()`` when done).

    An already-initialised Ray is reused. ``None``: an embedded local Ray (``num_cpus``: default, the
    machine's) whose every process listens on loopback only, or ``LoopbackError`` and no Ray.
    ``"auto"`` or ``"ray://host:port"`` (or ``host:port``): an existing cluster, with the project's
    packages shipped through Ray's runtime environment (``py_modules``).
    """
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"address: must be 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    if ray.is_initialized():
        return False
    if address is None:  # "local": a new instance, never another process's cluster found on this machine
        _start_on_loopback(num_cpus)
        return True
    try:
        ray.init(address=address, runtime_env=runtime_env(extra_modules), log_to_driver=False,
                 configure_logging=False)
    except ConnectionError as exc:
        raise ConfigError(f"address: cannot connect to a Ray cluster at {address!r} ({exc})") from None
    return True


def disconnect() -> None:
    """Shut down the Ray that ``connect`` started, and give Ray back its own network settings."""
    ray.shutdown()
    _restore_network_mode()


# Ray reads its cluster mode once, when ``ray`` is first imported (``ray_constants.ENABLE_RAY_CLUSTER``
# from LOOPBACK_ENV); with it on, Linux binds every interface. An embedded start turns it off in this
# process's constant (the environment is read too late here) and in the environment the processes Ray
# starts inherit (gcs, raylet, workers, agents: each reads it at its own import). ``disconnect`` restores
# both, so a later join of a real cluster from this process advertises a reachable address.
_SAVED: dict[str, object] = {}


def _start_on_loopback(num_cpus: int | None) -> None:
    _SAVED.setdefault("constant", ray_constants.ENABLE_RAY_CLUSTER)
    _SAVED.setdefault("environ", os.environ.get(LOOPBACK_ENV))
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[LOOPBACK_ENV] = "0"
    if services.get_node_ip_address() not in LOOPBACK_HOSTS:
        _restore_network_mode()
        raise LoopbackError(
            f"Ray {ray.__version__} would not confine the embedded Ray to loopback: set {LOOPBACK_ENV}=0 in "
            f"the environment before Python starts"
        )
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except BaseException:
        _restore_network_mode()
        raise


def _restore_network_mode() -> None:
    if not _SAVED:
        return
    ray_constants.ENABLE_RAY_CLUSTER = _SAVED.pop("constant")
    environ = _SAVED.pop("environ")
    if environ is None:
        os.environ.pop(LOOPBACK_ENV, None)
    else:
        os.environ[LOOPBACK_ENV] = str(environ)
