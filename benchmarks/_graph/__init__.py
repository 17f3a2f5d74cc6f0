"""The graph benchmark's helpers; ``benchmarks/graph.py`` is the entry point.

- :mod:`reference`: a straightforward re-implementation of the FastRP paper's code
  (``GTmac/FastRP:fastrp.py``) and of its evaluation, independent of vecbox, to run side by side;
- :mod:`synthetic`: the seeded PPI-like graph (multi-label, self-loops, asymmetric weighted
  entries, isolated nodes) standing in for the PPI network, which is not available offline.
"""
