"""Durable member states, off the runner's hot path: a thread that fetches and writes checkpoints.

The runner ``track``s every new state reference; the thread fetches it into the driver (a copy that
survives the node that produced it; ``copy`` hands it back to rebuild a lost reference). For a
snapshot the runner asks it to ``persist`` a set of files; once they are all on disk the job id
comes back from ``finished`` and the runner commits the snapshot to the store (a file that no
snapshot needs yet, such as a finished member's last state, can be written ahead with no job).
Files are named
``member-<member that trained it>-v<version>.npz`` and written with ``allow_pickle=False`` through a
temporary file and a rename, so a file that exists is whole.
"""

from __future__ import annotations

import os
import queue
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import ray

FETCH_TIMEOUT_S = 30.0


def checkpoint_name(origin: int, version: int) -> str:
    """The file name of state ``version``, trained by member ``origin``."""
    return f"member-{origin}-v{version}.npz"


def load_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Read a checkpoint file back into a state dict."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class CheckpointWriter:
    """A daemon thread fetching tracked states and writing requested checkpoint files."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._to_fetch: dict[int, ray.ObjectRef] = {}
        self._copies: dict[int, Mapping[str, np.ndarray]] = {}
        self._jobs: list[tuple[int | None, dict[str, tuple[int, ray.ObjectRef]]]] = []
        self._finished: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
        self._closed = False
        self.error: str | None = None  # the last write that failed, for the runner's message
        self._thread = threading.Thread(target=self._loop, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def track(self, version: int, ref: ray.ObjectRef) -> None:
        """Fetch state ``version`` into the driver when the thread gets to it."""
        with self._cond:
            self._to_fetch[version] = ref
            self._cond.notify()

    def retain(self, versions: set[int]) -> None:
        """Forget copies and pending fetches of every version not in ``versions``."""
        with self._cond:
            for table in (self._to_fetch, self._copies):
                for version in [v for v in table if v not in versions]:
                    del table[version]

    def copy(self, version: int) -> Mapping[str, np.ndarray] | None:
        """The driver's copy of state ``version``, if it was fetched."""
        with self._cond:
            return self._copies.get(version)

    def persist(self, job: int | None, files: dict[str, tuple[int, ray.ObjectRef]]) -> None:
        """Write ``{file name: (version, ref)}`` (files already on disk are kept); then report ``job``
        through ``finished`` (``None``: written ahead, nothing reported)."""
        with self._cond:
            self._jobs.append((job, dict(files)))
            self._cond.notify()

    def finished(self, wait: float = 0.0) -> list[tuple[int, bool]]:
        """``(job, ok)`` for the jobs handled since the last call; ``ok``: all its files are on disk.
        With ``wait``, block up to that many seconds for the first one."""
        done = []
        if wait > 0:
            try:
                done.append(self._finished.get(timeout=wait))
            except queue.Empty:
                return done
        while not self._finished.empty():
            done.append(self._finished.get())
        return done

    def close(self) -> None:
        """Stop the thread (pending work is dropped)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=FETCH_TIMEOUT_S)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._jobs or self._to_fetch):
                    self._cond.wait()
                if self._closed:
                    return
                files = None
                if self._jobs:
                    job, files = self._jobs.pop(0)
                else:
                    version, ref = self._to_fetch.popitem()
            if files is None:
                self._fetch(version, ref)
                continue
            try:
                ok = all([self._write(name, version, ref) for name, (version, ref) in files.items()])
            except Exception as exc:  # whatever it was, this job fails and the thread lives on
                self.error, ok = f"{type(exc).__name__}: {exc}", False
            if job is not None:
                self._finished.put((job, ok))

    def _fetch(self, version: int, ref: ray.ObjectRef) -> Mapping[str, np.ndarray] | None:
        try:
            state = ray.get(ref, timeout=FETCH_TIMEOUT_S)
        except Exception:  # lost or failed: nothing to copy; the runner decides what that means
            return None
        with self._cond:
            self._copies[version] = state
        return state

    def _write(self, name: str, version: int, ref: ray.ObjectRef) -> bool:
        path = self.directory / name
        if path.exists():
            return True
        state = self.copy(version) or self._fetch(version, ref)
        if state is None:
            return False
        tmp = path.with_suffix(".tmp.npz")
        try:
            _save_npz(tmp, state)
            os.replace(tmp, path)
        except (OSError, ValueError) as exc:  # disk full, permissions, an object array: this snapshot fails
            self.error = f"{name}: {type(exc).__name__}: {exc}"
            tmp.unlink(missing_ok=True)
            return False
        return True

    @property
    def alive(self) -> bool:
        """The thread is running (it stops only when closed, or on a bug)."""
        return self._thread.is_alive()


def _save_npz(path: Path, state: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` without its keyword arguments, so that any key (``file``, ``allow_pickle``) is
    a plain array name; no pickled objects."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in state.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
