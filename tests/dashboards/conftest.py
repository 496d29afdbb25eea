"""Fixtures: finished toy runs in a temporary directory, written through the real ``RunStore``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard_runs import write_toy_run


@pytest.fixture
def pbt_run(tmp_path: Path) -> Path:
    """A finished PBT toy run (3 members, 40 steps)."""
    write_toy_run(tmp_path / "pbt-seed0")
    return tmp_path / "pbt-seed0"


@pytest.fixture
def grid_run(tmp_path: Path) -> Path:
    """A finished grid toy run (no exploits)."""
    write_toy_run(tmp_path / "grid-seed0", strategy="grid")
    return tmp_path / "grid-seed0"
