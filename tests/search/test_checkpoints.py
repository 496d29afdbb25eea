"""The checkpoint writer thread on real Ray refs: any state key round-trips; a bad state fails its job only."""

from __future__ import annotations

import numpy as np
import ray

from search.checkpoints import CheckpointWriter, checkpoint_name, load_checkpoint


def test_any_state_key_round_trips(ray_session, tmp_path):
    state = {"file": np.arange(3.0), "allow_pickle": np.array(True), "param.0.W": np.ones((2, 2), np.float32)}
    writer = CheckpointWriter(tmp_path)
    try:
        writer.persist(1, {checkpoint_name(0, 7): (7, ray.put(state))})
        assert writer.finished(wait=30.0) == [(1, True)]
    finally:
        writer.close()
    loaded = load_checkpoint(tmp_path / checkpoint_name(0, 7))
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


def test_a_state_that_cannot_be_written_fails_its_job_and_the_writer_goes_on(ray_session, tmp_path):
    writer = CheckpointWriter(tmp_path)
    try:
        bad = {"x": np.array([{"not": "an array"}], dtype=object)}  # would need pickle
        writer.persist(1, {checkpoint_name(0, 1): (1, ray.put(bad))})
        assert writer.finished(wait=30.0) == [(1, False)]
        assert "member-0-v1.npz" in writer.error and "pickle" in writer.error.lower()
        writer.persist(2, {checkpoint_name(0, 2): (2, ray.put({"x": np.zeros(2)}))})
        assert writer.finished(wait=30.0) == [(2, True)] and writer.alive
    finally:
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(0, 2)]  # no half-written file
