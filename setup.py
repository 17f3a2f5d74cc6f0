"""Builds vecbox's one C extension (the rest of the package is configured in pyproject.toml).

``vecbox.index._walk`` is the filtered HNSW walk over FAISS's graph (see its source for why);
it needs only the Python headers, no numpy ones.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("vecbox.index._walk", ["src/vecbox/index/_walk.c"],
                  extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unknown-pragmas"]),
    ],
)
