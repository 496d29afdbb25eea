"""The run store: one SQLite file (WAL) per run directory, plus ``summary.json`` (DESIGN §5).

Contract
--------
* **Who writes.** Only the driver process writes ``run.db`` (``RunStore``), and every write goes
  through one transaction helper (``RunStore._write``), so a reader never sees half a write.
  ``load_run`` opens the file read-only (``mode=ro``) and is safe while a run is being written.
* **What is immutable.** The ``run`` row's identity (strategy, seed, objective, mode, budget, raw
  config, ``started_at``) is written once by ``create``. Only ``status`` and ``finished_at`` change.
* **Why writes are idempotent, so resume works.** A result is keyed by ``(member, step)`` on the
  member's own clock and written with ``INSERT OR REPLACE``: training a member again from a checkpoint
  rewrites the same rows instead of adding new ones. Events carry a sequence number. The driver
  commits a *snapshot* (the strategy's and the runner's state, each member's step and checkpoint
  file, the last event number) once the checkpoint files it names are on disk; ``rollback`` returns
  the store to the last snapshot (results past each member's snapshot step and later events are
  deleted, members are restored), and the resumed run writes from there exactly as the first one did.
  A run resumed after a crash therefore ends with no duplicated and no missing results.
* **Derived queries** are built once, here, on a loaded run (``RunData``):
  ``member_ranking`` (and its first, ``best_member``), ``best_so_far``, ``exploits``, and on the
  exploits ``ancestry`` (the line of weights a member holds; ``Lineage`` answers it for many
  members at once), from which ``weight_steps`` and ``schedule`` follow.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import StoreError
from search.strategy import oriented_score

FORMAT = 1
DB_NAME = "run.db"
SUMMARY_NAME = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
HP_PREFIX = "hp."  # a hyperparameter's column in the results and members frames: ``hp.<name>``

_SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format INTEGER NOT NULL,
    strategy TEXT NOT NULL, seed INTEGER NOT NULL, objective TEXT NOT NULL, mode TEXT NOT NULL,
    population INTEGER NOT NULL, steps_per_member INTEGER NOT NULL, eval_every INTEGER NOT NULL,
    status TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, config TEXT NOT NULL
);
CREATE TABLE members (
    member INTEGER PRIMARY KEY, status TEXT NOT NULL, error TEXT, step INTEGER NOT NULL,
    objective REAL, hparams TEXT NOT NULL
);
CREATE TABLE results (
    member INTEGER NOT NULL, step INTEGER NOT NULL, objective REAL, metrics TEXT NOT NULL,
    hparams TEXT NOT NULL, worker TEXT, node TEXT, wall_time REAL NOT NULL, train_seconds REAL NOT NULL,
    PRIMARY KEY (member, step)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, member INTEGER, step INTEGER,
    data TEXT NOT NULL
);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1), taken_at REAL NOT NULL, last_event INTEGER NOT NULL,
    state TEXT NOT NULL
);
"""

