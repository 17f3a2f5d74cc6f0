"""Lexical retrieval: text analysis and BM25 over the documents a collection stores."""

from vecbox.lexical.analyzer import Analyzer

__all__ = ["Analyzer"]
