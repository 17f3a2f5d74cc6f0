"""Doctest namespace for the examples in ``src/vecbox`` (pytest collects them with ``--doctest-modules``).

Every docstring example may use:

* ``np`` - numpy;
* ``tmp`` - the path (str) of a fresh, empty temporary directory, made for that doctest.

Examples build what else they need (a collection, some vectors) themselves, so each one
reads on its own in the rendered documentation.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from _pytest.doctest import DoctestItem

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# Modules that need an optional extra raise its install message on import, by design; their
# doctests are collected only where the extra is installed (make test installs them all).
collect_ignore = [path for path, module in (("src/vecbox/integrations/langchain.py", "langchain_core"),
                                            ("src/vecbox/integrations/llamaindex.py", "llama_index.core"),
                                            ("src/vecbox/client.py", "httpx"),
                                            ("src/vecbox/server", "fastapi")) if not _has(module)]


@pytest.fixture(autouse=True)
def _doctest_namespace(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    if isinstance(request.node, DoctestItem):
        doctest_namespace["np"] = np
        doctest_namespace["tmp"] = str(request.getfixturevalue("tmp_path"))