_RUN_COLUMNS = (
    "strategy", "seed", "objective", "mode", "population", "steps_per_member", "eval_every",
    "status", "started_at", "finished_at", "config",
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


class RunStore:
    """The driver's handle on ``run_dir/run.db``; the only writer of a run's store."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection) -> None:
        self.run_dir = run_dir
        self._conn = conn
        self._depth = 0

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls, run_dir: Path, *, config: Mapping[str, Any], strategy: str, seed: int, population: int,
        steps_per_member: int, eval_every: int, objective: str, mode: str,
    ) -> "RunStore":
        """Create the run directory and its store; ``StoreError`` if ``run_dir`` already holds a run."""
        run_dir = Path(run_dir)
        if (run_dir / DB_NAME).exists():
            raise StoreError(f"{run_dir}: already holds a run ({DB_NAME} exists)")
        (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        conn = _connect(run_dir / DB_NAME)
        return cls(run_dir, conn)._init_schema(
            config=config, strategy=strategy, seed=seed, population=population,
            steps_per_member=steps_per_member, eval_every=eval_every, objective=objective, mode=mode,
        )

    def _init_schema(self, **row: Any) -> "RunStore":
        with self._write() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute(
                "INSERT INTO run (id, format, strategy, seed, objective, mode, population, "
                "steps_per_member, eval_every, status, started_at, finished_at, config) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, NULL, ?)",
                (FORMAT, row["strategy"], int(row["seed"]), row["objective"], row["mode"],
                 int(row["population"]), int(row["steps_per_member"]), int(row["eval_every"]),
                 time.time(), _json(dict(row["config"]))),
            )
        return self

    @classmethod
    def open(cls, run_dir: Path) -> "RunStore":
        """Open an existing run for writing (resume); ``StoreError`` if it is not a run directory."""
        run_dir = Path(run_dir)
        store = cls(run_dir, _connect(_db_path(run_dir)))
        _check_format(store._conn, run_dir)
        return store

    def close(self) -> None:
        """Close the connection (checkpoints the WAL into the main file)."""
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """THE transaction helper: every write to the store happens inside one of these. Nested
        uses (see ``batch``) join the outer transaction. A write that fails, in its statements or
        at COMMIT, is rolled back whole (``StoreError``), and the store takes the next one."""
        if self._depth:
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:  # a failed COMMIT leaves it open, and every later BEGIN would fail
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.run_dir / DB_NAME}: a write failed and was undone ({exc})") from exc
            raise
        finally:
            self._depth = 0

    def batch(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group several writes into one transaction: ``with store.batch(): ...``."""
        return self._write()

    # -- reads the driver needs --------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The run row as a dict (``config`` decoded)."""
        return _read_info(self._conn, self.run_dir)

    def snapshot(self) -> dict[str, Any] | None:
        """The last committed snapshot's state, or ``None`` if none was committed."""
        row = self._conn.execute("SELECT state FROM snapshot WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    def resumable(self) -> bool:
        """A resume continues this run from a durable snapshot: one was committed and the run did
        not finish (``StoreError`` if the store cannot be read)."""
        try:
            row = self._conn.execute(
                "SELECT status, EXISTS (SELECT 1 FROM snapshot) FROM run WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.run_dir / DB_NAME}: cannot read ({exc})") from exc
        return row is not None and row[0] != "finished" and bool(row[1])

    def last_event(self) -> int:
        """The sequence number of the newest event (0 if none)."""
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    # -- writes ------------------------------------------------------------------------------
    def put_member(
        self, member: int, *, status: str, step: int, objective: float | None,
        hparams: Mapping[str, Any], error: str | None = None,
    ) -> None:
        """Insert or update one member's row."""
        with self._write() as db:
            _put_member(db, member, status, step, objective, hparams, error)

    def add_results(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write result rows (keys: member, step, objective, metrics, hparams, worker, node,
        wall_time, train_seconds). Idempotent: a row with the same (member, step) is replaced."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO results (member, step, objective, metrics, hparams, worker, "
                "node, wall_time, train_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(r["member"]), int(r["step"]), _nan_to_none(r["objective"]), _json(dict(r["metrics"])),
                     _json(dict(r["hparams"])), r["worker"], r["node"], float(r["wall_time"]),
                     float(r["train_seconds"]))
                    for r in rows
                ],
            )

    def add_event(
        self, time_s: float, kind: str, member: int | None, step: int | None, data: Mapping[str, Any]
    ) -> int:
        """Append an event; returns its sequence number."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO events (time, kind, member, step, data) VALUES (?, ?, ?, ?, ?)",
                (float(time_s), kind, member, step, _json(dict(data))),
            )
            return int(cursor.lastrowid)

    def commit_snapshot(self, state: Mapping[str, Any], last_event: int) -> None:
        """Make ``state`` the point a resume starts from. ``state["members"]`` maps member id (str)
        to a dict with at least ``status``, ``error``, ``step``, ``objective``, ``hparams``."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO snapshot (id, taken_at, last_event, state) VALUES (1, ?, ?, ?)",
                (time.time(), int(last_event), _json(dict(state))),
            )

    def rollback(self) -> dict[str, Any] | None:
        """Return the store to the last snapshot and give its state (``None``: back to the start)."""
        state = self.snapshot()
        with self._write() as db:
            if state is None:
                for table in ("members", "results", "events"):
                    db.execute(f"DELETE FROM {table}")
            else:
                last = db.execute("SELECT last_event FROM snapshot WHERE id = 1").fetchone()[0]
                db.execute("DELETE FROM events WHERE seq > ?", (last,))
                db.execute("DELETE FROM members")
                for key, m in state["members"].items():
                    db.execute("DELETE FROM results WHERE member = ? AND step > ?", (int(key), int(m["step"])))
                    _put_member(db, int(key), m["status"], m["step"], m["objective"], m["hparams"], m["error"])
                known = [int(k) for k in state["members"]]
                db.execute(
                    f"DELETE FROM results WHERE member NOT IN ({','.join('?' * len(known))})", known
                )
            db.execute("UPDATE run SET status = 'running', finished_at = NULL WHERE id = 1")
        return state

    def finish(self, status: str) -> None:
        """Mark the run ``finished`` or ``failed``."""
        with self._write() as db:
            db.execute("UPDATE run SET status = ?, finished_at = ? WHERE id = 1", (status, time.time()))

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``summary.json`` atomically (temp file + rename)."""
        path = self.run_dir / SUMMARY_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def _db_path(run_dir: Path) -> Path:
    """``run_dir/run.db``; ``StoreError`` if there is none (not a run directory)."""
    path = run_dir / DB_NAME
    if not path.is_file():
        raise StoreError(f"{run_dir}: not a run directory (no {DB_NAME})")
    return path


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _put_member(
    db: sqlite3.Connection, member: int, status: str, step: int, objective: float | None,
    hparams: Mapping[str, Any], error: str | None,
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO members (member, status, error, step, objective, hparams) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (int(member), status, error, int(step), _nan_to_none(objective), _json(dict(hparams))),
    )


def _check_format(conn: sqlite3.Connection, run_dir: Path) -> None:
    try:
        row = conn.execute("SELECT format FROM run WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{run_dir / DB_NAME}: not a run store ({exc})") from None
    if row is None or row[0] != FORMAT:
        raise StoreError(f"{run_dir / DB_NAME}: store format {row and row[0]!r}, expected {FORMAT}")


def _read_info(conn: sqlite3.Connection, run_dir: Path) -> dict[str, Any]:
    row = conn.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM run WHERE id = 1").fetchone()
    if row is None:
        raise StoreError(f"{run_dir / DB_NAME}: the run row is missing")
    info = dict(zip(_RUN_COLUMNS, row))
    info["config"] = json.loads(info["config"])
    return info


# -- reading a run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RunData:
    """A run directory loaded into pandas (see the module docstring and DESIGN §5)."""

    run_dir: Path
    info: dict
    results: pd.DataFrame
    members: pd.DataFrame
    events: pd.DataFrame
    summary: dict | None


def load_run(run_dir: str | Path) -> RunData:
    """Load a run directory read-only; safe while the run is still being written."""
    run_dir = Path(run_dir)
    path = _db_path(run_dir)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open ({exc})") from None
    try:
        _check_format(conn, run_dir)
        conn.execute("BEGIN")  # one consistent read of every table
        info = _read_info(conn, run_dir)
        results = _results_frame(conn)
        members = _members_frame(conn)
        events = _events_frame(conn)
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None
    finally:
        conn.close()
    return RunData(run_dir, info, results, members, events, _read_summary(run_dir / SUMMARY_NAME))


def _read_summary(path: Path) -> dict | None:
    """``summary.json`` decoded; ``None`` while the run has none; ``StoreError`` if it is not JSON."""
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None
    if not isinstance(summary, dict):
        raise StoreError(f"{path}: not a run summary (a JSON object), got {type(summary).__name__}")
    return summary


def _decode_all(texts: Iterable[str]) -> list[Any]:
    """Many JSON documents decoded in one call of the C decoder (not one Python-level call each,
    which took most of ``load_run``'s time at 10,000 results)."""
    return json.loads("[" + ",".join(texts) + "]")


def _results_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    """One row per result: member, step, objective, the metrics, ``hp.<name>`` per hyperparameter,
    worker, node, wall_time, train_seconds (a later group's column of the same name wins). Built a
    column at a time: building a dict per row took most of ``load_run``'s time at 10,000 results."""
    rows = conn.execute(
        "SELECT member, step, objective, metrics, hparams, worker, node, wall_time, train_seconds "
        "FROM results ORDER BY member, step"
    ).fetchall()
    base = ["member", "step", "objective"]
    if not rows:
        return pd.DataFrame(columns=base + ["worker", "node", "wall_time", "train_seconds"]).astype(
            {"member": "int64", "step": "int64", "objective": "float64"})
    member, step, objective, metrics, hparams, worker, node, wall_time, train_seconds = zip(*rows)
    columns: dict[str, Any] = {
        "member": np.array(member, dtype=np.int64), "step": np.array(step, dtype=np.int64),
        "objective": np.array([math.nan if v is None else v for v in objective], dtype=np.float64),
    }
    for group in (pd.DataFrame.from_records(_decode_all(metrics)),
                  pd.DataFrame.from_records(_decode_all(hparams)).add_prefix(HP_PREFIX)):
        columns.update((name, group[name].to_numpy()) for name in group.columns)
    columns.update(worker=worker, node=node, wall_time=wall_time, train_seconds=train_seconds)
    return pd.DataFrame(columns).astype({"member": "int64", "step": "int64", "objective": "float64"})


def _members_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT member, status, error, step, objective, hparams FROM members ORDER BY member"
    ).fetchall()
    records = []
    for (member, status, error, step, objective, _), used in zip(rows, _decode_all(row[5] for row in rows)):
        record: dict[str, Any] = {"member": member, "status": status, "error": error, "step": step,
                                  "objective": float("nan") if objective is None else objective}
        record.update({HP_PREFIX + k: v for k, v in used.items()})
        records.append(record)
    if not records:
        return pd.DataFrame(columns=["member", "status", "error", "step", "objective"])
    return pd.DataFrame.from_records(records)


