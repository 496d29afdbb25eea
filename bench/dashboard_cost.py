"""What the live dashboard costs a running search (issue 9 §6); prints ONE JSON line.

An asynchronous PBT search of the digits MLP (examples/digits.toml with 8 members x 180,000 steps,
evaluated and ready every 500; about 75 s on 2 quiet cores) runs ``REPEATS`` times without the
dashboard and ``REPEATS`` times with the run's page open, in the order without, with, with,
without, ... (a steady drift in the machine's load weighs on both alike), on 2 workers of one
local Ray. With the page, the dashboard serves the folder of runs from a process of its own (this
script with ``--serve``: the server ``pbt dashboard`` runs) and headless Chromium (Debian's,
through chromedriver, as tests/dashboards/test_dashboard_browser.py drives it) opens the run's
page as soon as the dashboard lists the run and leaves it polling, as a user's browser does,
until the search has ended and the page shows its final state and figures. Chromium and the
dashboard share the 2 cores with Ray's workers: their CPU counts against the search.

Per run: utilisation = train seconds / (wall seconds x workers), as in runner_overhead.py and
pbt_overhead.py (the runner's clock starts once its workers are up); steps/s = optimizer steps /
wall seconds. Utilisation does not see CPU taken from a worker while it trains (its train seconds
stretch with it; Ray runs its workers at nice 15, so the dashboard and Chromium, at nice 0, go
first); steps/s does, but also sees everything else running on the machine. So the line gives
both ratios, with over without (medians), and, robust to other load, what the page itself took:
CPU seconds of the dashboard's process and of Chromium's processes during the search, as a share
of the machine (their CPU / (seconds x cores)). Also, with the page: figure renders and index
walks of the dashboard, and seconds from the search's end to its final figures on the page.

    python bench/dashboard_cost.py            # ~10 minutes on 2 quiet cores; far longer on busy ones
"""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback only (DESIGN §6): before ray's import

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from dashboards.server import REFRESH_SECONDS, make_server  # noqa: E402

from pbt_overhead import digits_config  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
WORKERS = 2
REPEATS = 3
POPULATION, STEPS, EVERY = 8, 180_000, 500
SHOWN_TIMEOUT_S = 60.0


def serve_dashboard(folder: str) -> None:
    """The dashboard's process: serves ``folder`` on a free loopback port and prints its URL; when
    its stdin closes, prints its figure renders and index walks as JSON."""
    server = make_server([folder], host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.shutdown()
    print(json.dumps({"renders": server.cache.renders, "walks": server.index.walks}), flush=True)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its living descendants, from /proc."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime + stime
    tree = {pid}
    while True:
        grown = tree | {child for child, (parent, _) in stats.items() if parent in tree}
        if grown == tree:
            return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")
        tree = grown


def chromium(profile: Path) -> Any:
    """Headless Chromium with a fresh profile, no sync and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def open_when_listed(browser: Any, page: str, stop: threading.Event) -> None:
    """Open ``page`` in ``browser`` once the dashboard serves it (it lists a new run within its
    refresh period)."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(page, timeout=10) as response:
                if response.status == 200:
                    browser.get(page)
                    return
        except urllib.error.HTTPError:
            pass
        stop.wait(0.5)


def final_state_shown(browser: Any) -> bool:
    """Whether the page shows a finished run, with every figure loaded at the page's version."""
    return browser.execute_script(
        "const v = document.body.dataset.version;"
        "const figures = [...document.querySelectorAll('img.figure')];"
        "return document.getElementById('status').textContent.trim() === 'finished' && figures.length > 0"
        " && figures.every(i => i.complete && i.naturalWidth > 0 && i.src.endsWith('v=' + v));")


def search(config: Any, out: Path) -> dict[str, Any]:
    """One search into ``out``; its utilisation and throughput."""
    from pbt.api import run

    summary = run(config, strategy="pbt", seed=0, out=out, workers=WORKERS)
    wall, train = summary["wall_seconds"], summary["train_seconds"]
    return {"wall_s": round(wall, 2), "train_s": round(train, 2),
            "utilisation": round(train / (wall * WORKERS), 4),
            "steps_per_s": round(summary["budget_steps"] / wall, 1), "exploits": summary["exploits"]}


def with_page(config: Any, folder: Path, name: str, profile: Path) -> dict[str, Any]:
    """The search with its page open in Chromium, served by a dashboard process of its own."""
    dashboard = subprocess.Popen([sys.executable, __file__, "--serve", str(folder)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    browser, stop = None, threading.Event()
    try:
        url = dashboard.stdout.readline().strip()
        browser = chromium(profile)
        page = f"{url}run?id={folder.name}/{name}"
        opener = threading.Thread(target=open_when_listed, args=(browser, page, stop), daemon=True)
        opener.start()
        processes = {"dashboard": dashboard.pid, "chromium": browser.service.process.pid}
        cpu_before = {k: tree_cpu_seconds(pid) for k, pid in processes.items()}
        started = time.monotonic()
        figures = search(config, folder / name)
        ended = time.monotonic()
        cpu = {k: tree_cpu_seconds(pid) - cpu_before[k] for k, pid in processes.items()}
        opener.join()
        while not final_state_shown(browser):
            if time.monotonic() - ended > SHOWN_TIMEOUT_S:
                raise RuntimeError(f"the page did not show the finished run within {SHOWN_TIMEOUT_S:g} s")
            time.sleep(0.2)
        figures["final_shown_s"] = round(time.monotonic() - ended, 1)
        figures.update({f"{k}_cpu_s": round(v, 2) for k, v in cpu.items()})
        figures["page_cpu_share"] = round(sum(cpu.values()) / ((ended - started) * os.cpu_count()), 4)
    finally:
        stop.set()
        if browser is not None:
            browser.quit()
        out, _ = dashboard.communicate(timeout=60)
    return {**figures, **{f"dashboard_{k}": v for k, v in json.loads(out.splitlines()[-1]).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", metavar="FOLDER", help=argparse.SUPPRESS)  # the dashboard's process
    args = parser.parse_args()
    if args.serve:
        serve_dashboard(args.serve)
        return
    import ray

    config = digits_config(POPULATION, STEPS, EVERY)
    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # a Ray of its own, never a cluster already running here
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "runs"
            runs = []
            for i in range(2 * REPEATS):  # without, with, with, without, ...
                if i % 4 in (1, 2):
                    figures = with_page(config, folder, f"with-{i}", Path(tmp) / f"profile-{i}")
                else:
                    figures = search(config, folder / f"without-{i}")
                runs.append({"page": i % 4 in (1, 2), **figures})
    finally:
        ray.shutdown()

    def median(key: str, page: bool) -> float:
        return statistics.median(run[key] for run in runs if run["page"] == page)

    line = {
        "bench": "dashboard_cost",
        "search": f"digits mlp, async PBT, {POPULATION} members x {STEPS} steps, interval {EVERY}, "
                  f"{WORKERS} workers",
        "utilisation_with_page": median("utilisation", True), "utilisation_without": median("utilisation", False),
        "utilisation_ratio": round(median("utilisation", True) / median("utilisation", False), 4),
        "steps_per_s_with_page": median("steps_per_s", True), "steps_per_s_without": median("steps_per_s", False),
        "throughput_ratio": round(median("steps_per_s", True) / median("steps_per_s", False), 4),
        "page_cpu_share": median("page_cpu_share", True),
        "figure_renders": sum(run.get("dashboard_renders", 0) for run in runs),
        "refresh_s": REFRESH_SECONDS, "cores": os.cpu_count(),
        "runs": runs,
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
