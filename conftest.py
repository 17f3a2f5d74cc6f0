"""Doctest namespace for the examples in ``src/vecbox`` (pytest collects them with ``--doctest-modules``).

Every docstring example may use:

* ``np`` - numpy;
* ``tmp`` - the path (str) of a fresh, empty temporary directory, made for that doctest.

Examples build what else they need (a collection, some vectors) themselves, so each one
reads on its own in the rendered documentation.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _pytest.doctest import DoctestItem

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _doctest_namespace(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    if isinstance(request.node, DoctestItem):
        doctest_namespace["np"] = np
        doctest_namespace["tmp"] = str(request.getfixturevalue("tmp_path"))
