"""Built-in data sets and a user's .npz: splits, standardisation, seeds, and one-line errors."""

import numpy as np
import pytest

from models.datasets import load_dataset, split
from models.errors import ConfigError


def test_digits_split_60_20_20_standardised_on_training_statistics():
    d = load_dataset("digits", seed=0)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (1078, 359, 360)
    assert d.n_features == 64 and d.n_classes == 10
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert np.allclose(d.X_train.mean(axis=0), 0.0, atol=1e-5)
    std = d.X_train.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-4) | (std == 0))
    assert not np.allclose(d.X_val.mean(axis=0), 0.0, atol=1e-3)  # validation is not re-standardised


def test_split_depends_on_the_seed_only():
    a, b, c = load_dataset("digits", 0), load_dataset("digits", 0), load_dataset("digits", 1)
    assert np.array_equal(a.X_val, b.X_val) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_val, c.y_val)


@pytest.mark.parametrize("name,classes", [("xor", 2), ("quadrants", 4), ("spirals", 2), ("checkerboard", 2)])
def test_synthetic_sets(name, classes):
    d = load_dataset(name, seed=3)
    assert d.n_features == 2 and d.n_classes == classes
    assert set(np.unique(d.y_train)) == set(range(classes))
    assert np.array_equal(d.X_train, load_dataset(name, seed=3).X_train)
    assert not np.array_equal(d.X_train, load_dataset(name, seed=4).X_train)


def test_checkerboard_colours_alternate_between_neighbouring_squares():
    from models.datasets import checkerboard

    X, y = checkerboard(np.random.default_rng(0), n=4000, cells=4)
    square = np.floor((X + 1.0) * 2).astype(int)
    for (i, j), colour in {(0, 0): 0, (0, 1): 1, (1, 1): 0, (3, 2): 1}.items():
        assert set(y[(square[:, 0] == i) & (square[:, 1] == j)]) == {colour}
    assert 0.45 < y.mean() < 0.55


def test_labels_are_mapped_to_consecutive_classes():
    X = np.arange(20.0).reshape(10, 2)
    y = np.array([7, -1, 7, 3, 3, -1, 7, 3, -1, 7])
    d = split(X, y, seed=0)
    assert d.n_classes == 3
    assert set(np.concatenate([d.y_train, d.y_val, d.y_test])) == {0, 1, 2}


def test_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, X=rng.standard_normal((50, 3)), y=rng.integers(0, 2, 50))
    d = load_dataset(str(path))
    assert d.n_features == 3 and len(d.y_train) == 30


def _bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays,problem", [
    ({"X": np.zeros((5, 2))}, "missing array 'y'"),
    ({"X": np.zeros((6, 2)), "y": np.zeros(5, int)}, "X has 6 samples but y has 5"),
    ({"X": np.zeros((5, 2)), "y": np.array([0, 1, 0.5, 1, 0])}, "integer labels"),
    ({"X": np.zeros(5), "y": np.zeros(5, int)}, "X must be a 2-D"),
    ({"X": np.full((5, 2), np.nan), "y": np.zeros(5, int)}, "NaN"),
])
def test_bad_npz_gets_one_line_naming_file_and_problem(tmp_path, arrays, problem):
    path = _bad(tmp_path, "bad.npz", **arrays)
    with pytest.raises(ConfigError) as err:
        load_dataset(path)
    message = str(err.value)
    assert "\n" not in message and path in message and problem in message
    assert message.startswith("trainable.dataset: ")


def test_missing_or_non_npz_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.npz: no such file"):
        load_dataset(str(tmp_path / "nothere.npz"))
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="not a readable .npz"):
        load_dataset(str(text))
    single = tmp_path / "one.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ConfigError, match="not an .npz archive"):
        load_dataset(str(single))


def test_unknown_name():
    with pytest.raises(ConfigError, match="trainable.dataset: unknown data set 'mnist'"):
        load_dataset("mnist")
