"""The search benchmark's parts, one job each; ``benchmarks/search.py`` is the entry point that runs them.

- :mod:`settings`: what every part shares (k, the HNSW build, the recall target, the filters'
  selectivities) and a run's :class:`~settings.Config`;
- :mod:`data`: the data sets (SciFact sentences, SYNTHETIC mixture), the filters and the exact ground truth;
- :mod:`peers`: one adapter per library under test (vecbox HNSW / IVF, FAISS, USearch, hnswlib, chromadb,
  LanceDB): build, set the search-effort knob, search;
- :mod:`sweep`: measuring a point, sweeping and bisecting the knob, the interleaved re-timing;
- :mod:`funnel`: the Matryoshka-style two-stage search against exact search;
- :mod:`report`: tables, targets, plots and the docs/BENCHMARKS.md section;
- :mod:`saved`: one data set's results kept as JSON, so a later run can reuse them.
"""
