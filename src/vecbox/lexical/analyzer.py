"""Text to index terms: lower-case, Unicode folding, word split, stop words, Snowball stemming.

The pipeline is bm25s's (``bm25s.tokenize(texts, stopwords=..., stemmer=Stemmer.Stemmer(lang))``)
plus accent folding, so a collection's lexical index scores like bm25s with the same settings:

1. ``str.lower``, then, for text that is not plain ASCII, NFKD decomposition with the
   combining marks dropped ("Café" -> "cafe", "ﬁ" -> "fi");
2. words are runs of two or more word characters (the regex ``(?u)\\b\\w\\w+\\b``, scikit-learn's
   and bm25s's default);
3. stop words of the language are removed (before stemming, as bm25s does);
4. each word is reduced by the language's Snowball stemmer (PyStemmer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vecbox.errors import InvalidInputError
from vecbox.lexical.stopwords import stopwords as language_stopwords

_WORD = re.compile(r"(?u)\b\w\w+\b")


def fold(text: str) -> str:
    """Lower-case and strip accents (NFKD, combining marks dropped); ASCII text is only lower-cased.

    >>> fold("Crème Brûlée ﬁne")
    'creme brulee fine'
    """
    text = text.lower()
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Analyzer:
    """A collection's text analysis for its lexical index (stored in its catalog as :meth:`to_config`).

    Parameters
    ----------
    language : str
        A Snowball language (``Stemmer.algorithms()``: "english", "german", "french", ...).
    stopwords : bool or sequence of str
        ``True``: the language's list (:mod:`vecbox.lexical.stopwords`; English is Lucene's 33
        words); ``False``: none; a sequence: exactly those words (compared after folding).
    stem : bool
        Reduce words with the language's Snowball stemmer.
    fold_accents : bool
        Strip accents (step 1 above); lower-casing always happens.

    >>> Analyzer().terms("The runners were running in Zürich!")
    ['runner', 'were', 'run', 'zurich']
    """

    language: str = "english"
    stopwords: bool | tuple[str, ...] = True
    stem: bool = True
    fold_accents: bool = True
    _stop: frozenset[str] = field(init=False, repr=False, compare=False)
    _stemmer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.language, str) or not self.language:
            raise InvalidInputError(f"lexical language must be a Snowball language name such as 'english'; "
                                    f"got {self.language!r}")
        if isinstance(self.stopwords, bool):
            stop = language_stopwords(self.language) if self.stopwords else frozenset()
        elif isinstance(self.stopwords, Sequence) and not isinstance(self.stopwords, str) and all(
                isinstance(w, str) for w in self.stopwords):
            object.__setattr__(self, "stopwords", tuple(self.stopwords))
            stop = frozenset(fold(w) for w in self.stopwords)
        else:
            raise InvalidInputError(f"lexical stopwords must be True, False or a list of words; got {self.stopwords!r}")
        object.__setattr__(self, "_stop", stop)
        stemmer = None
        if self.stem:
            import Stemmer  # PyStemmer: the Snowball stemmers in C

            if self.language not in Stemmer.algorithms():
                raise InvalidInputError(
                    f"no Snowball stemmer for language {self.language!r}; use one of "
                    f"{', '.join(sorted(Stemmer.algorithms()))}, or pass stem=False"
                )
            stemmer = Stemmer.Stemmer(self.language)
        object.__setattr__(self, "_stemmer", stemmer)

    # ---------------------------------------------------------------- config
    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "Analyzer":
        """An analyzer from a config dict (``{"language": "german", "stopwords": False}``); ``None``: defaults.

        >>> Analyzer.from_config({"language": "german"}).terms("Die Häuser")
        ['haus']
        """
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise InvalidInputError(f"lexical must be a dict such as {{'language': 'english'}}, True or False; "
                                    f"got {config!r}")
        known = {"language", "stopwords", "stem", "fold_accents"}
        unknown = sorted(set(config) - known - {"k1", "b", "generation"})
        if unknown:
            raise InvalidInputError(f"unknown lexical setting(s) {unknown}; known: {sorted(known | {'k1', 'b'})}")
        sw = config.get("stopwords", True)
        return cls(language=config.get("language", "english"),
                   stopwords=tuple(sw) if isinstance(sw, list) else sw,
                   stem=bool(config.get("stem", True)), fold_accents=bool(config.get("fold_accents", True)))

    def to_config(self) -> dict[str, Any]:
        """The JSON-ready settings (what :meth:`from_config` reads back)."""
        sw: Any = list(self.stopwords) if isinstance(self.stopwords, tuple) else self.stopwords
        return {"language": self.language, "stopwords": sw, "stem": self.stem, "fold_accents": self.fold_accents}

    # --------------------------------------------------------------- analyse
    def words(self, text: str) -> list[str]:
        """Steps 1-3: folded words without stop words (not stemmed)."""
        text = fold(text) if self.fold_accents else text.lower()
        stop = self._stop
        return [w for w in _WORD.findall(text) if w not in stop]

    def terms(self, text: str) -> list[str]:
        """The index terms of one text, in order, repeats kept (their count is the term frequency)."""
        words = self.words(text)
        return self._stemmer.stemWords(words) if self._stemmer is not None and words else words

    def terms_many(self, texts: Sequence[str | None]) -> list[list[str] | None]:
        """:meth:`terms` of each text (``None`` stays ``None``: a row without a document)."""
        return [None if t is None else self.terms(t) for t in texts]


__all__ = ["Analyzer", "fold"]
