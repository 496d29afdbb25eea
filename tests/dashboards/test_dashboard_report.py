"""``write_report``: one self-contained, escaped HTML file with the run's figures and tables."""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from html.parser import HTMLParser

import pytest

from dashboard_runs import write_scripted_run
from dashboards.report import write_report
from models.errors import StoreError
from search.store import RunStore, exploits, load_run, member_ranking
from search.summary import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


class Collector(HTMLParser):
    """Tags, their attributes, and the rows of each table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    return collector


def test_report_embeds_every_figure_and_tables_offline(pbt_run):
    path = write_report(pbt_run)
    assert path == pbt_run / "report.html"
    text = path.read_text()
    doc = parse(text)
    images = [attrs for tag, attrs in doc.tags if tag == "img"]
    assert [i["alt"] for i in images] == ["objective", "hparams", "lineage", "toy"]
    for image in images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix):]).startswith(PNG_MAGIC)
    # offline: nothing is fetched from anywhere
    links = [v for _, attrs in doc.tags for k, v in attrs.items() if k in ("src", "href", "action")]
    assert links and all(v.startswith("data:image/png;base64,") for v in links)
    assert "url(" not in text and "@import" not in text
    assert not [t for t, a in doc.tags if t in ("script", "link", "iframe", "object")]
    run = load_run(pbt_run)
    info, schedule, members, exploit_rows = doc.tables[:4]
    assert len(members) == 1 + len(run.members)
    assert members[0][:5] == ["rank", "member", "status", "step", "objective"]
    assert [row[1] for row in members[1:]] == [str(m) for m in member_ranking(run)]  # every member, best first
    assert len(exploit_rows) == 1 + len(exploits(run))
    assert [row[0] for row in schedule[1:]] == [str(s) for s, _ in run.summary["best"]["schedule"]]
    assert ["best member", str(run.summary["best"]["member"])] in info
    [config] = re.findall(r"<pre>(.*?)</pre>", text, re.S)
    assert json.loads(unescape(config)) == run.info["config"]


def test_report_escapes_every_string_from_config_and_trainable(tmp_path):
    run_dir = write_scripted_run(
        tmp_path / "evil", population=2, steps=8, eval_every=4, exploits=[(4, 0, 1, 4)],
        hparams={"act": EVIL}, space={"act": {"choice": [EVIL, "relu"]}},
        errors={1: "<img src=x onerror=alert(2)>"}, config_extra={"note": EVIL},
    )
    text = write_report(run_dir).read_text()
    doc = parse(text)
    assert [t for t, _ in doc.tags if t == "script"] == []
    assert [a for t, a in doc.tags if t == "img" and a.get("src") == "x"] == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text


def test_report_of_a_directory_that_is_no_run_raises_store_error(tmp_path):
    with pytest.raises(StoreError, match="not a run directory"):
        write_report(tmp_path)


def test_report_of_a_run_whose_members_all_failed_has_no_best_member(tmp_path):
    run_dir = write_scripted_run(tmp_path / "failed", population=2, steps=4, eval_every=4,
                                 objective=lambda m, s: float("nan"), errors={0: "boom", 1: "boom"})
    summary = summarize(load_run(run_dir), budget_steps=8, wall_seconds=1.0, train_seconds=0.5)
    assert summary["best"] is None
    RunStore.open(run_dir).write_summary(summary)
    cells = [row[0] for t in parse(write_report(run_dir).read_text()).tables for row in t if row]
    assert "budget steps" in cells and "best member" not in cells
