"""``summary.json`` (DESIGN §5), derived from what the store holds so that a resumed run and an
uninterrupted one summarise alike."""

from __future__ import annotations

import math
from typing import Any

from search.store import HP_PREFIX, RunData, best_member, hparam_names, schedule


def summarize(run: RunData, *, budget_steps: int, wall_seconds: float, train_seconds: float) -> dict[str, Any]:
    """The summary of ``run``; ``budget_steps`` and the times come from the runner."""
    info = run.info
    failed = sorted(int(m) for m in run.members.loc[run.members["status"] == "failed", "member"])
    summary: dict[str, Any] = {
        "strategy": info["strategy"], "seed": info["seed"], "population": info["population"],
        "steps_per_member": info["steps_per_member"], "budget_steps": budget_steps,
        "wall_seconds": wall_seconds, "train_seconds": train_seconds, "exploits": int((run.events["kind"] == "exploit").sum()),
        "objective": info["objective"], "mode": info["mode"], "failed_members": failed, "best": None,
    }
    best = best_member(run)
    if best is not None:
        member = run.members.set_index("member").loc[best]
        rows = run.results[run.results["member"] == best]
        final = rows.loc[rows["step"].idxmax()] if not rows.empty else None
        test = {} if final is None else {
            k: float(final[k]) for k in sorted(rows.columns) if k.startswith("test_") and not math.isnan(final[k])}
        summary["best"] = {
            "member": best, "objective": float(member["objective"]), "test": test,
            "hparams": {name: _plain(member[HP_PREFIX + name]) for name in hparam_names(run.members)},
            "schedule": [[step, hparams] for step, hparams in schedule(run, best)],
        }
    return summary


def _plain(value: Any) -> Any:
    """numpy scalars from pandas back to Python numbers, as the config had them."""
    return value.item() if hasattr(value, "item") else value