def _events_frame(conn: sqlite3.Connection) -> pd.DataFrame:
    rows = conn.execute("SELECT seq, time, kind, member, step, data FROM events ORDER BY seq").fetchall()
    records = [
        {"seq": seq, "time": t, "kind": kind,
         "member": None if member is None else int(member),
         "step": None if step is None else int(step), "data": data}
        for (seq, t, kind, member, step, _), data in zip(rows, _decode_all(row[5] for row in rows))
    ]
    columns = ["seq", "time", "kind", "member", "step", "data"]
    return pd.DataFrame.from_records(records, columns=columns).astype({"member": "object", "step": "object"})


def hparam_names(frame: pd.DataFrame) -> list[str]:
    """The hyperparameter names of a results or members frame (its ``hp.<name>`` columns)."""
    return [c[len(HP_PREFIX):] for c in frame.columns if c.startswith(HP_PREFIX)]


# -- derived queries, built on the frames above ----------------------------------------------------

def member_ranking(run: RunData) -> list[int]:
    """Every member, best first by its latest validation objective (``mode``-aware): members with a
    score, failed ones after the rest, then those without one (NaN); ties to the lowest id."""
    mode = run.info["mode"]
    keyed = [
        ((not math.isnan(objective), status != "failed", oriented_score(objective, mode), -member), member)
        for member, status, objective in zip(
            run.members["member"].astype(int), run.members["status"], run.members["objective"].astype(float))
    ]
    return [member for _, member in sorted(keyed, reverse=True)]


