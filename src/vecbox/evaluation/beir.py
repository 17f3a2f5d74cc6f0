"""Load retrieval data sets in the BEIR layout (also used by MTEB).

A BEIR folder holds::

    corpus.jsonl        {"_id": ..., "title": ..., "text": ...} per line
    queries.jsonl       {"_id": ..., "text": ...} per line
    qrels/<split>.tsv   header "query-id<TAB>corpus-id<TAB>score", one judgement per line
                        (or qrels/<split>.jsonl with {"query-id", "corpus-id", "score"} rows)

Some MTEB data sets (LIMIT) ship a single ``qrels.jsonl`` next to the corpus
instead of a ``qrels/`` folder; it is read as the split ``"test"``.

Everything is read with the standard library; ids are always strings (JSON
integers are converted with ``str``). As in BEIR's ``GenericDataLoader``, only
the queries that have judgements in the chosen split are kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecbox.errors import DatasetError, InvalidInputError

QRELS_HEADER = ("query-id", "corpus-id", "score")
ROOT_QRELS_SPLIT = "test"


@dataclass(frozen=True)
class BeirDataset:
    """A retrieval data set: corpus, queries and graded relevance judgements.

    Attributes
    ----------
    corpus : dict of str to dict of str to str
        ``{doc_id: {"title": ..., "text": ...}}`` in corpus file order.
    queries : dict of str to str
        ``{query_id: text}``, only the queries judged in the split, in
        queries file order.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}`` in qrels file order. Rows with
        ``grade <= 0`` are kept; the metrics treat them as non-relevant.
    name : str
        The folder name, e.g. ``"scifact"``.

    Examples
    --------
    >>> ds = BeirDataset(
    ...     corpus={"d1": {"title": "Cats", "text": "Cats purr."}, "d2": {"title": "", "text": "Dogs bark."}},
    ...     queries={"q1": "Which animal purrs?"},
    ...     qrels={"q1": {"d1": 1}},
    ...     name="pets",
    ... )
    >>> ds.doc_texts()
    (['d1', 'd2'], ['Cats Cats purr.', 'Dogs bark.'])
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str

    def doc_texts(self) -> tuple[list[str], list[str]]:
        """Return ``(ids, texts)`` of the corpus, in file order, ready to encode.

        Each text is ``(title + " " + text).strip()``, the convention BEIR and
        MTEB use when encoding a corpus.

        Returns
        -------
        tuple of (list of str, list of str)
            Document ids and their texts, aligned.

        Examples
        --------
        >>> BeirDataset({"7": {"title": "T", "text": "body"}}, {}, {}, "x").doc_texts()
        (['7'], ['T body'])
        """
        ids = list(self.corpus)
        texts = [(doc.get("title", "") + " " + doc.get("text", "")).strip() for doc in self.corpus.values()]
        return ids, texts

    def query_texts(self) -> tuple[list[str], list[str]]:
        """Return ``(ids, texts)`` of the judged queries, in file order.

        Examples
        --------
        >>> BeirDataset({}, {"q1": "why?"}, {"q1": {}}, "x").query_texts()
        (['q1'], ['why?'])
        """
        return list(self.queries), list(self.queries.values())


# ----------------------------------------------------------------- file readers


