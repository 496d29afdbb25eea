"""The ``pbt`` command line as a new user meets it, and what ``pbt run`` draws on the terminal.

Every bad input: exit status 2, one stderr line ``pbt: error: <field>: <problem>``, no traceback,
and no run directory. A run that fails (on the session's Ray): exit status 3, one stderr line that
names the run directory and says what ``pbt resume`` can do, which it then does. The runs
themselves are tested with the engine.
"""

import io
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray

import workers.pool
from pbt.cli import SUBCOMMANDS, default_out, main
from pbt.terminal import ProgressDisplay, format_duration, format_progress, results_table
from search.progress import Progress
from search.store import RunData, load_run

TOY = """\
objective = "Q"
mode = "max"

[trainable]
name = "toy"

[space]
h0 = { uniform = [0.0, 1.0] }
h1 = { uniform = [0.0, 1.0] }

[budget]
population = 2
steps = 20
eval_every = 5

[pbt]
interval = 5
"""

# (what a new user got wrong, how, the start of the one error line)
BAD_CONFIGS = [
    ("not TOML", lambda t: t + "[space\n", "c.toml: not TOML ("),
    ("unknown top-level key", lambda t: "objectve = 'Q'\n" + t, "c.toml: objectve: unknown top-level key"),
    ("unknown key in a table", lambda t: t.replace("eval_every = 5", "eval_every = 5\nepochs = 2"),
     "c.toml: budget.epochs: unknown"),
    ("unknown [pbt] key", lambda t: t.replace("interval = 5", "intervl = 5"), "c.toml: pbt.intervl: unknown"),
    ("mode", lambda t: t.replace('"max"', '"maximise"'), "c.toml: mode: must be 'max' or 'min'"),
    ("low >= high", lambda t: t.replace("uniform = [0.0, 1.0] }\nh1", "uniform = [1.0, 1.0] }\nh1"),
     "c.toml: space.h0: low must be < high"),
    ("loguniform low <= 0", lambda t: t.replace("h0 = { uniform = [0.0, 1.0] }", "h0 = { loguniform = [0.0, 1.0] }"),
     "c.toml: space.h0: loguniform low must be > 0"),
    ("empty choice", lambda t: t.replace("h0 = { uniform = [0.0, 1.0] }", "h0 = { choice = [] }"),
     "c.toml: space.h0: choice must be a non-empty list"),
    ("unknown kind", lambda t: t.replace("h0 = { uniform", "h0 = { normal"), "c.toml: space.h0: unknown kind 'normal'"),
    ("population < 1", lambda t: t.replace("population = 2", "population = 0"),
     "c.toml: budget.population: must be an integer >= 1, got 0"),
    ("steps not a multiple of eval_every", lambda t: t.replace("steps = 20", "steps = 21"),
     "c.toml: budget.steps: must be a multiple of budget.eval_every (5), got 21"),
    ("pbt.interval not a multiple of eval_every", lambda t: t.replace("interval = 5", "interval = 6"),
     "c.toml: pbt.interval: must be a multiple of budget.eval_every (5), got 6"),
    ("unknown trainable", lambda t: t.replace('name = "toy"', 'name = "resnet"'),
     "c.toml: trainable.name: unknown trainable 'resnet'"),
    ("class missing a method", lambda t: t.replace('name = "toy"', 'name = "cli_trainables:NoSetState"'),
     "c.toml: trainable.name: class 'cli_trainables:NoSetState' lacks method(s) set_state"),
    ("objective evaluate() does not return", lambda t: t.replace('objective = "Q"', 'objective = "accuracy"'),
     "c.toml: objective: 'accuracy' is not a key of toy.evaluate()"),
    ("initial entry outside the space", lambda t: t + "[[initial]]\nh0 = 2.0\nh1 = 0.0\n",
     "c.toml: initial[0].h0: 2.0 is outside the space"),
    ("more initial entries than population", lambda t: t + "[[initial]]\nh0 = 1.0\nh1 = 0.0\n" * 3,
     "c.toml: initial: 3 entries but budget.population is 2"),
    ("unknown setting", lambda t: t.replace('name = "toy"', 'name = "toy"\nlearning_rate = 0.1'),
     "c.toml: trainable.learning_rate: unknown"),
]

NO_SET_STATE = """
class NoSetState:
    def __init__(self, hparams, seed): pass
    def train(self, steps): pass
    def evaluate(self): return {"Q": 0.0}
    def get_state(self): return {}
    def set_hparams(self, hparams): pass
"""


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """Run in an empty directory (the default ``runs/`` lands here) with a custom trainable importable."""
    (tmp_path / "cli_trainables.py").write_text(NO_SET_STATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pbt: error: ")
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0][len("pbt: error: "):]


