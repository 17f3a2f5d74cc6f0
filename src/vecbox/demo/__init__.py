"""The ``vecbox demo``: semantic search over the documentation shipped with Python.

:mod:`vecbox.demo.stdlib_docs` harvests the docstrings of the standard library
(modules, classes, functions and methods) into short texts to embed and search.
"""
