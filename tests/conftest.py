"""Shared fixtures: a seeded generator, temporary collections, and the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a data set under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data set {name!r} not found at {path}")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def col_path(tmp_path: Path) -> Path:
    return tmp_path / "col"


@pytest.fixture(scope="module")
def spark():
    """A local[2] SparkSession for one test module (the Spark modules share its settings); skips without Java."""
    from vecbox.spark import local_session

    try:
        session = local_session("local[2]", app_name="vecbox-tests", shuffle_partitions=2,
                                conf={"spark.driver.memory": "1g", "spark.sql.adaptive.enabled": "false"})
    except Exception as exc:  # no Java, no free port, ...
        pytest.skip(f"cannot start a local SparkSession: {exc}")
    yield session
    session.stop()
