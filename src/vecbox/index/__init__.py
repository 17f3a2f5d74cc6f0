"""Candidate generation. ``flat`` is exact search, the reference every approximate index is tested against."""
