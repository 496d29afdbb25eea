"""The a2c examples from the command line: without gymnasium, one line that says what to install."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WITHOUT_GYMNASIUM = (  # gymnasium made unimportable, as where it is not installed
    "import sys; sys.modules['gymnasium'] = None; from pbt.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("example", ["cartpole.toml", "acrobot.toml"])
def test_naming_a2c_without_gymnasium_is_one_line_exit_2_and_nothing_written(example, tmp_path):
    shutil.copy(EXAMPLES / example, tmp_path / example)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_GYMNASIUM, "run", example, "--out", "out"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (f"pbt: error: {example}: trainable.name: 'a2c' needs gymnasium, which is not "
                           'installed: pip install -e ".[rl]" (or pip install "gymnasium>=1.4,<2")\n')
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [example]


SMALL_CARTPOLE = """\
objective = "val_return"
mode = "max"

[trainable]
name = "a2c"
env = "CartPole-v1"
n_envs = 4
rollout = 5
hidden = [16]

[space]
lr = { loguniform = [1e-3, 1e-2] }
entropy_coef = { loguniform = [1e-4, 0.1] }

[budget]
population = 4
steps = 60
eval_every = 10

[pbt]
interval = 10
burn_in = 0
synchronous = true
"""


def test_synchronous_pbt_on_a2c_is_the_same_run_twice(ray_session, tmp_path):
    """Members move between the two workers and copy each other's weights, optimizer and episodes
    in progress through Ray's object store: only exact states give the same run twice."""
    from pbt.api import run
    from pbt.config import load_config
    from search.store import load_run

    (tmp_path / "c.toml").write_text(SMALL_CARTPOLE)
    config = load_config(tmp_path / "c.toml")
    first, second = (run(config, strategy="pbt", seed=3, out=tmp_path / name, workers=2) for name in ("a", "b"))
    assert first["budget_steps"] == second["budget_steps"] == 4 * 60
    assert first["exploits"] > 0
    assert first["best"] == second["best"]
    columns = ["member", "step", "val_return", "val_entropy", "env_steps"]
    a, b = (load_run(tmp_path / name).results.sort_values(["member", "step"])[columns].reset_index(drop=True)
            for name in ("a", "b"))
    assert a.equals(b)
    assert set(a["env_steps"]) == {float(s * 4 * 5) for s in range(10, 61, 10)}
