"""``pbt report DIR``: one self-contained ``report.html`` per run (figures inlined, no external URLs)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from dashboards.figures import figure_names, png_bytes, render_run_figure
from dashboards.render import (
    config_block, exploits_table, info_table, members_table, page, schedule_table,
)
from search.store import load_run

REPORT_NAME = "report.html"


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html``: the run's figures as base64 PNGs, its tables and config.

    Raises ``StoreError`` when ``run_dir`` is not a readable run. Returns the path written.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    figures = "\n".join(
        f'<img class="figure" alt="{escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png_bytes(render_run_figure(run, name))).decode("ascii")}">'
        for name in figure_names(run)
    )
    title = f"{run_dir.name}: {run.info.get('strategy')} run report"
    body = (
        f"<h1>{escape(title)}</h1>\n<h2>Run</h2>\n{info_table(run)}\n"
        f"<h2>Figures</h2>\n{figures}\n"
        f"<h2>Best member's schedule (through its lineage)</h2>\n{schedule_table(run)}\n"
        f"<h2>Members</h2>\n{members_table(run)}\n"
        f"<h2>Exploits</h2>\n{exploits_table(run)}\n"
        f"<h2>Config</h2>\n{config_block(run)}"
    )
    path = run_dir / REPORT_NAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page(title, body), encoding="utf-8")
    tmp.replace(path)
    return path