def assert_nothing_written(cwd: Path, *kept: str) -> None:
    assert sorted(p.name for p in cwd.iterdir()) == sorted({"c.toml", "cli_trainables.py", *kept})


@pytest.mark.parametrize("what, edit, message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_one_line_exit_2_and_no_run_directory(cwd, capsys, what, edit, message):
    (cwd / "c.toml").write_text(edit(TOY))
    assert main(["run", "c.toml", "--strategy", "random"]) == 2
    assert one_error_line(capsys).startswith(message)
    assert_nothing_written(cwd)


def test_bad_config_with_explicit_out_leaves_no_directory(cwd, capsys):
    (cwd / "c.toml").write_text(TOY.replace("population = 2", "population = 0"))
    assert main(["run", "c.toml", "--out", "out/run1"]) == 2
    assert one_error_line(capsys).startswith("c.toml: budget.population:")
    assert_nothing_written(cwd)


def test_missing_config_file(cwd, capsys):
    assert main(["run", "missing.toml"]) == 2
    assert one_error_line(capsys) == "missing.toml: no such config file"
    assert sorted(p.name for p in cwd.iterdir()) == ["cli_trainables.py"]


def test_unreadable_config(cwd, capsys):
    (cwd / "c.toml").write_text(TOY)
    assert main(["run", "."]) == 2
    assert one_error_line(capsys).startswith(".: cannot read the config")


def test_unknown_strategy(cwd, capsys):
    (cwd / "c.toml").write_text(TOY)
    assert main(["run", "c.toml", "--strategy", "bayes"]) == 2
    assert one_error_line(capsys) == "argument --strategy: invalid choice: 'bayes' (choose from 'pbt', 'grid', 'random')"
    assert_nothing_written(cwd)


def test_grid_that_cannot_fit_the_population(cwd, capsys):
    (cwd / "c.toml").write_text(TOY.replace("population = 2", "population = 3"))
    assert main(["run", "c.toml", "--strategy", "grid"]) == 2
    message = one_error_line(capsys)
    assert message.startswith("grid: 3 grid members cannot be 1 fixed point(s) x n^2")
    assert "budget.population" in message
    assert_nothing_written(cwd)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "argument --seed: invalid integer >= 0 value: '-1'"),
        (["--seed", "x"], "argument --seed: invalid integer >= 0 value: 'x'"),
        (["--workers", "0"], "argument --workers: invalid integer >= 1 value: '0'"),
        (["--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_bad_arguments(cwd, capsys, args, message):
    (cwd / "c.toml").write_text(TOY)
    assert main(["run", "c.toml", *args]) == 2
    assert one_error_line(capsys) == message
    assert_nothing_written(cwd)


def test_existing_non_empty_out_is_refused_and_left_alone(cwd, capsys):
    (cwd / "c.toml").write_text(TOY)
    (cwd / "old").mkdir()
    (cwd / "old" / "run.db").write_text("precious")
    assert main(["run", "c.toml", "--out", "old"]) == 2
    assert one_error_line(capsys) == "--out: old already exists and is not an empty directory"
    assert (cwd / "old" / "run.db").read_text() == "precious"
    (cwd / "file").write_text("x")
    assert main(["run", "c.toml", "--out", "file"]) == 2
    assert one_error_line(capsys) == "--out: file already exists and is not an empty directory"


def test_missing_command(capsys):
    assert main([]) == 2
    assert one_error_line(capsys) == "the following arguments are required: COMMAND"


def test_debug_shows_the_traceback(cwd, capsys):
    (cwd / "c.toml").write_text(TOY.replace("population = 2", "population = 0"))
    assert main(["run", "c.toml", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("pbt: error: c.toml: budget.population")


def test_help_lists_every_subcommand_of_the_design(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("run", "compare", "resume", "replay", "report", "dashboard"):
        assert name in SUBCOMMANDS and re.search(rf"^\s+{name}\b", out, re.MULTILINE)
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--strategy", "--seed", "--out", "--address", "--workers", "--quiet"):
        assert option in out


def test_python_dash_m_pbt(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pbt", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("pbt", run_name="__main__")
    assert info.value.code == 0
    assert "dashboard" in capsys.readouterr().out


def test_installed_console_script(tmp_path):
    script = Path(sys.executable).with_name("pbt")
    assert script.exists(), "install the package: pip install -e ."
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "run" in shown.stdout and "compare" in shown.stdout
    (tmp_path / "c.toml").write_text(TOY.replace("steps = 20", "steps = 21"))
    failed = subprocess.run([script, "run", "c.toml"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert failed.returncode == 2
    assert failed.stderr == "pbt: error: c.toml: budget.steps: must be a multiple of budget.eval_every (5), got 21\n"
    assert failed.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_the_console_script_imports_a_configs_module_from_the_folder_it_runs_in(tmp_path):
    """As under ``python -m pbt``, with no PYTHONPATH: the driver and the workers of its embedded Ray."""
    script = Path(sys.executable).with_name("pbt")
    (tmp_path / "my_models.py").write_text("from models import ToyQuadratic\n\n\nclass MyToy(ToyQuadratic):\n    pass\n")
    (tmp_path / "c.toml").write_text(TOY.replace('name = "toy"', 'name = "my_models:MyToy"'))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([script, "run", "c.toml", "--out", "run", "--workers", "1", "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_run(tmp_path / "run").summary["budget_steps"] == 2 * 20


SLOW_TOY = """\
objective = "Q"
mode = "max"

[trainable]
name = "trainables:SlowToy"
{settings}

[space]
h0 = {{ uniform = [0.0, 1.0] }}
h1 = {{ uniform = [0.0, 1.0] }}

[budget]
population = {population}
steps = {steps}
eval_every = 4
"""


def assert_every_row(run_dir: str, population: int, steps: int) -> None:
    data = load_run(run_dir)
    assert sorted(zip(data.results["member"], data.results["step"])) == [
        (m, s) for m in range(population) for s in range(4, steps + 1, 4)]  # none missing, none twice
    assert data.info["status"] == "finished" and set(data.members["status"]) == {"finished"}


@ray.remote
class _Hog:
    def ready(self) -> bool:
        return True


def test_a_run_whose_workers_never_come_up_fails_in_one_line_and_resume_starts_it_over(
        ray_session, cwd, capsys, monkeypatch):
    (cwd / "c.toml").write_text(SLOW_TOY.format(settings="", population=2, steps=8))
    hog = _Hog.options(num_cpus=ray.cluster_resources()["CPU"]).remote()  # every CPU taken: no worker fits
    ray.get(hog.ready.remote())
    cause = "1 of 1 workers not up after 2 s: the cluster cannot place them (1 CPU each)"
    try:
        with monkeypatch.context() as short:
            short.setattr(workers.pool, "START_TIMEOUT_S", 2.0)
            for argv, run_dir in ((["run", "c.toml", "--out", "run"], "run"),
                                  (["resume", "run"], "run"),
                                  (["compare", "c.toml", "--strategies", "random", "--seeds", "1", "--out", "cmp"],
                                   "cmp/random-seed0")):
                assert main([*argv, "--workers", "1", "--quiet"]) == 3
                assert one_error_line(capsys) == (
                    f"{run_dir}: run failed: {cause}; `pbt resume {run_dir}` cannot continue it: "
                    "no snapshot of it is durable (a resume starts it over)")
                assert load_run(run_dir).info["status"] == "failed"
    finally:
        ray.kill(hog, no_restart=True)
    assert main(["resume", "run", "--workers", "1", "--quiet"]) == 0
    assert_every_row("run", population=2, steps=8)


def test_a_run_whose_final_checkpoint_fails_says_resume_continues_it_and_resume_does(ray_session, cwd, capsys):
    # the first state taken at step 8 (a member's last) holds an object array: it cannot be checkpointed
    marker = cwd / "unsavable"
    settings = f'unsavable_once = "{marker}"\nunsavable_at = 8'
    (cwd / "c.toml").write_text(SLOW_TOY.format(settings=settings, population=2, steps=8))
    assert main(["run", "c.toml", "--strategy", "random", "--out", "run", "--workers", "1", "--quiet"]) == 3
    assert re.fullmatch(
        r"run: run failed: the final checkpoint could not be written: member-\d-v\d+\.npz: ValueError: "
        r"Object arrays cannot be saved when allow_pickle=False; `pbt resume run` continues it from its last snapshot",
        one_error_line(capsys))
    assert marker.exists() and load_run("run").info["status"] == "failed"
    assert main(["resume", "run", "--workers", "1", "--quiet"]) == 0
    assert_every_row("run", population=2, steps=8)


def test_a_worker_that_dies_on_a_one_worker_run_is_replaced_and_the_run_finishes(ray_session, cwd, capsys):
    # the replacement comes up while every member waits for it: the runner's loop must not mistake
    # that for a strategy with nothing to ask (tests/search/test_failures.py plays the race exactly)
    marker = cwd / "died"
    settings = f'delay = 0.01\ndie_once = "{marker}"\ndie_at = 10'
    (cwd / "c.toml").write_text(SLOW_TOY.format(settings=settings, population=3, steps=16))
    assert main(["run", "c.toml", "--strategy", "random", "--out", "run", "--workers", "1", "--quiet"]) == 0
    assert marker.exists() and "error" not in capsys.readouterr().err
    assert_every_row("run", population=3, steps=16)
    failures = load_run("run").events.query("kind == 'failure'")
    assert len(failures) >= 1 and all(d["recovered"] for d in failures["data"])  # the members of its call


def test_default_out_names_config_strategy_seed_and_time():
    out = default_out(Path("examples/digits.toml"), "grid", 3)
    assert out.parent == Path("runs")
    assert out.name.startswith("digits-grid-seed3-") and len(out.name) == len("digits-grid-seed3-20260101-120000")


# --- the terminal display ---------------------------------------------------------------------

def progress(steps, elapsed, best=0.9512, member=3, exploits=0, done=1):
    return Progress(population=8, members_done=done, steps_done=steps, budget_steps=16000,
                    best_member=member if best is not None else None, best_objective=best,
                    exploits=exploits, elapsed_seconds=elapsed)


def test_format_duration():
    assert format_duration(0) == "0:00"
    assert format_duration(75.4) == "1:15"
    assert format_duration(3725) == "1:02:05"


def test_format_progress_line():
    line = format_progress(progress(4000, 30.0, exploits=2), "val_accuracy")
    assert line == ("members 1/8 done | steps 4,000/16,000 (25%) | best val_accuracy 0.9512 (member 3) | "
                    "exploits 2 | 0:30 elapsed, ~1:30 left")
    start = format_progress(progress(0, 0.5, best=None, done=0), "Q")
    assert start == "members 0/8 done | steps 0/16,000 (0%) | 0:00 elapsed"
    assert "left" not in format_progress(progress(16000, 99.0, done=8), "Q")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_display_on_a_pipe_writes_a_line_every_few_seconds_and_the_last_one():
    stream, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay(stream, "Q", every=5.0, clock=clock)
    for t in range(12):
        clock.now = float(t)
        display(progress(100 * (t + 1), float(t)))
    display.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[1] for line in lines] == [
        "steps 100/16,000 (1%)", "steps 600/16,000 (4%)", "steps 1,100/16,000 (7%)", "steps 1,200/16,000 (8%)"]
    assert "\r" not in stream.getvalue()


def test_display_on_a_tty_redraws_in_place():
    stream = TTY()
    display = ProgressDisplay(stream, "Q", clock=FakeClock())
    display(progress(8000, 10.0, best=0.95123456))
    display(progress(16000, 20.0, done=8))
    display.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    first, second = text.split("\r")[1:]
    assert len(second.rstrip("\n")) >= len(first)  # the longer first line is blanked out


def test_quiet_display_writes_nothing():
    stream = TTY()
    display = ProgressDisplay(stream, "Q", quiet=True)
    display(progress(100, 1.0))
    display.close()
    assert stream.getvalue() == ""


def run_data(mode="max"):
    members = pd.DataFrame({
        "member": [0, 1, 2, 3],
        "status": ["finished", "finished", "failed", "finished"],
        "error": [None, None, "RuntimeError: boom", None],
        "step": [20, 20, 5, 20],
        "objective": [0.5, 0.9, 0.99, math.nan],
        "hp.lr": [0.1, 0.01, 0.5, 1.0],
    })
    summary = {"best": {"member": 1, "objective": 0.9, "test": {"test_accuracy": 0.8812},
                        "hparams": {"lr": 0.012}, "schedule": [[0, {"lr": 0.01}], [10, {"lr": 0.012}]]}}
    info = {"objective": "val_accuracy", "mode": mode}
    return RunData(Path("run"), info, pd.DataFrame(), members, pd.DataFrame(), summary)


def test_results_table_ranks_members_by_objective_with_failed_and_nan_last():
    for mode, order in (("max", [1, 0, 2, 3]), ("min", [0, 1, 2, 3])):
        rows = results_table(run_data(mode)).splitlines()[1:5]
        assert [int(row.split()[1]) for row in rows] == order


def test_results_table_shows_ranks_best_member_test_metrics_and_schedule():
    text = results_table(run_data())
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "member", "status", "step", "val_accuracy", "lr"]
    assert lines[1].split() == ["1", "1", "finished", "20", "0.9", "0.01"]
    assert lines[4].split() == ["4", "3", "finished", "20", "-", "1"]
    assert "member 2 failed: RuntimeError: boom" in text
    assert "best: member 1, val_accuracy 0.9 (validation)" in text
    assert "test: test_accuracy 0.8812" in text
    assert "      10: lr=0.012" in text


def test_an_out_that_cannot_be_made_is_refused_before_anything_starts(cwd, capsys):
    (cwd / "c.toml").write_text(TOY)
    (cwd / "file").write_text("x")
    assert main(["run", "c.toml", "--out", "file/run"]) == 2
    assert one_error_line(capsys) == f"--out: file/run cannot be made: {cwd / 'file'} is not a directory"
    assert main(["compare", "c.toml", "--out", "/proc/run"]) == 2  # a directory no one may make one in
    assert one_error_line(capsys).startswith("--out: /proc/run cannot be made in /proc (")
    assert_nothing_written(cwd, "file")
