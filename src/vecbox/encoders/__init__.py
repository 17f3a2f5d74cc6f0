"""Encoders turn raw data into vectors: ``text`` (sentence-transformers models), ``tokens``
(per-token vectors for multi-vector retrieval) and ``graph`` (FastRP node embeddings)."""
