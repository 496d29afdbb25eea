"""``pbt dashboard``: a live web dashboard of runs on the standard library's ``ThreadingHTTPServer``.

Pages: ``/`` lists the runs under the given directories; ``/run?id=ID`` shows one run's figures and
tables (its best ``TOP_MEMBERS`` members and latest ``LATEST_EXPLOITS`` exploits, with a link to the
rest: ``&members=all``, ``&exploits=all``); ``/compare?id=A&id=B`` overlays several runs. Each page
polls a small JSON endpoint (``/api/...``) every 2 s and swaps in new tables and figure URLs when the
run's version changes, so it follows a run in progress without reloading.

It only reads, and spares a running search: ``load_run`` opens ``run.db`` with a read-only URI, and
a run is re-read only when its files' sizes or modification times change (the *version*), and at
most once every ``REFRESH_SECONDS`` whatever the number of open pages: a request in between gets the
run as last read. Figures are drawn on request from that read and cached by its version, so each
run's figures are rendered at most once a period; a finished run's last version is read (and its
figures drawn) at the first request a period after the previous read. The index of runs is walked
at most once a period too. A run is addressed by an id from that index, never by a path from the
request, so ``..``, absolute paths and symlinks leading out of the directories find nothing. Pages
carry no inline code: the polling script and the style are files under ``/static/``, and the
Content-Security-Policy allows scripts from the server itself only.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from dashboards.figures import figure_names, overlay_figure, png_bytes, render_run_figure
from dashboards.render import (
    STATIC, best_objective, comparison_table, config_block, exploits_table, fmt, info_table,
    members_table, page, schedule_table, table,
)
from dashboards.throttle import RateLimit
from models.errors import ConfigError, PBTError
from search.store import DB_NAME, SUMMARY_NAME, RunData, exploits, load_run

POLL_MS = 2000
# A run is re-read (its figures redrawn), and the index walked, at most this often. Drawing a run's
# figures takes 0.5-0.9 CPU seconds (8 members x 360 evaluations, on 2 busy cores): once a period.
REFRESH_SECONDS = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
Clock = Callable[[], float]

STATIC_FILES = {  # the only files under /static/
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _signature(run_dir: Path) -> tuple:
    """What changes whenever the store or the summary is written: sizes and mtimes of their files."""
    parts = []
    for name in (DB_NAME, f"{DB_NAME}-wal", SUMMARY_NAME):
        try:
            stat = (run_dir / name).stat()
            parts.append((name, stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            parts.append((name, None, None))
    return tuple(parts)


def _digest(value: object) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:12]


class RunIndex:
    """The runs under the dashboard's directories, each a run or a folder of runs, by id.

    The directories are walked at most as often as ``limit`` lets them (``walks`` counts the walks):
    a run that starts under them appears within its period.
    """

    def __init__(self, roots: Sequence[str | Path], limit: RateLimit) -> None:
        if not roots:
            raise ConfigError("dashboard: give at least one run directory or folder of runs")
        self.roots = []
        for root in roots:
            path = Path(root)
            if not path.is_dir():
                raise ConfigError(f"dashboard: {root}: not a directory")
            self.roots.append(path.resolve())
        self.walks = 0
        self._limit = limit
        self._lock = threading.Lock()
        self._found: dict[str, Path] | None = None

    def runs(self) -> dict[str, Path]:
        """``{id: run directory}`` as last walked; walked again if the period has passed."""
        with self._lock:
            if self._limit.allow("walk") or self._found is None:
                self._found = self._walk()
                self.walks += 1
            return dict(self._found)

    def _walk(self) -> dict[str, Path]:
        """A run is a directory at any depth below a root (``pbt compare`` nests its runs) holding
        ``run.db`` that, symlinks resolved, lies inside its root."""
        found: dict[str, Path] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            for candidate in sorted(db.parent for db in root.rglob(DB_NAME)):
                resolved = candidate.resolve()
                db = resolved / DB_NAME
                inside = resolved.is_relative_to(root) and db.resolve().is_relative_to(root)
                if not inside or not db.is_file():
                    continue
                run_id = "/".join((root.name, *candidate.relative_to(root).parts))
                while run_id in found:
                    run_id += "+"
                found[run_id] = resolved
        return found


@dataclass(frozen=True)
class Loaded:
    """A run as read at one version of its files."""

    run: RunData
    version: str


class RunCache:
    """Reads a run again only when its version changes, and at most as often as ``limit`` lets it
    (per run); keeps rendered PNGs by version (``renders`` counts the drawings)."""

    def __init__(self, limit: RateLimit, max_pngs: int = 64) -> None:
        self.renders = 0
        self._limit = limit
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._render_lock = threading.Lock()  # matplotlib is not thread-safe
        self._runs: dict[Path, tuple[tuple, Loaded]] = {}
        self._pngs: OrderedDict[tuple, bytes] = OrderedDict()
        self._max_pngs = max_pngs

    def load(self, run_dir: Path) -> Loaded:
        """The run as last read, read again if it changed and the period has passed (``StoreError``
        if it cannot be read)."""
        signature = _signature(run_dir)
        with self._lock:
            cached = self._runs.get(run_dir)
        if cached is not None and cached[0] == signature:
            return cached[1]
        with self._read_lock:  # requests that arrive during a read get that read, not one each
            with self._lock:
                cached = self._runs.get(run_dir)
            if cached is not None and cached[0] == signature:
                return cached[1]
            if not self._limit.allow(run_dir) and cached is not None:
                return cached[1]
            loaded = Loaded(load_run(run_dir), _digest(signature))
            with self._lock:
                self._runs[run_dir] = (signature, loaded)
            return loaded

    def png(self, key: tuple, draw: Callable[[], object]) -> bytes:
        """The PNG cached under ``key`` (which includes the versions), drawn once if missing."""
        with self._lock:
            if key in self._pngs:
                self._pngs.move_to_end(key)
                return self._pngs[key]
        with self._render_lock:
            with self._lock:
                data = self._pngs.get(key)  # another request may have drawn it meanwhile
            if data is None:
                data = png_bytes(draw())
                with self._lock:
                    self.renders += 1
                    self._pngs[key] = data
                    while len(self._pngs) > self._max_pngs:
                        self._pngs.popitem(last=False)
        return data


class DashboardServer(ThreadingHTTPServer):
    """The dashboard's HTTP server; ``url`` is where it listens."""

    daemon_threads = True

    def __init__(self, run_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 0, *,
                 refresh: float = REFRESH_SECONDS, clock: Clock = time.monotonic) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"--port: must be an integer in 0..65535, got {port!r}")
        self.refresh = refresh
        self.index = RunIndex(run_dirs, RateLimit(refresh, clock))
        self.cache = RunCache(RateLimit(refresh, clock))
        try:
            super().__init__((host, port), DashboardHandler)
        except OSError as exc:
            raise ConfigError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.host = host

    @property
    def url(self) -> str:
        """``http://host:port/`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_address[1]}/"

    def allowed_hosts(self) -> set[str] | None:
        """Host headers accepted when bound to loopback (refuses DNS-rebinding pages); else any."""
        if self.host not in LOOPBACK:
            return None
        port = self.server_address[1]
        return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}


def make_server(run_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 0, *,
                refresh: float = REFRESH_SECONDS, clock: Clock = time.monotonic) -> DashboardServer:
    """A dashboard server over ``run_dirs`` (runs or folders of runs), bound but not yet serving; it
    re-reads a run, and walks the directories, at most once every ``refresh`` seconds of ``clock``."""
    return DashboardServer(run_dirs, host, port, refresh=refresh, clock=clock)


def serve(run_dirs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the dashboard until interrupted; prints its URL (``port=0``: a free port)."""
    server = make_server(run_dirs, host, port)
    if not server.index.runs():
        print(f"pbt dashboard: no runs under {', '.join(map(str, run_dirs))} yet; new runs appear as they start",
              file=sys.stderr)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class NotFound(Exception):
    """The request names no page, run or figure the dashboard has."""


