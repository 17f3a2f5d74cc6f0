"""Diagnostics over embedding arrays: pure functions and scikit-learn-style estimators.

Everything here takes and returns arrays; for a collection's vectors use
:func:`vecbox.io.collection_vectors`.
"""
