"""Durable on-disk format: immutable ``.npy`` segments plus one SQLite catalog (the commit point)."""