def _jsonl_rows(path: Path, expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file."""
    try:
        fh = open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path}, line {lineno}: not valid JSON ({exc.msg}); expected one JSON object per line like {expected}"
                ) from None
            if not isinstance(obj, dict):
                raise DatasetError(
                    f"{path}, line {lineno}: expected a JSON object like {expected}; got a {type(obj).__name__}"
                )
            yield lineno, obj


def _as_id(value: Any, path: Path, lineno: int, key: str, expected: str) -> str:
    """A string or integer id, as a non-empty string."""
    if isinstance(value, str) and value != "":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    what = "missing" if value is None else f"{value!r} (an id must be a non-empty string or an integer)"
    raise DatasetError(f"{path}, line {lineno}: {key!r} is {what}; expected {expected}")


def _as_text(value: Any, path: Path, lineno: int, key: str, expected: str, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if isinstance(value, str):
        return value
    what = "missing" if value is None else f"{value!r} ({type(value).__name__}), not a string"
    raise DatasetError(f"{path}, line {lineno}: {key!r} is {what}; expected {expected}")


def _as_grade(value: Any, path: Path, lineno: int, expected: str) -> int:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise DatasetError(f"{path}, line {lineno}: score {value!r} is not an integer; expected {expected}")


def _read_corpus(path: Path) -> dict[str, dict[str, str]]:
    expected = '{"_id": "d1", "title": "...", "text": "..."}'
    corpus: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _jsonl_rows(path, expected):
        doc_id = _as_id(obj.get("_id"), path, lineno, "_id", expected)
        if doc_id in corpus:
            raise DatasetError(
                f"{path}, line {lineno}: duplicate _id {doc_id!r} (first on line {first_line[doc_id]}); "
                "expected every document id once"
            )
        title = _as_text(obj.get("title"), path, lineno, "title", expected, optional=True)
        text = _as_text(obj.get("text"), path, lineno, "text", expected)
        corpus[doc_id] = {"title": title, "text": text}
        first_line[doc_id] = lineno
    if not corpus:
        raise DatasetError(f"{path} holds no documents; expected one JSON object per line like {expected}")
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    expected = '{"_id": "q1", "text": "..."}'
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _jsonl_rows(path, expected):
        qid = _as_id(obj.get("_id"), path, lineno, "_id", expected)
        if qid in queries:
            raise DatasetError(
                f"{path}, line {lineno}: duplicate _id {qid!r} (first on line {first_line[qid]}); "
                "expected every query id once"
            )
        queries[qid] = _as_text(obj.get("text"), path, lineno, "text", expected)
        first_line[qid] = lineno
    return queries


def _add_judgement(
    qrels: dict[str, dict[str, int]],
    first_line: dict[str, int],
    qid: str,
    doc_id: str,
    grade: int,
    path: Path,
    lineno: int,
) -> None:
    judged = qrels.setdefault(qid, {})
    if doc_id in judged and judged[doc_id] != grade:
        raise DatasetError(
            f"{path}, line {lineno}: query {qid!r} judges document {doc_id!r} again with score {grade} "
            f"(it had {judged[doc_id]}); expected one score per (query-id, corpus-id) pair"
        )
    judged[doc_id] = grade
    first_line.setdefault(qid, lineno)


def _read_qrels_tsv(path: Path, first_line: dict[str, int]) -> dict[str, dict[str, int]]:
    expected = "query-id<TAB>corpus-id<TAB>score with an integer score"
    qrels: dict[str, dict[str, int]] = {}
    try:
        # newline=None (the default) turns CRLF line ends, as BEIR ships them, into "\n".
        fh = open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        header = fh.readline()
        fields = tuple(f.strip() for f in header.rstrip("\n").split("\t"))
        if fields != QRELS_HEADER:
            raise DatasetError(
                f"{path}, line 1: expected the header 'query-id<TAB>corpus-id<TAB>score'; got {header.rstrip()!r}"
            )
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            row = line.split("\t")
            if len(row) != 3:
                raise DatasetError(
                    f"{path}, line {lineno}: expected 3 tab-separated fields ({expected}); "
                    f"got {len(row)}: {line!r}"
                )
            qid, doc_id, score = (f.strip() for f in row)
            if not qid or not doc_id:
                raise DatasetError(f"{path}, line {lineno}: empty query-id or corpus-id; expected {expected}")
            grade = _as_grade(score, path, lineno, expected)
            _add_judgement(qrels, first_line, qid, doc_id, grade, path, lineno)
    return qrels


def _read_qrels_jsonl(path: Path, first_line: dict[str, int]) -> dict[str, dict[str, int]]:
    expected = '{"query-id": "q1", "corpus-id": "d1", "score": 1}'
    qrels: dict[str, dict[str, int]] = {}
    for lineno, obj in _jsonl_rows(path, expected):
        qid = _as_id(obj.get("query-id"), path, lineno, "query-id", expected)
        doc_id = _as_id(obj.get("corpus-id"), path, lineno, "corpus-id", expected)
        if "score" not in obj:
            raise DatasetError(f"{path}, line {lineno}: 'score' is missing; expected {expected}")
        grade = _as_grade(obj["score"], path, lineno, expected)
        _add_judgement(qrels, first_line, qid, doc_id, grade, path, lineno)
    return qrels


# ------------------------------------------------------------------- the loader


def available_splits(path: str | os.PathLike[str]) -> list[str]:
    """The qrels splits of a BEIR folder, sorted: stems of ``qrels/*.tsv`` and ``qrels/*.jsonl``.

    A root ``qrels.jsonl`` counts as the split ``"test"``.

    Parameters
    ----------
    path : str or path-like
        The data set folder.

    Returns
    -------
    list of str
        Split names, e.g. ``["dev", "test", "train"]``; empty if there are none.
    """
    root = Path(path)
    splits: set[str] = set()
    qdir = root / "qrels"
    if qdir.is_dir():
        splits.update(p.stem for p in qdir.iterdir() if p.is_file() and p.suffix in (".tsv", ".jsonl"))
    if (root / "qrels.jsonl").is_file():
        splits.add(ROOT_QRELS_SPLIT)
    return sorted(splits)


def _qrels_file(root: Path, split: str) -> Path:
    candidates = [root / "qrels" / f"{split}.tsv", root / "qrels" / f"{split}.jsonl"]
    if split == ROOT_QRELS_SPLIT:
        candidates.append(root / "qrels.jsonl")
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{root}: split {split!r} has several qrels files ({', '.join(str(p.relative_to(root)) for p in found)}); "
            "expected exactly one - remove the others"
        )
    if not found:
        splits = available_splits(root)
        have = f"splits found: {', '.join(splits)}" if splits else "no qrels found at all"
        raise DatasetError(
            f"{root}: no qrels for split {split!r}; expected "
            f"{' or '.join(str(p.relative_to(root)) for p in candidates)} ({have})"
        )
    return found[0]


def load_beir(path: str | os.PathLike[str], split: str = "test") -> BeirDataset:
    """Read a BEIR-format data set folder.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``corpus.jsonl``, ``queries.jsonl`` and the qrels:
        ``qrels/<split>.tsv`` (header ``query-id<TAB>corpus-id<TAB>score``,
        LF or CRLF line ends), ``qrels/<split>.jsonl``, or - for the split
        ``"test"`` only - a root ``qrels.jsonl`` (MTEB's LIMIT layout).
    split : str
        Which judgements to load, e.g. ``"test"``, ``"dev"``, ``"train"``.

    Returns
    -------
    BeirDataset
        The whole corpus, the queries that have judgements in ``split`` (in
        queries file order) and the judgements, ids as strings. Judgements
        with score <= 0 are kept.

    Raises
    ------
    InvalidInputError
        If ``split`` is not a non-empty string.
    DatasetError
        If the folder, a file or the split is missing (the message lists the
        splits that exist), a line is not a JSON object, an id or text is
        missing, a score is not an integer, an id is repeated, a pair is
        judged twice with different scores, or the qrels name a query that
        ``queries.jsonl`` lacks. Messages name the file and the line.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "corpus.jsonl").write_text(json.dumps({"_id": 1, "title": "A", "text": "alpha"}) + "\\n")
    >>> _ = (root / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "a?"}) + "\\n")
    >>> (root / "qrels").mkdir()
    >>> _ = (root / "qrels" / "test.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq\\t1\\t1\\n")
    >>> ds = load_beir(root)
    >>> ds.qrels, ds.doc_texts()
    ({'q': {'1': 1}}, (['1'], ['A alpha']))
    """
    root = Path(path)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(
            f"BEIR data set folder {root} {what}; expected a folder with corpus.jsonl, queries.jsonl and qrels/"
        )
    if not isinstance(split, str) or not split:
        raise InvalidInputError(f"split must be a non-empty string such as 'test'; got {split!r}")
    files = {}
    for name in ("corpus.jsonl", "queries.jsonl"):
        files[name] = root / name
        if not files[name].is_file():
            raise DatasetError(f"{root}: {name} is missing; a BEIR data set needs corpus.jsonl, queries.jsonl and qrels")
    qrels_path = _qrels_file(root, split)

    corpus = _read_corpus(files["corpus.jsonl"])
    all_queries = _read_queries(files["queries.jsonl"])
    first_line: dict[str, int] = {}
    if qrels_path.suffix == ".tsv":
        qrels = _read_qrels_tsv(qrels_path, first_line)
    else:
        qrels = _read_qrels_jsonl(qrels_path, first_line)
    if not qrels:
        raise DatasetError(f"{qrels_path} holds no judgements; expected at least one row for split {split!r}")

    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        shown = ", ".join(repr(q) for q in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"{qrels_path}, line {first_line[missing[0]]}: query-id {missing[0]!r} is not in {files['queries.jsonl']} "
            f"({len(missing)} judged queries are missing: {shown}); expected every judged query to have a text"
        )
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name=root.resolve().name)


__all__ = ["BeirDataset", "load_beir", "available_splits"]
