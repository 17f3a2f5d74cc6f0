"""Diagnostics over embedding arrays (and collections): pure functions and scikit-learn-style estimators."""
