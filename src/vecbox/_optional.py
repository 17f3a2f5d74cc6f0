"""One place that turns "an optional dependency is missing" into the exact pip command.

>>> from vecbox._optional import missing
>>> str(missing("reading Parquet", "pyarrow", "io"))
"reading Parquet needs pyarrow; run: pip install 'vecbox[io]'"
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vecbox.errors import MissingDependencyError

#: import name -> PyPI name, where they differ
PIP_NAMES = {"faiss": "faiss-cpu", "sklearn": "scikit-learn", "sentence_transformers": "sentence-transformers",
             "pyspark": "pyspark", "Stemmer": "PyStemmer", "langchain_core": "langchain-core",
             "llama_index": "llama-index-core", "fastapi": "fastapi", "httpx": "httpx"}


def missing(purpose: str, package: str, extra: str, *, alternative: bool = False) -> MissingDependencyError:
    """The error to raise when ``package`` (an import name) is needed for ``purpose`` but absent.

    ``alternative=True`` also names the plain ``pip install <package>`` that would do.

    >>> str(missing("the 'pq' codec", "faiss", "codecs", alternative=True))
    "the 'pq' codec needs faiss; run: pip install 'vecbox[codecs]' (or pip install faiss-cpu)"
    """
    top = package.split(".")[0]
    msg = f"{purpose} needs {top}; run: pip install 'vecbox[{extra}]'"
    if alternative:
        msg += f" (or pip install {PIP_NAMES.get(top, top)})"
    return MissingDependencyError(msg)


def require(package: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``package`` or raise :func:`missing`'s error (the message names the pip command).

    >>> require("json", "io").__name__
    'json'
    """
    try:
        return importlib.import_module(package)
    except ImportError:
        raise missing(purpose or "this feature of vecbox", package, extra, alternative=True) from None


__all__ = ["PIP_NAMES", "missing", "require"]
