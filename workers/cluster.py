"""Connecting the driver to Ray: an embedded local Ray on loopback, or an existing cluster (DESIGN §6)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import ray
from ray._private import ray_constants, services
from ray._private.authentication.authentication_token_setup import _enable_token_auth
from ray._raylet import AuthenticationTokenLoader, InnerGcsClient
from ray.exceptions import AuthenticationError, RayError

from models.errors import ConfigError

PACKAGES = ("models", "workers", "search", "pbt")
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")
AUTH_MODE_ENV = "RAY_AUTH_MODE"
PROBE_TIMEOUT_S = 5.0  # a join that cannot reach its cluster fails after this, not after Ray's minutes of retries
TOKEN_HINT = ("put the cluster's token (`ray get-auth-token` on the head prints it) in RAY_AUTH_TOKEN "
              "or ~/.ray/auth_token")


class LoopbackError(ConfigError):
    """An embedded Ray could not be confined to loopback, so none was started."""


def runtime_env(extra: tuple[ModuleType, ...] = ()) -> dict:
    """The runtime environment that ships the project's packages (and ``extra`` modules) to nodes
    that do not have them installed: their directories (or a single module's file), since Ray
    Client cannot pickle module objects."""
    modules = [sys.modules.get(name) or __import__(name) for name in PACKAGES]
    return {"py_modules": [code_path(module) for module in [*modules, *extra]]}


def code_path(module: ModuleType) -> str:
    package_dirs = getattr(module, "__path__", None)
    return next(iter(package_dirs)) if package_dirs else str(module.__file__)


def connect(address: str | None = None, *, extra_modules: tuple[ModuleType, ...] = (),
            num_cpus: int | None = None) -> bool:
    """Make sure this process is a Ray driver; returns True if this call started Ray (and so the
    caller should ``disconnect()`` when done).

    An already-initialised Ray is reused. ``None``: an embedded local Ray (``num_cpus``: default, the
    machine's) whose every process listens on loopback only, or ``LoopbackError`` and no Ray.
    ``"host:port"`` (a head's GCS) or ``"auto"`` (the cluster ``ray start`` last started here): that
    cluster, with Ray's token if it asks for one, on loopback if the cluster's nodes are;
    ``"ray://host:port"``: through Ray Client. Either way the project's packages (and
    ``extra_modules``) are shipped through Ray's runtime environment (``py_modules``), and a cluster
    that cannot be reached or refuses this driver is a one-line ``ConfigError`` within seconds.
    """
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"address: must be 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    if ray.is_initialized():
        return False
    if address is None:  # "local": a new instance, never another process's cluster found on this machine
        _start_on_loopback(num_cpus)
        return True
    if address.startswith("ray://"):
        _check_listening(address.removeprefix("ray://"), address)
        use_token_if_any()
        _join(address, address, extra_modules)
    else:
        _join_gcs(address, extra_modules)
    return True


def disconnect() -> None:
    """Shut down the Ray that ``connect`` started, and give Ray back its own network settings."""
    ray.shutdown()
    _restore_network_mode()


def object_store_bytes() -> int:
    """Bytes of objects this driver's Ray holds: the cluster's shared-memory object stores in use,
    plus the driver's in-process store (objects under Ray's inline limit, 100 KB, live there).
    Ray's view of the shared stores lags by up to about a second."""
    shared = ray.cluster_resources().get("object_store_memory", 0) - ray.available_resources().get("object_store_memory", 0)
    return int(shared) + ray._private.worker.global_worker.core_worker.get_local_memory_store_bytes_used()


def _join_gcs(address: str, extra_modules: tuple[ModuleType, ...]) -> None:
    """Join the cluster whose GCS is at ``address`` (or that ``"auto"`` finds) after checking, within
    seconds, that it answers and admits this driver. A cluster whose nodes all advertise loopback is
    joined on loopback: with its cluster mode on, Ray would rewrite 127.0.0.1 into this machine's
    address, where such a cluster does not listen."""
    gcs = _gcs_address(address)
    _check_listening(gcs, address)
    if all(_is_loopback(host) for host in _admitted_node_addresses(gcs, address)):
        _switch_to_loopback()
    _join(gcs, address, extra_modules)


def use_token_if_any() -> bool:
    """Turn Ray's token mode on if a token is at hand (Ray's sources: ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` does not decide; True if it did."""
    if os.environ.get(AUTH_MODE_ENV) is None and AuthenticationTokenLoader.instance().has_token(
            ignore_auth_mode=True):
        _enable_token_auth()
        return True
    return False


def _join(target: str, address: str, extra_modules: tuple[ModuleType, ...]) -> None:
    try:
        ray.init(address=target, runtime_env=runtime_env(extra_modules), log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:  # ValueError: ray:// without ray[client]
        _restore_network_mode()
        hint = f"; if it uses Ray's token, {TOKEN_HINT}" if isinstance(exc, ConnectionError) else ""
        raise ConfigError(f"address: cannot join the Ray cluster at {address} ({first_line(exc)}){hint}") from None


def _gcs_address(address: str) -> str:
    """``address`` as ``host:port``; ``"auto"``: the address Ray recorded for this machine's cluster
    (or ``RAY_ADDRESS``), as Ray's own ``auto`` finds it."""
    if address == "auto":
        try:
            return services.get_ray_address_from_environment("auto", None)
        except ConnectionError as exc:
            raise ConfigError(f"address: 'auto' found no Ray cluster on this machine ({exc})") from None
    return address


def _check_listening(host_port: str, address: str) -> None:
    """One TCP connection to ``host_port``, so that nothing listening fails at once (Ray retries for minutes)."""
    parsed = services.parse_address(host_port)
    if parsed is None or not parsed[1].isdigit():
        raise ConfigError(f"address: must be 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    host, port = parsed
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(f"address: nothing listens at {host_port} ({reason}): is the cluster's head "
                          f"up, and is this its address?") from None


def _admitted_node_addresses(gcs: str, address: str) -> list[str]:
    """The addresses the cluster's live nodes advertise, asked of its GCS, or a one-line
    ``ConfigError`` if it does not answer or refuses this driver.

    Ray sends its token only to a cluster it found itself (``auto``), and a driver in token mode
    refuses the calls of a cluster that sends none: so the token goes out exactly when the cluster
    refuses a driver without it."""
    try:
        return _node_addresses(gcs, address)
    except AuthenticationError:
        if not use_token_if_any():
            state = "refused this driver's token" if os.environ.get(AUTH_MODE_ENV) == "token" else "needs a token"
            raise ConfigError(f"address: the Ray cluster at {address} {state}: {TOKEN_HINT}") from None
    try:
        return _node_addresses(gcs, address)
    except AuthenticationError:
        raise ConfigError(f"address: the Ray cluster at {address} refused this driver's token: {TOKEN_HINT}") from None


def _node_addresses(gcs: str, address: str) -> list[str]:
    try:
        with _native_stderr_silenced():  # Ray's C++ client logs its failed attempt there too
            client = InnerGcsClient.standalone(gcs, cluster_id=None, timeout_ms=int(PROBE_TIMEOUT_S * 1000))
            nodes = client.get_all_node_info(timeout=PROBE_TIMEOUT_S)
    except AuthenticationError:  # a RayError too, for the caller to answer
        raise
    except RayError as exc:
        raise ConfigError(f"address: no Ray cluster answers at {address} ({first_line(exc)})") from None
    alive = [node.node_manager_address for node in nodes.values() if node.state == node.ALIVE]
    return alive or [services.parse_address(gcs)[0]]


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)  # "::ffff:127.0.0.1" is IPv4 loopback
    return (mapped or address).is_loopback


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# Ray reads its cluster mode once, when ``ray`` is first imported (``ray_constants.ENABLE_RAY_CLUSTER``
# from LOOPBACK_ENV); with it on, Linux binds every interface and Ray rewrites a loopback address into
# the machine's. An embedded start, or a join of a cluster on loopback, turns it off in this process's
# constant (the environment is read too late here) and in the environment the processes Ray starts
# inherit (gcs, raylet, workers, agents: each reads it at its own import). ``disconnect`` restores
# both, so a later join of a real cluster from this process advertises a reachable address.
_SAVED: dict[str, object] = {}


def _switch_to_loopback() -> None:
    _SAVED.setdefault("constant", ray_constants.ENABLE_RAY_CLUSTER)
    _SAVED.setdefault("environ", os.environ.get(LOOPBACK_ENV))
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[LOOPBACK_ENV] = "0"


def _start_on_loopback(num_cpus: int | None) -> None:
    _switch_to_loopback()
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
