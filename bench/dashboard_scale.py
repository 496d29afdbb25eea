"""How fast the dashboard answers for a large population (issue 13); prints ONE JSON line.

For each population (256 and 1,024 members), an asynchronous PBT search is first run for real
(``pbt.api.run`` on one embedded local Ray, loopback only): the noisy quadratic model of
examples/nqm.toml with learning rate and momentum searched, 1,000 steps per member, evaluated and
ready every 100 (PBT's other settings its defaults), on 2 workers. Then, for each of ``REPEATS``
rounds, a new dashboard server (an empty cache: the run is read from its store and every figure
drawn, nothing kept from a previous request; the operating system's file cache is not dropped) is
started in this process and asked, over HTTP on loopback, for the run's page and then for each
figure the page names, one after another, then for the page with every member and every exploit
(``members=all&exploits=all``). The line gives, per population, the median over rounds of each
request's seconds (``page_s``, ``figure_s``, ``every_row_page_s``), the slowest round's, the CPU
seconds the process spent on the page and on each figure (``page_cpu_s``, ``figure_cpu_s``: what the
request costs whatever else the machine runs; on shared cores the wall seconds grow with the load),
the pages' sizes, the run's size (members, evaluations, exploits), the seconds its search took and
the machine's load average when measured. Target: the page and every figure <= 1 s at 1,024 members.

    python bench/dashboard_scale.py [--runs DIR]   # a few minutes on 2 quiet cores

``--runs DIR`` keeps the runs in DIR (``pop256``, ``pop1024``) and measures a finished run found
there again instead of running its search anew.
"""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback only (DESIGN §6): before ray's import

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
import urllib.request  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from dashboards.server import make_server  # noqa: E402
from search.store import SUMMARY_NAME, exploits, load_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "nqm.toml"
POPULATIONS = (256, 1024)
STEPS, EVERY = 1000, 100
WORKERS = 2
REPEATS = 3


def nqm_config(population: int) -> Any:
    """examples/nqm.toml at ``population`` x 1,000 steps, ready every 100, momentum searched too."""
    from pbt.config import parse_config

    raw = tomllib.loads(CONFIG.read_text())
    raw["budget"].update(population=population, steps=STEPS, eval_every=EVERY)
    raw["space"]["momentum"] = {"uniform": [0.0, 0.9]}
    raw["pbt"] = {"interval": EVERY, "synchronous": False}
    return parse_config(raw, source=str(CONFIG))


def write_run(population: int, out: Path) -> float | None:
    """The search's wall seconds, run into ``out``; ``None`` when ``out`` already holds it finished."""
    from pbt.api import run

    if (out / SUMMARY_NAME).is_file():
        return None
    started = time.perf_counter()
    run(nqm_config(population), strategy="pbt", seed=0, out=out, workers=WORKERS)
    return time.perf_counter() - started


class Images(HTMLParser):
    """The ``src`` of every ``<img>`` of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def timed_get(url: str) -> tuple[float, float, bytes]:
    """Wall seconds, this process's CPU seconds (the server's thread, and the client's little) and
    the body of a GET."""
    started, cpu = time.perf_counter(), time.process_time()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, time.process_time() - cpu, body


def one_round(run_dir: Path) -> dict[str, Any]:
    """A new server (empty cache): the run's page, then each of its figures, timed."""
    server = make_server([run_dir], host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page_s, page_cpu_s, page = timed_get(f"{server.url}run?id={run_dir.name}")
        figures, figures_cpu = {}, {}
        for source in Images(page.decode()).sources:
            name = source.split("name=")[1].split("&")[0]
            figures[name], figures_cpu[name], png = timed_get(server.url.rstrip("/") + source)
            assert png.startswith(b"\x89PNG"), name
        every_row_s, _, every_row = timed_get(f"{server.url}run?id={run_dir.name}&members=all&exploits=all")
        return {"page_s": page_s, "page_cpu_s": page_cpu_s, "figure_s": figures, "figure_cpu_s": figures_cpu,
                "page_bytes": len(page), "every_row_s": every_row_s, "every_row_bytes": len(every_row)}
    finally:
        server.shutdown()
        server.server_close()


def measure(run_dir: Path, search_s: float | None) -> dict[str, Any]:
    """The run's size and the median (and slowest) of ``REPEATS`` rounds of ``one_round``."""
    rounds = [one_round(run_dir) for _ in range(REPEATS)]
    run = load_run(run_dir)
    names = list(rounds[0]["figure_s"])
    return {
        "population": int(run.info["population"]), "evaluations": len(run.results), "exploits": len(exploits(run)),
        "search_s": None if search_s is None else round(search_s, 1),
        "page_s": round(statistics.median(r["page_s"] for r in rounds), 3),
        "figure_s": {n: round(statistics.median(r["figure_s"][n] for r in rounds), 3) for n in names},
        "page_cpu_s": round(statistics.median(r["page_cpu_s"] for r in rounds), 3),
        "figure_cpu_s": {n: round(statistics.median(r["figure_cpu_s"][n] for r in rounds), 3) for n in names},
        "slowest_round": {"page_s": round(max(r["page_s"] for r in rounds), 3),
                          "figure_s": {n: round(max(r["figure_s"][n] for r in rounds), 3) for n in names}},
        "page_kb": round(rounds[0]["page_bytes"] / 1024, 1),
        "every_row_page_s": round(statistics.median(r["every_row_s"] for r in rounds), 3),
        "every_row_page_kb": round(rounds[0]["every_row_bytes"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="keep the runs here (and reuse finished ones)")
    args = parser.parse_args()
    from workers.cluster import connect, disconnect

    with tempfile.TemporaryDirectory(prefix="dashboard-scale-") as scratch:
        runs = args.runs or Path(scratch)
        runs.mkdir(parents=True, exist_ok=True)
        run_dirs = {population: runs / f"pop{population}" for population in POPULATIONS}
        started = not all((run_dir / SUMMARY_NAME).is_file() for run_dir in run_dirs.values()) and connect(None)
        try:  # every search first, then the measurements, with Ray shut down
            search_s = {population: write_run(population, run_dir) for population, run_dir in run_dirs.items()}
        finally:
            if started:
                disconnect()
        line = {"populations": [measure(run_dirs[p], search_s[p]) for p in POPULATIONS],
                "repeats": REPEATS, "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 1)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
