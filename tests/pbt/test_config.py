"""Config loading (DESIGN §6): every good table parsed, every bad input one ConfigError line naming its field."""

import copy
import os
import textwrap
from pathlib import Path

import pytest

from models.errors import ConfigError
from pbt.config import Resources, RunConfig, TrainableConfig, load_config, parse_config
from pbt.settings import PBTSettings
from search.budget import Budget
from search.space import SearchSpace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TOY = {
    "objective": "Q",
    "mode": "max",
    "trainable": {"name": "toy"},
    "space": {"h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]}},
    "budget": {"population": 2, "steps": 20, "eval_every": 5},
}

CUSTOM = '''
class Good:
    def __init__(self, hparams, seed, *, width=1):
        self.hparams = dict(hparams)
    def train(self, steps): pass
    def evaluate(self): return {"score": 1.0, "test_score": 0.5}
    def get_state(self): return {}
    def set_state(self, state): pass
    def set_hparams(self, hparams): pass

class Flexible(Good):
    def __init__(self, hparams, seed, **settings):
        if "bogus" in settings:
            raise TypeError("unexpected setting 'bogus'")

class NoEvaluate:
    def __init__(self, hparams, seed): pass
    def train(self, steps): pass
    def get_state(self): return {}
    def set_state(self, state): pass
    def set_hparams(self, hparams): pass

class Crashes(Good):
    def __init__(self, hparams, seed):
        raise RuntimeError("cannot open\\nthe data")

class ListMetrics(Good):
    def evaluate(self): return [1.0]
'''


@pytest.fixture
def custom(tmp_path, monkeypatch):
    (tmp_path / "custom_trainables.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))


def with_(base=TOY, **changes):
    raw = copy.deepcopy(base)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        table = raw
        for part in path:
            table = table.setdefault(part, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return raw


DELETE = object()


def error(raw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "c.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("c.toml: ")
    return message[len("c.toml: "):]


def test_examples_parse():
    toy = load_config(EXAMPLES / "toy.toml")
    assert toy.objective == "Q" and toy.mode == "max"
    assert toy.trainable == TrainableConfig("toy", {"lr": 0.01})
    assert toy.budget.population == 2 and toy.budget.steps == 200
    assert toy.initial == ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})
    assert toy.pbt.interval % toy.budget.eval_every == 0
    digits = load_config(EXAMPLES / "digits.toml")
    assert list(digits.space) == ["lr", "momentum", "weight_decay"]
    assert digits.budget == Budget(8, 2000, 100)
    assert digits.pbt.interval == 100
    assert digits.trainable.name == "mlp" and digits.trainable.settings["hidden"] == [128]


def test_parse_builds_typed_frozen_values():
    raw = with_(
        pbt={"interval": 10, "fraction": 0.5, "perturb_factors": [0.9, 1.1], "synchronous": True},
        grid={"h0": [0, 1]},
        initial=[{"h0": 1, "h1": 0}],
        trainable={"name": "toy", "lr": 0.05},
    )
    config = parse_config(raw, "c.toml")
    assert isinstance(config, RunConfig)
    assert config.space == SearchSpace.from_config(TOY["space"])
    assert config.budget == Budget(2, 20, 5)
    assert config.pbt == PBTSettings(interval=10, fraction=0.5, perturb_factors=(0.9, 1.1), synchronous=True)
    assert config.grid == {"h0": (0.0, 1.0)}
    assert config.initial == ({"h0": 1.0, "h1": 0.0},)
    assert type(config.initial[0]["h0"]) is float
    assert config.trainable == TrainableConfig("toy", {"lr": 0.05})
    assert config.raw == raw and config.raw is not raw
    with pytest.raises(AttributeError):
        config.mode = "min"


def test_resources_are_optional_and_take_fractions():
    assert parse_config(TOY, "c.toml").resources == Resources(cpus_per_worker=None, gpus_per_worker=0.0, workers=None)
    raw = with_(resources={"cpus_per_worker": 0.5, "gpus_per_worker": 0.25, "workers": 3})
    assert parse_config(raw, "c.toml").resources == Resources(0.5, 0.25, 3)
    assert parse_config(with_(resources={"gpus_per_worker": 2, "cpus_per_worker": 0.0003}), "c").resources == \
        Resources(0.0003, 2.0, None)


def test_the_torch_example_parses_from_the_repository_root(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(EXAMPLES.parent)
    monkeypatch.syspath_prepend(str(EXAMPLES.parent))
    torch_digits, digits = load_config(EXAMPLES / "torch_digits.toml"), load_config(EXAMPLES / "digits.toml")
    assert torch_digits.trainable.name == "examples.torch_cnn:DigitsCNN"
    assert (torch_digits.space, torch_digits.budget, torch_digits.pbt) == (digits.space, digits.budget, digits.pbt)


def test_pbt_table_is_optional_its_defaults_fit_any_budget_and_an_interval_is_checked():
    assert parse_config(TOY, "c.toml").pbt == PBTSettings()
    assert parse_config(with_(budget={"population": 2, "steps": 60, "eval_every": 30}), "c.toml")
    raw = with_(budget={"population": 2, "steps": 60, "eval_every": 30}, pbt={"interval": 100})
    assert error(raw) == "pbt.interval: must be a multiple of budget.eval_every (30), got 100"


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: no such config file$"):
        load_config(tmp_path / "nope.toml")


def test_load_config_unreadable(tmp_path):
    with pytest.raises(ConfigError, match=r": cannot read the config \(Is a directory\)$"):
        load_config(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_config_without_permission(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("objective = 'Q'\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"cannot read the config \(Permission denied\)$"):
        load_config(path)


def test_load_config_not_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("objective = \n[space\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not TOML (") and "line 1" in str(info.value)
    assert "\n" not in str(info.value)


def test_load_config_not_text(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match=r"not TOML \(not UTF-8 text\)$"):
        load_config(path)


def test_load_config_reads_a_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""
        objective = "Q"
        mode = "min"
        [trainable]
        name = "toy"
        [space]
        h0 = { uniform = [0.0, 1.0] }
        h1 = { uniform = [0.0, 1.0] }
        [budget]
        population = 3
        steps = 10
        eval_every = 5
        [pbt]
        interval = 5
    """))
    config = load_config(path)
    assert config.mode == "min" and config.budget.population == 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"budgett": {}}, "budgett: unknown top-level key; expected one of objective, mode, trainable"),
        ({"objective": DELETE}, "objective: missing"),
        ({"budget": DELETE}, "budget: missing"),
        ({"objective": 3}, "objective: must be the name of a metric evaluate() returns, got 3"),
        ({"objective": "test_Q"}, "objective: 'test_Q' is a test metric"),
        ({"mode": "maximize"}, "mode: must be 'max' or 'min', got 'maximize'"),
        ({"trainable": "toy"}, "trainable: must be a table [trainable], got 'toy'"),
        ({"trainable__name": DELETE}, "trainable.name: must be a built-in"),
        ({"trainable__name": "resnet"}, "trainable.name: unknown trainable 'resnet'"),
        ({"trainable__name": "no_such_module_xyz:Net"}, "trainable.name: cannot import module 'no_such_module_xyz'"),
        ({"trainable__lr": -1.0}, "trainable.lr: must be a finite number"),
        ({"trainable__speed": 2}, "trainable.speed: unknown; expected one of lr"),
        ({"space": {}}, "space: must define at least one hyperparameter"),
        ({"space__h0": {"gaussian": [0, 1]}}, "space.h0: unknown kind 'gaussian'"),
        ({"space__h0": {"uniform": [1.0, 0.0]}}, "space.h0: low must be < high, got [1.0, 0.0]"),
        ({"space__h0": {"loguniform": [0.0, 1.0]}}, "space.h0: loguniform low must be > 0, got 0.0"),
        ({"space__h0": {"choice": []}}, "space.h0: choice must be a non-empty list"),
        ({"space__h2": {"uniform": [0.0, 1.0]}}, "space.h2: unknown; expected one of h0, h1"),
        ({"budget__population": 0}, "budget.population: must be an integer >= 1, got 0"),
        ({"budget__population": 2.5}, "budget.population: must be an integer >= 1, got 2.5"),
        ({"budget__steps": 22}, "budget.steps: must be a multiple of budget.eval_every (5), got 22"),
        ({"budget__eval_every": DELETE}, "budget.eval_every: missing"),
        ({"budget__epochs": 3}, "budget.epochs: unknown; expected one of population, steps, eval_every"),
        ({"pbt": {"interval": 7}}, "pbt.interval: must be a multiple of budget.eval_every (5), got 7"),
        ({"pbt": {"perturbation_intervl": 5}}, "pbt.perturbation_intervl: unknown; expected one of interval"),
        ({"pbt": {"interval": 5, "fraction": 0.9}}, "pbt.fraction: must be in (0, 0.5], got 0.9"),
        ({"pbt": {"fitness": "median"}}, "pbt.fitness: must be 'best' or 'mean', got 'median'"),
        ({"pbt": 5}, "pbt: must be a table [pbt], got 5"),
        ({"grid": {"h9": [0.5]}}, "grid.h9: not a dimension of [space]"),
        ({"grid": {"h0": [2.0]}}, "grid.h0: 2.0 is outside the space (uniform [0.0, 1.0])"),
        ({"initial": [{"h0": 1.5, "h1": 0.0}]}, "initial[0].h0: 1.5 is outside the space (uniform [0.0, 1.0])"),
        ({"initial": [{"h0": 1.0, "h1": 0.0}, {"h0": 1.0}]}, "initial[1].h1: missing"),
        ({"initial": [{"h0": 1.0, "h1": 0.0, "h3": 0}]}, "initial[0].h3: unknown hyperparameter"),
        ({"initial": [{"h0": 1.0, "h1": 0.0}] * 3}, "initial: 3 entries but budget.population is 2"),
        ({"initial": {"h0": 1.0}}, "initial: must be an array of tables [[initial]]"),
        ({"objective": "accuracy"}, "objective: 'accuracy' is not a key of toy.evaluate() (it returns Q"),
        ({"resources": 2}, "resources: must be a table [resources], got 2"),
        ({"resources__cpus": 2}, "resources.cpus: unknown; expected one of cpus_per_worker, gpus_per_worker, workers"),
        ({"resources__cpus_per_worker": 0}, "resources.cpus_per_worker: must be a finite number > 0, got 0"),
        ({"resources__cpus_per_worker": "1"}, "resources.cpus_per_worker: must be a finite number > 0, got '1'"),
        ({"resources__cpus_per_worker": 0.00005},
         "resources.cpus_per_worker: Ray counts resources in steps of 0.0001, got 5e-05"),
        ({"resources__gpus_per_worker": -1}, "resources.gpus_per_worker: must be a finite number >= 0, got -1"),
        ({"resources__gpus_per_worker": 1.5}, "resources.gpus_per_worker: above 1 must be a whole number"),
        ({"resources__workers": 0}, "resources.workers: must be an integer >= 1, got 0"),
        ({"resources__workers": 2.0}, "resources.workers: must be an integer >= 1, got 2.0"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(changes, message):
    assert error(with_(**changes)).startswith(message)


@pytest.mark.parametrize(
    "trainable, message",
    [
        ({"name": "custom_trainables:Missing"}, "trainable.name: module 'custom_trainables' has no class 'Missing'"),
        ({"name": "custom_trainables:NoEvaluate"}, "trainable.name: class 'custom_trainables:NoEvaluate' lacks method(s) evaluate"),
        ({"name": "custom_trainables:Good", "depth": 3}, "trainable.depth: unknown; expected one of width"),
        ({"name": "custom_trainables:Flexible", "bogus": 1},
         "trainable: custom_trainables:Flexible fails with these settings (TypeError: unexpected setting 'bogus')"),
        ({"name": "custom_trainables:Crashes"},
         "trainable: custom_trainables:Crashes fails with these settings (RuntimeError: cannot open the data)"),
        ({"name": "custom_trainables:ListMetrics"}, "trainable: custom_trainables:ListMetrics.evaluate() must return a dict"),
    ],
)
def test_custom_trainables_are_checked(custom, trainable, message):
    assert error(with_(trainable=trainable, objective="score")).startswith(message)


def test_custom_trainable_with_settings_and_its_objective(custom):
    config = parse_config(with_(trainable={"name": "custom_trainables:Flexible", "anything": 1}, objective="score"), "c")
    assert config.trainable.settings == {"anything": 1}
    config = parse_config(with_(trainable={"name": "custom_trainables:Good", "width": 4}, objective="score"), "c")
    assert config.trainable.settings == {"width": 4}


def test_a_relative_npz_dataset_is_found_beside_the_config_from_any_directory(tmp_path, monkeypatch):
    import numpy as np

    folder = tmp_path / "project"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savez(folder / "mine.npz", X=rng.normal(size=(300, 3)), y=rng.integers(0, 2, 300))
    digits = (Path(__file__).resolve().parents[2] / "examples" / "digits.toml").read_text()
    (folder / "c.toml").write_text(digits.replace('dataset = "digits"', 'dataset = "mine.npz"'))
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(Path("project") / "c.toml")
    assert config.trainable.settings["dataset"] == str(folder / "mine.npz")
    assert config.raw["trainable"]["dataset"] == str(folder / "mine.npz")  # what a resume reads back
    (folder / "c.toml").write_text(digits.replace('dataset = "digits"', 'dataset = "missing.npz"'))
    with pytest.raises(ConfigError, match="missing.npz"):
        load_config(Path("project") / "c.toml")
