"""The dashboard in a real headless Chromium, following a run that is still being written, and on a
1,024-member run, under the server's Content-Security-Policy (the polling script is a file; nothing
inline may run).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package: skipped without
them locally, a failure when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from dashboard_runs import ToyRunWriter, serving, write_scripted_run, write_toy_run
from dashboards.server import LATEST_EXPLOITS, REFRESH_SECONDS, TOP_MEMBERS

CHROMEDRIVER = "/usr/bin/chromedriver"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _chromium() is None or not Path(CHROMEDRIVER).is_file():
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium with a fresh profile, no sync, no background traffic."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP refusals are console errors
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _loaded(driver, image_id: str) -> bool:
    return driver.execute_script(
        "const i = document.getElementById(arguments[0]);"
        "return !!i && i.complete && i.naturalWidth > 0;", image_id)


def _member_steps(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#members tbody tr')].map(r => r.cells[3].textContent);")


def _member_rows(driver) -> list[list[str]]:
    """Rank and member of each row of the members table."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#members tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent]);")


def _refused(driver) -> list[str]:
    """The console's Content-Security-Policy refusals since last asked."""
    messages = [entry["message"] for entry in driver.get_log("browser")]
    return [message for message in messages if "Content Security Policy" in message]


def test_dashboard_follows_a_run_in_progress_without_reloading(browser, tmp_path):
    from selenium.webdriver.common.by import By

    write_toy_run(tmp_path / "runs" / "grid-seed0", strategy="grid", steps=16)
    writer = ToyRunWriter(tmp_path / "runs" / "pbt-seed0", steps=40)
    for _ in range(2):
        writer.advance()
    try:
        with serving([tmp_path / "runs"]) as server:
            browser.get(server.url)
            links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#runs a")]
            assert links == ["runs/grid-seed0", "runs/pbt-seed0"]

            browser.get(server.url + "run?id=runs/pbt-seed0")
            assert _member_steps(browser) == ["8", "8", "8"]
            _wait(browser, lambda d: _loaded(d, "fig-objective") and _loaded(d, "fig-toy"))
            first_src = browser.find_element(By.ID, "fig-objective").get_attribute("src")
            browser.execute_script("window.__stillTheSamePage = 42;")

            # a driver thread appends results through the real RunStore while the page is open
            appender = threading.Thread(target=lambda: [writer.advance() for _ in range(3)])
            appender.start()
            appender.join(timeout=30)
            # the server re-reads the run at most once every REFRESH_SECONDS; the page polls every 2 s
            _wait(browser, lambda d: _member_steps(d) == ["20", "20", "20"], timeout=REFRESH_SECONDS + 20)
            _wait(browser, lambda d: d.find_element(By.ID, "fig-objective").get_attribute("src") != first_src
                  and _loaded(d, "fig-objective"))
            assert browser.execute_script("return window.__stillTheSamePage;") == 42  # never reloaded
            assert browser.execute_script(
                "return [...document.scripts].map(s => s.src.replace(location.origin, ''));"
            ) == ["/static/dashboard.js"]
            exploit_rows = browser.find_elements(By.CSS_SELECTOR, "#exploits tbody tr")
            assert len(exploit_rows) == writer.exploits >= 1

            browser.get(server.url + "compare?id=runs/pbt-seed0&id=runs/grid-seed0")
            _wait(browser, lambda d: _loaded(d, "fig-overlay"))
            assert len(browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")) == 2
            assert _refused(browser) == []
    finally:
        writer.finish()


def test_a_1024_member_run_reads_at_a_glance_best_members_first_every_member_on_request(browser, tmp_path):
    from selenium.webdriver.common.by import By

    population, steps, every = 1024, 40, 4
    objective = lambda m, s: ((m * 37 + s) % 1009) / 1000 + s / 10  # noqa: E731
    exploits = [(step, m, (m * 31 + step) % 256, step)
                for step in range(8, steps, 8) for m in range(256, population) if m % 4 == step // 8 % 4]
    write_scripted_run(tmp_path / "runs" / "big", population=population, steps=steps, eval_every=every,
                       objective=objective, exploits=exploits,
                       hparams=lambda m, s: {"lr": 10.0 ** (-4 + 4 * ((m * 7 + s) % 97) / 97)})
    ranked = sorted(range(population), key=lambda m: (-objective(m, steps), m))
    with serving([tmp_path / "runs"]) as server:
        browser.get(server.url + "run?id=runs/big")
        assert _member_rows(browser) == [[str(i + 1), str(m)] for i, m in enumerate(ranked[:TOP_MEMBERS])]
        _wait(browser, lambda d: all(_loaded(d, f"fig-{name}") for name in ("objective", "hparams", "lineage")))
        sizes = browser.execute_script(
            "return Object.fromEntries([...document.images].map(i => [i.id, i.naturalHeight]));")
        assert sizes["fig-lineage"] < 1000  # collapsed to ~15 rows, not a row per member (2,000 px)

        browser.find_element(By.CSS_SELECTOR, "#members a.show-members").click()
        _wait(browser, lambda d: len(_member_rows(d)) == population)
        assert _member_rows(browser) == [[str(i + 1), str(m)] for i, m in enumerate(ranked)]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#exploits tbody tr")) == LATEST_EXPLOITS
        browser.find_element(By.CSS_SELECTOR, "#exploits a.show-exploits").click()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#exploits tbody tr")) == len(exploits))
        assert len(_member_rows(browser)) == population  # showing every exploit kept every member
        _wait(browser, lambda d: _loaded(d, "fig-lineage"))

        browser.find_element(By.CSS_SELECTOR, "#members a.show-members").click()  # back to the best
        _wait(browser, lambda d: len(_member_rows(d)) == TOP_MEMBERS)
        assert browser.execute_script(
            "return [...document.scripts].map(s => s.src.replace(location.origin, ''));"
        ) == ["/static/dashboard.js"]
        assert _refused(browser) == []