def best_member(run: RunData) -> int | None:
    """The first of ``member_ranking``, if it has a score; ``None`` before any evaluation. The test
    split never chooses."""
    ranking = member_ranking(run)
    if not ranking:
        return None
    objective = float(run.members.set_index("member")["objective"][ranking[0]])
    return None if math.isnan(objective) else ranking[0]


def best_so_far(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, best)``: the population's best objective after each evaluation, in the order made.

    ``steps`` counts optimizer steps executed over the whole population (each evaluation stands
    for the ``eval_every`` steps of its member before it); NaN and infinite objectives never count
    as best (``best`` is NaN until a finite objective is seen).
    """
    results = run.results.sort_values("wall_time", kind="stable")
    steps = np.arange(1, len(results) + 1, dtype=float) * float(run.info["eval_every"])
    scores = [oriented_score(value, run.info["mode"]) for value in results["objective"].to_numpy(dtype=float)]
    best = np.maximum.accumulate(np.array(scores, dtype=float)) if scores else np.array([], dtype=float)
    sign = 1.0 if run.info["mode"] == "max" else -1.0
    return steps, np.where(np.isfinite(best), sign * best, np.nan)


EXPLOIT_COLUMNS = ["step", "member", "donor", "donor_step", "member_objective", "donor_objective",
                   "old_hparams", "new_hparams"]


def exploits(run: RunData) -> pd.DataFrame:
    """One row per exploit: step, member, donor, donor_step, member_objective, donor_objective,
    old_hparams, new_hparams (in the order they happened)."""
    return pd.DataFrame.from_records(_exploit_records(run), columns=EXPLOIT_COLUMNS)


def _exploit_records(run: RunData) -> list[dict[str, Any]]:
    events = run.events[run.events["kind"] == "exploit"]
    return [{"step": int(step), "member": int(member), **{k: data[k] for k in EXPLOIT_COLUMNS[2:]}}
            for step, member, data in zip(events["step"], events["member"], events["data"])]


@dataclass(frozen=True)
class Segment:
    """A stretch of training in a member's line of weights: ``member`` trained them from its step
    ``start`` to its step ``end`` (its own clock) with ``hparams``."""

    member: int
    start: int
    end: int
    hparams: dict


class Lineage:
    """A run's start and exploit events indexed once, to follow the weights of many members back
    (``ancestry`` of each member of a large population, in milliseconds rather than seconds)."""

    def __init__(self, run: RunData) -> None:
        started = run.events[run.events["kind"] == "start"]
        self._starts = {int(m): dict(data["hparams"]) for m, data in zip(started["member"], started["data"])}
        self._taken = _exploit_records(run)  # in the order they happened
        self._into: dict[int, list[int]] = {}  # member -> indices into _taken of the exploits into it
        for i, record in enumerate(self._taken):
            self._into.setdefault(record["member"], []).append(i)
        self._latest = {int(m): int(s) for m, s in run.results.groupby("member")["step"].max().items()}
        self._run_dir = run.run_dir

    def ancestry(self, member: int, step: int | None = None) -> list[Segment]:
        """As ``ancestry(run, member, step)``."""
        end, upto = (self._latest.get(member, 0), math.inf) if step is None else (step, step)
        before = len(self._taken)
        segments: list[Segment] = []
        while True:
            last = self._last_exploit_into(member, upto, before)
            if last is None:
                if member not in self._starts:
                    raise StoreError(f"{self._run_dir}: member {member} has no start event")
                segments.append(Segment(member, 0, end, self._starts[member]))
                return segments[::-1]
            e = self._taken[last]
            segments.append(Segment(member, e["step"], end, dict(e["new_hparams"])))
            member, end, upto, before = int(e["donor"]), int(e["donor_step"]), int(e["donor_step"]), last

    def _last_exploit_into(self, member: int, upto: float, before: int) -> int | None:
        """The index of the last exploit into ``member`` among the first ``before``, at its step <= ``upto``."""
        indices = self._into.get(member, [])
        for position in range(bisect.bisect_left(indices, before) - 1, -1, -1):
            if self._taken[indices[position]]["step"] <= upto:
                return indices[position]
        return None


def ancestry(run: RunData, member: int, step: int | None = None) -> list[Segment]:
    """The segments of training that ``member``'s weights at its ``step`` went through, oldest first.

    ``step=None``: its weights now (every exploit so far; the last segment ends at its latest
    result). An exploit into member ``m`` at its step ``s`` from ``donor`` at ``donor_step`` means
    the weights before ``s`` were the donor's up to ``donor_step``, followed back through the
    exploits into the donor recorded *before* this one; only the last exploit into ``m`` up to
    ``step`` matters, since it replaced the weights. For many members, use one ``Lineage``.
    """
    return Lineage(run).ancestry(member, step)


def weight_steps(run: RunData, member: int, step: int | None = None) -> int:
    """How many optimizer steps ``member``'s weights at its ``step`` (default: now) were trained,
    through its donors: the clock of the weights, on which ``schedule`` gives its steps."""
    return sum(s.end - s.start for s in ancestry(run, member, step))


def schedule(run: RunData, member: int) -> list[tuple[int, dict]]:
    """``member``'s hyperparameters over time through its lineage, as ``[(step, hparams), ...]``.

    Steps are on the clock of the weights (``weight_steps``): each segment of ``ancestry`` starts
    where the ones before it ended; a segment of no steps is passed over, and consecutive equal
    hyperparameters are merged.
    """
    merged: list[tuple[int, dict]] = []
    at = 0
    for segment in ancestry(run, member):
        if merged and merged[-1][0] == at:
            merged.pop()  # the segment before trained no steps
        if not merged or merged[-1][1] != segment.hparams:
            merged.append((at, segment.hparams))
        at += segment.end - segment.start
    return merged