class BadRequest(Exception):
    """A query parameter the dashboard knows, with a value it does not (the message says which)."""


TOP_MEMBERS = 20  # the run page's members table: the best this many, unless asked for all
LATEST_EXPLOITS = 20  # and its exploits table: the latest this many
LIMITS = {"members": TOP_MEMBERS, "exploits": LATEST_EXPLOITS}


def shown_in_full(query: dict[str, list[str]]) -> frozenset[str]:
    """The run page's tables asked for in full: ``members=all``, ``exploits=all`` (``BadRequest``
    for another value)."""
    full = set()
    for name in LIMITS:
        values = query.get(name, [])
        if values == ["all"]:
            full.add(name)
        elif values:
            raise BadRequest(f"{name}: must be 'all', got {', '.join(map(repr, values))}")
    return frozenset(full)


def _run_query(run_id: str, full: frozenset[str]) -> str:
    return "&".join([f"id={quote(run_id)}", *(f"{name}=all" for name in LIMITS if name in full)])


class DashboardHandler(BaseHTTPRequestHandler):
    """GET-only routes; everything it sends is built from escaped strings."""

    server: DashboardServer
    server_version = "pbt-dashboard"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: the pages poll every ``POLL_MS``."""

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        allowed = self.server.allowed_hosts()
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain; charset=utf-8")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        routes = {
            "/": self._index_page, "/api/runs": self._index_state,
            "/run": self._run_page, "/api/run": self._run_state, "/figure": self._figure,
            "/compare": self._compare_page, "/api/compare": self._compare_state,
            "/compare/figure": self._compare_figure,
        }
        routes.update({f"/static/{name}": partial(self._static, name) for name in STATIC_FILES})
        handler = routes.get(url.path)
        try:
            if handler is None:
                raise NotFound(url.path)
            handler(query)
        except NotFound:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        except BadRequest as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode(), "text/plain; charset=utf-8")
        except PBTError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n".encode(), "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    do_POST = do_PUT = do_DELETE = do_HEAD  # noqa: N815

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, data: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()
        self.wfile.write(data)

    def _html(self, title: str, body: str, api: str, version: str) -> None:
        attrs = f' data-api="{escape(api)}" data-version="{escape(version)}" data-poll-ms="{POLL_MS}"'
        footer = (f'<p class="muted">updated <span id="polled">(live: polling every {POLL_MS / 1000:g} s, '
                  f'new data at most every {self.server.refresh:g} s)</span></p>')
        document = page(title, body + footer, body_attrs=attrs, stylesheet="/static/dashboard.css",
                        script="/static/dashboard.js")
        self._send(HTTPStatus.OK, document.encode(), "text/html; charset=utf-8")

    def _static(self, name: str, query: dict) -> None:
        self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), STATIC_FILES[name], cache="no-cache")

    def _json(self, state: dict) -> None:
        self._send(HTTPStatus.OK, json.dumps(state).encode(), "application/json")

    def _png(self, data: bytes) -> None:
        self._send(HTTPStatus.OK, data, "image/png", cache="private, max-age=3600")

    def _run_dir(self, query: dict[str, list[str]]) -> tuple[str, Path]:
        ids = query.get("id", [])
        runs = self.server.index.runs()
        if len(ids) != 1 or ids[0] not in runs:
            raise NotFound(ids)
        return ids[0], runs[ids[0]]

    # -- the list of runs ------------------------------------------------------------------------
    def _index_parts(self) -> tuple[str, str]:
        rows, versions = [], []
        runs = self.server.index.runs()
        for run_id, run_dir in runs.items():
            link = f'<a href="/run?id={escape(quote(run_id))}">{escape(run_id)}</a>'
            pick = f'<input type="checkbox" name="id" value="{escape(run_id)}">'
            try:
                loaded = self.server.cache.load(run_dir)
            except PBTError as exc:
                rows.append([pick, link, "", "", "unreadable", "", "", "", str(exc)])
                continue
            run = loaded.run
            best, objective = best_objective(run)
            versions.append(loaded.version)
            rows.append([pick, link, run.info.get("strategy"), run.info.get("seed"),
                         run.info.get("status"), run.info.get("population"), len(run.results),
                         fmt(objective) + ("" if best is None else f" (member {best})"), ""])
        columns = ["", "run", "strategy", "seed", "status", "population", "evaluations",
                   "best objective", "problem"]
        html = table(columns, rows, raw_columns=["", "run"], text_columns=["run", "problem"])
        return html, _digest((sorted(runs), versions))

    def _index_page(self, query: dict) -> None:
        html, version = self._index_parts()
        roots = ", ".join(escape(str(root)) for root in self.server.index.roots)
        body = (
            f"<h1>Runs</h1><p class=\"muted\">under {roots}</p>"
            f'<form action="/compare" method="get"><div id="runs">{html}</div>'
            '<button type="submit">compare selected runs</button></form>'
        )
        self._html("pbt dashboard: runs", body, "/api/runs", version)

    def _index_state(self, query: dict) -> None:
        html, version = self._index_parts()
        self._json({"version": version, "html": {"runs": html}, "img": {}})

    # -- one run ---------------------------------------------------------------------------------
    def _run_state_dict(self, run_id: str, loaded: Loaded, full: frozenset[str]) -> dict:
        run = loaded.run
        status = escape(str(run.info.get("status")))
        members = None if "members" in full else TOP_MEMBERS
        latest = None if "exploits" in full else LATEST_EXPLOITS
        return {
            "version": loaded.version,
            "html": {
                "status": f'<span class="status-{status}">{status}</span>',
                "info": info_table(run),
                "members": self._shown("members", len(run.members), run_id, full, "best")
                + members_table(run, members),
                "exploits": self._shown("exploits", len(exploits(run)), run_id, full, "latest")
                + exploits_table(run, latest),
                "schedule": schedule_table(run),
            },
            "img": {
                f"fig-{name}": f"/figure?id={quote(run_id)}&name={name}&v={loaded.version}"
                for name in figure_names(run)
            },
        }

    @staticmethod
    def _shown(name: str, total: int, run_id: str, full: frozenset[str], order: str) -> str:
        """The line above a table that may be cut: how many rows it shows, and a link to the rest
        (or back)."""
        limit = LIMITS[name]
        if total <= limit:
            return ""
        if name in full:
            href, text = f"/run?{_run_query(run_id, full - {name})}", f"show the {order} {limit} only"
            shown = f"all {total:,} {name}"
        else:
            href, text = f"/run?{_run_query(run_id, full | {name})}", f"show all {total:,}"
            shown = f"the {order} {limit} of {total:,} {name}"
        return (f'<p class="muted shown">{escape(shown)}: <a class="show-{name}" '
                f'href="{escape(href)}">{escape(text)}</a></p>')

    def _run_page(self, query: dict) -> None:
        run_id, run_dir = self._run_dir(query)
        full = shown_in_full(query)
        loaded = self.server.cache.load(run_dir)
        state = self._run_state_dict(run_id, loaded, full)
        parts = state["html"]
        figures = "".join(
            f'<img class="figure" id="{escape(key)}" alt="{escape(key)}" src="{escape(url)}">'
            for key, url in state["img"].items()
        )
        body = (
            f'<p><a href="/">all runs</a></p><h1>{escape(run_id)} '
            f'<small id="status">{parts["status"]}</small></h1>'
            f'<div id="info">{parts["info"]}</div>'
            f'<h2>Members</h2><div id="members">{parts["members"]}</div>'
            f'<h2>Figures</h2><div id="figures">{figures}</div>'
            f'<h2>Best member\'s schedule (through its lineage)</h2><div id="schedule">{parts["schedule"]}</div>'
            f'<h2>Exploits</h2><div id="exploits">{parts["exploits"]}</div>'
            f"<h2>Config</h2>{config_block(loaded.run)}"
        )
        self._html(f"pbt dashboard: {run_id}", body, f"/api/run?{_run_query(run_id, full)}", loaded.version)

    def _run_state(self, query: dict) -> None:
        run_id, run_dir = self._run_dir(query)
        full = shown_in_full(query)
        self._json(self._run_state_dict(run_id, self.server.cache.load(run_dir), full))

    def _figure(self, query: dict) -> None:
        run_id, run_dir = self._run_dir(query)
        loaded = self.server.cache.load(run_dir)
        names = query.get("name", [])
        if len(names) != 1 or names[0] not in figure_names(loaded.run):
            raise NotFound(names)
        name = names[0]
        self._png(self.server.cache.png(
            (run_dir, name, loaded.version), lambda: render_run_figure(loaded.run, name)
        ))

    # -- several runs ------------------------------------------------------------------------------
    def _selected(self, query: dict) -> list[tuple[str, Loaded]]:
        runs = self.server.index.runs()
        ids = list(dict.fromkeys(query.get("id", [])))
        if not ids or any(run_id not in runs for run_id in ids):
            raise NotFound(ids)
        return [(run_id, self.server.cache.load(runs[run_id])) for run_id in ids]

    def _compare_state_dict(self, selected: list[tuple[str, Loaded]]) -> dict:
        ids = [run_id for run_id, _ in selected]
        version = _digest([loaded.version for _, loaded in selected])
        query = "&".join(f"id={quote(run_id)}" for run_id in ids)
        return {
            "version": version,
            "html": {"table": comparison_table(ids, [loaded.run for _, loaded in selected])},
            "img": {"fig-overlay": f"/compare/figure?{query}&v={version}"},
        }

    def _compare_page(self, query: dict) -> None:
        selected = self._selected(query)
        state = self._compare_state_dict(selected)
        ids = [run_id for run_id, _ in selected]
        api = "/api/compare?" + "&".join(f"id={quote(run_id)}" for run_id in ids)
        body = (
            f'<p><a href="/">all runs</a></p><h1>Comparing {len(ids)} runs</h1>'
            f'<div id="table">{state["html"]["table"]}</div>'
            f'<div id="figures"><img class="figure" id="fig-overlay" alt="best objective so far" '
            f'src="{escape(state["img"]["fig-overlay"])}"></div>'
        )
        self._html("pbt dashboard: comparison", body, api, state["version"])

    def _compare_state(self, query: dict) -> None:
        self._json(self._compare_state_dict(self._selected(query)))

    def _compare_figure(self, query: dict) -> None:
        selected = self._selected(query)
        key = ("compare", *((run_id, loaded.version) for run_id, loaded in selected))
        ids, runs = [r for r, _ in selected], [loaded.run for _, loaded in selected]
        self._png(self.server.cache.png(key, lambda: overlay_figure(runs, ids)))

