"""HTML fragments of a run (tables, config, the page shell), shared by the report and the dashboard.

Every string that came from a config, a trainable or the store goes through ``html.escape``: the
fragments are safe to put into a page or into ``innerHTML``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

from search.store import HP_PREFIX, RunData, best_member, exploits, hparam_names, member_ranking, schedule

STATIC = resources.files("dashboards") / "static"
STYLE = (STATIC / "dashboard.css").read_text(encoding="utf-8")


def page(title: str, body: str, *, body_attrs: str = "", stylesheet: str = "", script: str = "") -> str:
    """A whole HTML document: ``title`` is escaped here; ``body`` must already be safe HTML.

    ``stylesheet`` and ``script`` are URLs to link (the dashboard, whose pages allow no inline code);
    without a ``stylesheet`` the style is inlined (the self-contained report).
    """
    style = f'<link rel="stylesheet" href="{escape(stylesheet)}">' if stylesheet else f"<style>{STYLE}</style>"
    code = f'<script src="{escape(script)}"></script>' if script else ""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title>{style}</head>\n"
        f"<body{body_attrs}>\n{body}\n{code}</body></html>\n"
    )


def fmt(value: Any) -> str:
    """A cell's text: floats to 4 significant digits, mappings as ``k=v``, missing as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, text_columns: Sequence[str] = (),
    row_classes: Sequence[str] | None = None, raw_columns: Sequence[str] = (),
) -> str:
    """An escaped HTML table. Cells of ``raw_columns`` are trusted HTML (built by this module)."""
    def cls(col: str) -> str:
        return ' class="text"' if col in text_columns else ""

    head = "".join(f"<th{cls(c)}>{escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        klass = row_classes[i] if row_classes else ""
        cells = "".join(
            f"<td{cls(c)}>{v if c in raw_columns else escape(fmt(v))}</td>" for c, v in zip(columns, row)
        )
        body.append(f'<tr class="{escape(klass)}">{cells}</tr>' if klass else f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td class="text muted" colspan="{len(columns)}">none yet</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _time(unix: float | None) -> str:
    if unix is None or (isinstance(unix, float) and math.isnan(unix)):
        return ""
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def best_objective(run: RunData) -> tuple[int | None, float | None]:
    """The best member (``search.store.best_member``) and its latest validation objective."""
    best = best_member(run)
    if best is None:
        return None, None
    return best, float(run.members.set_index("member")["objective"][best])


def _best_test(run: RunData) -> dict[str, float]:
    """The best member's test metrics from ``summary.json``; ``{}`` until the run has a best member."""
    best = (run.summary or {}).get("best")
    return dict(best.get("test") or {}) if isinstance(best, dict) else {}


def info_table(run: RunData) -> str:
    """The run at a glance: strategy, status, budget, progress, best member and its test metrics."""
    info = run.info
    best, objective = best_objective(run)
    summary = run.summary or {}
    rows: list[tuple[str, Any]] = [
        ("strategy", info.get("strategy")), ("seed", info.get("seed")),
        ("status", info.get("status")),
        ("objective", f"{info.get('objective')} ({info.get('mode')})"),
        ("population", info.get("population")), ("steps per member", info.get("steps_per_member")),
        ("eval every", info.get("eval_every")),
        ("evaluations", len(run.results)), ("exploits", len(exploits(run))),
        ("started", _time(info.get("started_at"))), ("finished", _time(info.get("finished_at"))),
    ]
    if best is not None:
        rows += [("best member", best), ("best objective", objective)]
    for key in ("budget_steps", "wall_seconds", "train_seconds"):
        if key in summary:
            rows.append((key.replace("_", " "), summary[key]))
    for key, value in sorted(_best_test(run).items()):
        rows.append((f"best member {key}", value))
    return table(["", "value"], rows, text_columns=["", "value"])


def members_table(run: RunData, limit: int | None = None) -> str:
    """One row per member, best first (``search.store.member_ranking``, so ``mode``-aware): rank,
    member, status, step, latest objective, current hyperparameters, error. Only the first
    ``limit`` rows when given."""
    records = {int(record["member"]): record for record in run.members.to_dict("records")}
    names = hparam_names(run.members)
    columns = ["rank", "member", "status", "step", "objective", *names, "error"]
    best = best_member(run)
    rows, classes = [], []
    for rank, member in enumerate(member_ranking(run)[:limit], start=1):
        record = records[member]
        rows.append([rank, member, record.get("status"), record.get("step"), record.get("objective"),
                     *(record.get(HP_PREFIX + n) for n in names), record.get("error")])
        classes.append("best" if member == best else "failed" if record.get("status") == "failed" else "")
    return table(columns, rows, text_columns=["status", "error"], row_classes=classes)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = list(dict.fromkeys([*old, *new]))
    changed = [f"{k}: {fmt(old.get(k))} → {fmt(new.get(k))}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed) or "unchanged"


def exploits_table(run: RunData, limit: int | None = None) -> str:
    """One row per exploit in the order they happened: when, who copied whom, both objectives, the
    hyperparameter changes. Only the latest ``limit`` when given."""
    frame = exploits(run)
    if limit is not None:
        frame = frame.tail(limit)
    columns = ["step", "member", "donor", "donor step", "member objective", "donor objective",
               "hyperparameters (old → new)"]
    rows = [
        [r.step, r.member, r.donor, r.donor_step, r.member_objective, r.donor_objective,
         _changes(r.old_hparams or {}, r.new_hparams or {})]
        for r in frame.itertuples()
    ]
    return table(columns, rows, text_columns=[columns[-1]])


def schedule_table(run: RunData) -> str:
    """The best member's schedule: from which step (on the weights' clock) which hyperparameters held."""
    best = best_member(run)
    entries = [] if best is None else schedule(run, best)
    names = list(dict.fromkeys(k for _, hp in entries for k in hp))
    return table(["from step", *names], [[step, *(hp.get(n) for n in names)] for step, hp in entries])


def config_block(run: RunData) -> str:
    """The run's raw config table, pretty-printed and escaped."""
    text = json.dumps(run.info.get("config", {}), indent=2, sort_keys=False, default=str)
    return f"<pre>{escape(text)}</pre>"


def comparison_table(labels: Sequence[str], runs: Sequence[RunData]) -> str:
    """Several runs side by side: strategy, seed, status, progress, best objective, its test metrics."""
    tests = sorted({k for run in runs for k in _best_test(run)})
    columns = ["run", "strategy", "seed", "status", "evaluations", "exploits", "best member",
               "best objective", *tests, "budget steps", "wall seconds"]
    rows = []
    for label, run in zip(labels, runs):
        summary, test = run.summary or {}, _best_test(run)
        rows.append([label, run.info.get("strategy"), run.info.get("seed"), run.info.get("status"),
                     len(run.results), len(exploits(run)), *best_objective(run),
                     *(test.get(k) for k in tests), summary.get("budget_steps"), summary.get("wall_seconds")])
    return table(columns, rows, text_columns=["run", "strategy", "status"])
