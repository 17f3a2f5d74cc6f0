"""Encoders turn raw data into vectors: ``text`` (sentence-transformers models)."""
