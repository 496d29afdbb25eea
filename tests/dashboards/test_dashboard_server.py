"""The live dashboard over HTTP: pages, JSON state, figures, versions, refusals and escaping."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dashboard_runs import ManualClock, ToyRunWriter, serving, write_scripted_run, write_toy_run
from dashboards.server import LATEST_EXPLOITS, REFRESH_SECONDS, TOP_MEMBERS, make_server
from models.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def headers(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return dict(response.headers)


def raw(server, method: str, path: str, host: str | None = None) -> int:
    """A request with a path and Host header exactly as given (urllib would normalise them)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{server.server_address[1]}")
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


class Rows(HTMLParser):
    """The body rows (cell texts) of the table inside ``<div id=...>``, and that div's links."""

    def __init__(self, text: str, container: str) -> None:
        super().__init__()
        self.container, self.inside, self.cell = container, False, None
        self.rows: list[list[str]] = []
        self.links: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            self.inside = attrs.get("id") == self.container
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.cell = []
        elif self.inside and tag == "a":
            self.links[attrs["class"]] = attrs["href"]

    def handle_endtag(self, tag):
        if tag == "div":
            self.inside = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    @property
    def body(self) -> list[list[str]]:
        return [row for row in self.rows if row]  # the header row has no <td>


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A folder of two finished toy runs, plus a run outside it reachable by a symlink inside it."""
    folder = tmp_path / "runs"
    write_toy_run(folder / "pbt-seed0", steps=16)
    write_toy_run(folder / "grid-seed0", strategy="grid", steps=16)
    write_toy_run(tmp_path / "outside", steps=8)
    (folder / "sneaky").symlink_to(tmp_path / "outside", target_is_directory=True)
    return folder


def test_lists_runs_of_a_folder_and_a_single_run_but_not_symlinks_out(runs, tmp_path):
    write_toy_run(tmp_path / "single", steps=8)
    with serving([runs, tmp_path / "single"]) as server:
        status, kind, body = get(server.url)
        assert status == 200 and kind.startswith("text/html")
        hrefs = [a["href"] for t, a in Tags(body.decode()).tags if t == "a"]
        assert hrefs == ["/run?id=runs/grid-seed0", "/run?id=runs/pbt-seed0", "/run?id=single"]
        state = json.loads(get(server.url + "api/runs")[2])
        assert "pbt-seed0" in state["html"]["runs"] and "sneaky" not in state["html"]["runs"]


def test_lists_runs_nested_in_folders_as_pbt_compare_writes_them(runs):
    write_toy_run(runs / "digits-compare" / "pbt-seed1", steps=8)
    with serving([runs]) as server:
        hrefs = [a["href"] for t, a in Tags(get(server.url)[2].decode()).tags if t == "a"]
        assert "/run?id=runs/digits-compare/pbt-seed1" in hrefs
        assert get(server.url + "run?id=runs/digits-compare/pbt-seed1")[0] == 200


def test_run_page_state_and_figures(runs):
    with serving([runs]) as server:
        status, _, body = get(server.url + "run?id=runs/pbt-seed0")
        assert status == 200
        page = body.decode()
        images = [a for t, a in Tags(page).tags if t == "img"]
        assert [i["id"] for i in images] == ["fig-objective", "fig-hparams", "fig-lineage", "fig-toy"]
        for image in images:
            status, kind, data = get(server.url.rstrip("/") + image["src"])
            assert (status, kind) == (200, "image/png") and data.startswith(PNG_MAGIC)
        state = json.loads(get(server.url + "api/run?id=runs/pbt-seed0")[2])
        assert set(state["html"]) == {"status", "info", "members", "exploits", "schedule"}
        assert state["html"]["members"].count("<tr") == 1 + 3
        assert get(server.url + "figure?id=runs/pbt-seed0&name=nope&v=1")[0] == 404
        assert get(server.url + "figure?id=runs/grid-seed0&name=objective&name=toy")[0] == 404


def test_run_page_shows_the_best_members_first_and_every_member_on_request(tmp_path):
    population, steps = 256, 8
    objective = lambda m, s: ((m * 37) % 101) / 100 + s  # noqa: E731 - members m and m + 101 tie
    exploits = [(4, m, m + 1, 4) for m in range(0, 60, 2)]
    write_scripted_run(tmp_path / "big", population=population, steps=steps, eval_every=4, objective=objective,
                       mode="min", exploits=exploits)
    ranked = sorted(range(population), key=lambda m: (objective(m, steps), m))  # "min": lowest first, then id
    with serving([tmp_path / "big"]) as server:
        page = get(server.url + "run?id=big")[2].decode()
        members = Rows(page, "members")
        assert [row[:2] for row in members.body] == [[str(i + 1), str(m)] for i, m in enumerate(ranked[:TOP_MEMBERS])]
        assert f"the best {TOP_MEMBERS} of 256 members" in page
        assert members.links == {"show-members": "/run?id=big&members=all"}
        shown = Rows(page, "exploits")
        assert [(int(r[0]), int(r[1])) for r in shown.body] == [(s, m) for s, m, _, _ in exploits[-LATEST_EXPLOITS:]]
        assert shown.links == {"show-exploits": "/run?id=big&exploits=all"}

        everything = get(server.url + "run?id=big&members=all&exploits=all")[2].decode()
        assert [int(row[1]) for row in Rows(everything, "members").body] == ranked
        assert len(Rows(everything, "exploits").body) == len(exploits)
        assert Rows(everything, "members").links == {"show-members": "/run?id=big&exploits=all"}  # back to the best
        [body] = [attrs for tag, attrs in Tags(everything).tags if tag == "body"]
        assert body["data-api"] == "/api/run?id=big&members=all&exploits=all"  # polling keeps every row
        state = json.loads(get(server.url + "api/run?id=big&members=all")[2])
        assert len(Rows(f'<div id="m">{state["html"]["members"]}</div>', "m").body) == population
        assert len(Rows(f'<div id="e">{state["html"]["exploits"]}</div>', "e").body) == LATEST_EXPLOITS

        for query in ("members=some", "exploits=all&exploits=all", "members=ALL"):
            status, kind, text = get(server.url + "run?id=big&" + query)
            assert status == 400 and kind.startswith("text/plain") and text.count(b"\n") == 1, query
        assert get(server.url + "api/run?id=big&members=top")[2] == b"members: must be 'all', got 'top'\n"


def test_a_small_run_shows_every_member_and_no_link(runs):
    with serving([runs]) as server:
        page = get(server.url + "run?id=runs/pbt-seed0")[2].decode()
        assert len(Rows(page, "members").body) == 3 and Rows(page, "members").links == {}
        assert "show all" not in page


def test_paths_outside_the_given_directories_are_refused(runs, tmp_path):
    outside = tmp_path / "outside"
    with serving([runs]) as server:
        for path in [
            "/run?id=../outside", "/run?id=runs/../outside", f"/run?id={outside}", "/run?id=runs/sneaky",
            "/run?id=/etc", "/figure?id=runs/sneaky&name=objective", "/api/run?id=runs/..%2Foutside",
            "/../outside/run.db", "/runs/pbt-seed0/run.db", "/%2e%2e/%2e%2e/etc/passwd",
            "/compare?id=runs/pbt-seed0&id=runs/sneaky", "/run", "/run?id=",
        ]:
            assert raw(server, "GET", path) == 404, path
        assert raw(server, "GET", "/run?id=runs/pbt-seed0") == 200


def test_only_get_and_only_loopback_host_names(runs):
    with serving([runs]) as server:
        assert raw(server, "POST", "/") == 405
        assert raw(server, "GET", "/", host="evil.example") == 403  # a DNS-rebinding page
        assert raw(server, "GET", "/", host=f"localhost:{server.server_address[1]}") == 200


def test_version_changes_when_the_store_is_written_at_most_once_a_refresh_period(tmp_path):
    writer = ToyRunWriter(tmp_path / "live", steps=16)
    writer.advance()
    clock = ManualClock()
    try:
        with serving([tmp_path / "live"], clock=clock) as server:
            api = server.url + "api/run?id=live"
            first, again = json.loads(get(api)[2]), json.loads(get(api)[2])
            assert first["version"] == again["version"]
            writer.advance()
            clock.advance(REFRESH_SECONDS / 2)
            assert json.loads(get(api)[2]) == first  # within the period: the run as last read
            clock.advance(REFRESH_SECONDS / 2)
            second = json.loads(get(api)[2])
            assert second["version"] != first["version"]
            assert "<td>4</td>" in first["html"]["members"] and "<td>8</td>" in second["html"]["members"]
            assert second["img"]["fig-objective"].endswith("v=" + second["version"])
            clock.advance(REFRESH_SECONDS)
            assert json.loads(get(api)[2])["version"] == second["version"]  # not written: same version
    finally:
        writer.finish()


def test_pages_arriving_together_at_a_run_being_written_share_one_read(tmp_path):
    writer = ToyRunWriter(tmp_path / "live", steps=100_000)
    writer.advance()
    clock = ManualClock()  # never moves: after the first read, the run is not read again
    with serving([tmp_path / "live"], clock=clock) as server:
        api = server.url + "api/run?id=live"
        start, stop = threading.Barrier(9), threading.Event()
        versions: list[str] = []

        def write() -> None:
            start.wait()
            while not stop.is_set():
                writer.advance()

        def page() -> None:
            start.wait()
            versions.append(json.loads(get(api)[2])["version"])

        threads = [threading.Thread(target=write), *(threading.Thread(target=page) for _ in range(8))]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join(timeout=60)
        stop.set()
        threads[0].join(timeout=60)
        writer.finish()
        assert len(versions) == 8 and len(set(versions)) == 1, versions


def test_figures_render_at_most_once_a_period_whatever_the_pages_and_the_last_version_renders(tmp_path):
    """Four clients poll as the page does (the state, then every figure it names) while a run is
    written, on the real clock: renders stay within one per figure per started period, and once
    the run finishes, its final state and figures are served, drawn exactly once."""
    refresh = 3.0  # seconds; shorter than the default to keep the test short
    writer = ToyRunWriter(tmp_path / "live", steps=100_000)
    writer.advance()
    with serving([tmp_path / "live"], refresh=refresh) as server:
        api = server.url + "api/run?id=live"
        base = server.url.rstrip("/")
        stop = threading.Event()
        seen: list[dict] = []
        answers: set[tuple] = set()

        def page() -> None:
            while not stop.is_set():
                state = json.loads(get(api)[2])
                answers.update(get(base + url)[:2] for url in state["img"].values())
                seen.append(state)

        started = time.monotonic()
        clients = [threading.Thread(target=page) for _ in range(4)]
        for client in clients:
            client.start()
        while time.monotonic() - started < 1.5 * refresh:
            writer.advance()
            time.sleep(0.02)
        writer.finish()
        finished, deadline = None, time.monotonic() + 60
        while finished is None and time.monotonic() < deadline:
            time.sleep(0.2)
            finished = next((state for state in reversed(seen) if "finished" in state["html"]["status"]), None)
        stop.set()
        for client in clients:
            client.join(timeout=60)
        elapsed = time.monotonic() - started
        assert finished is not None, "the finished run's last version was never served"
        assert answers == {(200, "image/png")}
        figures = len(finished["img"])
        assert figures == 4
        assert len({state["version"] for state in seen}) >= 2  # the run did move while polled
        assert server.cache.renders <= figures * (int(elapsed // refresh) + 1)
        before = server.cache.renders
        for url in finished["img"].values():
            assert url.endswith("v=" + finished["version"])
            assert get(base + url)[2].startswith(PNG_MAGIC)
        assert server.cache.renders == before  # the clients already had the final figures drawn


def test_the_index_is_walked_once_a_period_and_new_runs_appear(runs):
    clock = ManualClock()
    with serving([runs], clock=clock) as server:
        for path in ("", "api/runs", "run?id=runs/pbt-seed0", "api/run?id=runs/pbt-seed0",
                     "figure?id=runs/pbt-seed0&name=objective", "compare?id=runs/pbt-seed0&id=runs/grid-seed0"):
            for _ in range(3):
                assert get(server.url + path)[0] == 200, path
        assert server.index.walks == 1
        write_toy_run(runs / "digits-compare" / "pbt-seed1", steps=8)  # as pbt compare nests a new run
        clock.advance(REFRESH_SECONDS / 2)
        assert "pbt-seed1" not in json.loads(get(server.url + "api/runs")[2])["html"]["runs"]
        assert get(server.url + "run?id=runs/digits-compare/pbt-seed1")[0] == 404
        clock.advance(REFRESH_SECONDS / 2)
        hrefs = [a["href"] for t, a in Tags(get(server.url)[2].decode()).tags if t == "a"]
        assert "/run?id=runs/digits-compare/pbt-seed1" in hrefs
        assert get(server.url + "run?id=runs/digits-compare/pbt-seed1")[0] == 200
        assert server.index.walks == 2


def test_pages_carry_no_inline_code_under_a_policy_of_scripts_from_the_server_only(runs):
    with serving([runs]) as server:
        for path in ("", "run?id=runs/pbt-seed0", "compare?id=runs/pbt-seed0&id=runs/grid-seed0"):
            policy = dict(
                directive.strip().split(" ", 1)
                for directive in headers(server.url + path)["Content-Security-Policy"].split(";")
            )
            assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'", path
            assert "unsafe" not in ";".join(policy.values()), path
            tags = Tags(get(server.url + path)[2].decode()).tags
            assert not [t for t, _ in tags if t == "style"], path
            inline = [(t, name) for t, attrs in tags for name in attrs if name.startswith("on") or name == "style"]
            assert inline == [], path
            scripts = [attrs for t, attrs in tags if t == "script"]
            assert [s.get("src") for s in scripts] == ["/static/dashboard.js"], path
            sheets = [attrs["href"] for t, attrs in tags if t == "link" and attrs.get("rel") == "stylesheet"]
            assert sheets == ["/static/dashboard.css"], path
        status, kind, code = get(server.url + "static/dashboard.js")
        assert (status, kind) == (200, "text/javascript; charset=utf-8") and b"fetch(" in code
        assert get(server.url + "static/dashboard.css")[1] == "text/css; charset=utf-8"
        for path in ("/static/", "/static/nope.js", "/static/../server.py", "/static/%2e%2e/server.py"):
            assert raw(server, "GET", path) == 404, path


def test_compare_view_overlays_the_selected_runs(runs):
    with serving([runs]) as server:
        query = "id=runs/pbt-seed0&id=runs/grid-seed0"
        status, _, body = get(server.url + "compare?" + query)
        assert status == 200
        page = body.decode()
        assert page.count("<tr>") == 1 + 2
        [image] = [a for t, a in Tags(page).tags if t == "img"]
        status, kind, data = get(server.url.rstrip("/") + image["src"])
        assert kind == "image/png" and data.startswith(PNG_MAGIC)
        assert get(server.url + "compare")[0] == 404


def test_strings_from_config_and_trainable_are_escaped(tmp_path):
    write_scripted_run(
        tmp_path / "evil", population=2, steps=8, eval_every=4, hparams={"act": EVIL},
        space={"act": {"choice": [EVIL, "relu"]}}, errors={1: "<img src=x onerror=alert(2)>"},
        config_extra={"note": EVIL},
    )
    with serving([tmp_path / "evil"]) as server:
        for path in ("run?id=evil", "api/run?id=evil", "", "api/runs", "compare?id=evil"):
            text = get(server.url + path)[2].decode()
            assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in get(server.url + "run?id=evil")[2].decode()


def test_bad_directories_and_ports_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        make_server([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="--port"):
        make_server([tmp_path], port=70000)


def test_serve_prints_its_url_and_serves(runs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dashboards.server import serve; serve(sys.argv[1:])", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert get(url)[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
