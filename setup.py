"""Builds vecbox's C extensions (the rest of the package is configured in pyproject.toml).

``vecbox.index._walk`` is the filtered HNSW walk over FAISS's graph, ``vecbox.lexical._bm25`` the
BM25 top-n of a lexical search, ``vecbox.query._fusion`` the z-score fusion of a hybrid search (see
their sources for why); they need only the Python headers, no numpy ones.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("vecbox.index._walk", ["src/vecbox/index/_walk.c"], depends=["src/vecbox/_topheap.h"],
                  extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unknown-pragmas"]),
        Extension("vecbox.lexical._bm25", ["src/vecbox/lexical/_bm25.c"], depends=["src/vecbox/_topheap.h"],
                  extra_compile_args=["-O3", "-std=c11", "-Wall"]),
        Extension("vecbox.query._fusion", ["src/vecbox/query/_fusion.c"], depends=["src/vecbox/_topheap.h"],
                  extra_compile_args=["-O3", "-std=c11", "-Wall"]),
    ],
)
