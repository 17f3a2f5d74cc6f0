"""Multi-vector (late-interaction) retrieval with MUVERA fixed dimensional encodings.

A document or query is a *set* of token vectors (ColBERT-style); relevance is the
Chamfer / MaxSim score ``sum_q max_p <q, p>``. MUVERA (Dhulipala et al., NeurIPS 2024)
turns each set into one fixed dimensional encoding (FDE) whose inner products
approximate Chamfer, so candidates come from ordinary single-vector MIPS and only
those are reranked exactly:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> docs = [rng.normal(size=(int(rng.integers(3, 9)), 32)).astype(np.float32) for _ in range(100)]
>>> cfg = FDEConfig(reps=10, ksim=3, dproj=16)
>>> doc_fdes = encode_documents(docs, cfg)                  # (100, 10 * 8 * 16)
>>> scores, idx = search([docs[42][:4]], docs, doc_fdes, cfg, k=3, candidates=20)
>>> doc_fdes.shape, int(idx[0, 0])
((100, 1280), 42)

Token sets are a list of ``(n_i, d)`` arrays or the ragged layout ``(x, offsets)``
(one concatenated float32 array plus int64 offsets), which is what
:class:`vecbox.encoders.tokens.TokenEncoder` returns and what a collection stores.
"""

from vecbox.multivector._chamfer import chamfer, maxsim_candidates, rerank
from vecbox.multivector._config import FDEConfig
from vecbox.multivector._fde import encode_documents, encode_fde, encode_queries
from vecbox.multivector._index import MultiVectorIndex
from vecbox.multivector._ragged import TokenSets, as_token_sets
from vecbox.multivector._search import (
    fde_candidates,
    search,
    search_exact,
    search_single_vector,
    single_vector_candidates,
)

__all__ = [
    "FDEConfig",
    "TokenSets",
    "as_token_sets",
    "encode_queries",
    "encode_documents",
    "encode_fde",
    "chamfer",
    "maxsim_candidates",
    "rerank",
    "fde_candidates",
    "search",
    "search_exact",
    "single_vector_candidates",
    "search_single_vector",
    "MultiVectorIndex",
]
