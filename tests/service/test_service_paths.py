"""The service's rules that need no cluster: where a run may be written, a job server that does not
answer, and reading back the progress line a job logs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from ray_processes import free_port

from models.errors import ConfigError
from pbt.cli import main
from pbt.service import JobView, format_status, logs_progress, run_dir_in
from pbt.terminal import format_progress, parse_progress
from search.progress import Progress

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/etc", ".hidden", "-x", "", "a b"])
def test_a_run_name_that_is_not_one_folder_name_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"^--name: a run name is one folder name"):
        run_dir_in(str(tmp_path), name)


def test_a_run_name_that_links_out_of_the_storage_folder_is_refused(tmp_path):
    storage, outside = tmp_path / "storage", tmp_path / "outside"
    storage.mkdir()
    outside.mkdir()
    (storage / "escape").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"^--name: 'escape' leads out of the storage folder "):
        run_dir_in(str(storage), "escape")
    assert run_dir_in(str(storage), "digits-pbt-seed0.v2") == storage.resolve() / "digits-pbt-seed0.v2"


def test_the_storage_folder_is_absolute_or_from_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run_dir_in("~/pbt-runs", "a") == tmp_path.resolve() / "pbt-runs" / "a"
    with pytest.raises(ConfigError, match=r"^--storage: must be an absolute path on the head \(or start with ~\), "
                                          r"got 'runs'$"):
        run_dir_in("runs", "a")


@pytest.mark.parametrize("command", [
    ["submit", str(EXAMPLES / "nqm.toml")], ["jobs"], ["status", "pbt-0123abcd"], ["logs", "pbt-0123abcd"],
    ["logs", "pbt-0123abcd", "--follow"], ["stop", "pbt-0123abcd"], ["resume", "pbt-0123abcd"],
])
def test_every_service_command_says_in_one_line_when_no_job_server_answers(command, capsys):
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main([*command, "--address", address]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err.splitlines()) == ("", [
        f"pbt: error: address: no Ray job server answers at {address} (Failed to connect to Ray at address: "
        f"{address}.): is the head up, and is this its dashboard address (or the local end of an SSH tunnel to it)?"])


@pytest.mark.parametrize("address", ["127.0.0.1:8265", "auto", "ray://127.0.0.1:10001"])
def test_a_service_address_that_is_not_a_job_server_is_refused(address, capsys):
    assert main(["jobs", "--address", address]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"pbt: error: address: the head's job server as http://HOST:PORT (its dashboard port, 8265 unless "
        f"changed), got {address!r}"]


def test_the_dashboard_refuses_a_storage_folder_that_is_not_one_on_the_head(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", "--storage", "runs", "--port", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "pbt: error: --storage: must be an absolute path on the head (or start with ~), got 'runs'"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("progress", [
    Progress(8, 3, 1200, 16000, 2, 0.97215, 4, 75.0),
    Progress(8, 0, 0, 16000, None, None, 0, 0.0),
    Progress(2, 2, 400, 400, 1, -1.5e-05, 0, 3725.0),
    Progress(1024, 10, 1_234_000, 2_048_000, 1000, float("nan"), 12, 59.0),
])
@pytest.mark.parametrize("objective", ["Q", "val_accuracy", "val loss"])
def test_a_progress_line_reads_back_as_it_was_shown(progress, objective):
    """Everything as it was, the best objective to the 4 digits shown (repr: NaN reads back as NaN)."""
    shown = None if progress.best_objective is None else float(f"{progress.best_objective:.4g}")
    parsed = parse_progress(f"2026-12-02 03:41:40 {format_progress(progress, objective)}")
    assert repr(parsed) == repr(dataclasses.replace(progress, best_objective=shown))


def test_a_job_log_gives_its_last_progress_line():
    first, last = Progress(4, 0, 16, 480, 1, 0.5, 0, 1.0), Progress(4, 4, 480, 480, 2, 1.19, 24, 9.0)
    logs = "\n".join(["Running entrypoint for job pbt-0123abcd: python -m pbt.service_driver run",
                      "waiting for room: another search on this cluster is waiting for room or starting its workers",
                      format_progress(first, "Q"), format_progress(last, "Q"), " rank  member   status", "",
                      "run directory: /root/pbt-runs/a"])
    assert logs_progress(logs) == last
    assert logs_progress("waiting for room: ...\n") is None


@pytest.mark.parametrize("status, left", [("running", True), ("waiting for room", True), ("stopped", False),
                                          ("failed", False), ("succeeded", False)])
def test_status_estimates_the_time_left_only_while_the_search_can_still_move(status, left):
    view = JobView(job="pbt-0123abcd", status=status, run_dir="~/pbt-runs/a", strategy="pbt", seed="0",
                   objective="Q", config="a.toml", progress=Progress(4, 0, 120, 480, 1, 0.5, 0, 30.0),
                   run_status=None, started=0.0, ended=None, message="")
    progress = next(line for line in format_status(view).splitlines() if line.startswith("progress: "))
    assert progress.endswith("0:30 elapsed, ~1:30 left" if left else "0:30 elapsed")
