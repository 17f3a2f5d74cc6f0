"""Training pairs without labels, from a corpus: title -> body, and sentence -> rest of its document.

A corpus is a BEIR folder (its ``corpus.jsonl``), a JSONL, CSV or Parquet file with a ``text``
column (``title`` and ``_id``/``id`` optional), or a collection's stored documents
(:func:`collection_docs`; the title from a metadata field). Two kinds of pairs:

- ``"title"``: a document's title as the query, its body as the positive;
- ``"ict"``: inverse cloze (Lee et al. 2019): a random sentence of a document as the query, the
  rest of the document (that sentence removed) as the positive; documents of one sentence give none.

Pairs are :class:`Pair` (anchor, positive, negatives, the positive's document id) and round-trip
through JSONL (:func:`write_pairs` / :func:`read_pairs`), the format ``vecbox train pairs`` reads.

>>> docs = [Doc("d1", "Reading CSV files", "Read rows. Write rows back."), Doc("d2", "", "One sentence only.")]
>>> [(p.anchor, p.positive) for p in make_pairs(docs, kinds=("title", "ict"), seed=0)]
[('Reading CSV files', 'Read rows. Write rows back.'), ('Write rows back.', 'Read rows.')]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecbox.errors import DatasetError, InvalidInputError

KINDS = ("title", "ict")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")


@dataclass(frozen=True)
class Doc:
    """One corpus document."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Pair:
    """A training example: ``anchor`` (the query side), ``positive``, optional hard ``negatives``."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] = field(default_factory=tuple)
    doc_id: str | None = None  # the positive's document, so mining can leave it out


def read_corpus(path: str | Path, *, text: str = "text", title: str = "title", id: str | None = None) -> list[Doc]:
    """Documents of a BEIR folder or a JSONL / CSV / Parquet file (column names: ``text``, ``title``, ``id``;
    the id defaults to ``_id`` or ``id``, else the row number)."""
    from vecbox.records import read_records

    path = Path(path)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise DatasetError(f"{path} is a folder without corpus.jsonl; give a BEIR folder or a JSONL, CSV or "
                               "Parquet file with a 'text' column")
        path = path / "corpus.jsonl"
    docs = []
    for n, row in enumerate(read_records(path), 1):
        if text not in row:
            raise DatasetError(f"{path}, row {n}: no {text!r} column (it has {sorted(row)}); name the text column "
                               "with text=... (--text-column)")
        key = id if id is not None else ("_id" if "_id" in row else "id" if "id" in row else None)
        body, head = row.get(text), row.get(title)
        if body is not None and not isinstance(body, str):
            raise DatasetError(f"{path}, row {n}: {text!r} is {type(body).__name__}, not text")
        docs.append(Doc(str(row[key]) if key is not None else str(n), str(head or "").strip(), (body or "").strip()))
    if not docs:
        raise DatasetError(f"{path} holds no documents")
    return docs


def collection_docs(collection: object, *, title: str = "title", batch_size: int = 1000) -> list[Doc]:
    """Documents stored in a collection (items without a document are skipped), in id order; the title
    is the metadata field ``title`` when an item has it.

    >>> from vecbox import Collection
    >>> col = Collection.create(tmp + "/c", dim=2)
    >>> col.add(["a", "b"], np.eye(2), metadatas=[{"title": "CSV"}, None], documents=["Read rows.", None])
    1
    >>> collection_docs(col)
    [Doc(id='a', title='CSV', text='Read rows.')]
    """
    ids = sorted(collection.ids())  # type: ignore[attr-defined]
    out = []
    for start in range(0, len(ids), batch_size):
        for rec in collection.get(ids[start : start + batch_size]):  # type: ignore[attr-defined]
            if rec.document:
                head = (rec.metadata or {}).get(title)
                out.append(Doc(rec.id, head.strip() if isinstance(head, str) else "", rec.document.strip()))
    return out


def sentences(text: str) -> list[str]:
    """Split text into sentences (at ``.!?`` followed by a space and a capital, digit or bracket)."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def make_pairs(docs: Iterable[Doc], *, kinds: Sequence[str] = ("title", "ict"), seed: int = 0,
               max_pairs: int | None = None, min_chars: int = 10) -> list[Pair]:
    """Unsupervised pairs from ``docs``, in corpus order: one per document and kind where it applies
    (``max_pairs``: a random subset). Same docs + seed = same pairs; texts shorter than ``min_chars``
    are skipped."""
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise InvalidInputError(f"kinds must be taken from {KINDS}; got {list(kinds)}")
    rng = np.random.default_rng(seed)
    out: list[Pair] = []
    for d in docs:
        if "title" in kinds and len(d.title) >= min_chars and len(d.text) >= min_chars:
            out.append(Pair(d.title, d.text, doc_id=d.id))
        if "ict" in kinds:
            sents = sentences(d.text)
            if len(sents) >= 2:
                i = int(rng.integers(len(sents)))
                rest = " ".join(sents[:i] + sents[i + 1:])
                if len(sents[i]) >= min_chars and len(rest) >= min_chars:
                    out.append(Pair(sents[i], rest, doc_id=d.id))
    if max_pairs is not None and len(out) > max_pairs:  # a random subset, in corpus order
        out = [out[i] for i in sorted(rng.choice(len(out), size=max_pairs, replace=False))]
    return out


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> Path:
    """One JSON object per line: ``{"anchor", "positive", "negatives", "doc_id"}``."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"anchor": p.anchor, "positive": p.positive, "negatives": list(p.negatives),
                                 "doc_id": p.doc_id}, ensure_ascii=False) + "\n")
    return path


def read_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a JSONL / CSV / Parquet file with ``anchor`` and ``positive`` columns (``negatives``: a
    list, or ``negative``, ``negative_1``... columns)."""
    from vecbox.records import read_records

    out = []
    for n, row in enumerate(read_records(path), 1):
        if not isinstance(row.get("anchor"), str) or not isinstance(row.get("positive"), str):
            raise DatasetError(f"{path}, row {n}: needs text in 'anchor' and 'positive' (it has {sorted(row)}); "
                               "make pairs with vecbox.train.pairs.make_pairs or `vecbox train pairs`")
        negs = row.get("negatives")
        if negs is None:
            negs = [row[k] for k in sorted(row) if k.startswith("negative") and isinstance(row[k], str)]
        out.append(Pair(row["anchor"], row["positive"], tuple(negs), row.get("doc_id")))
    return out


__all__ = ["Doc", "KINDS", "Pair", "collection_docs", "make_pairs", "read_corpus", "read_pairs", "sentences",
           "write_pairs"]
