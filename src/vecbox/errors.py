"""The one exception hierarchy of vecbox.

Every error a user can trigger is a :class:`VecboxError`; each subclass also
inherits the builtin it refines, so existing ``except ValueError`` clauses
keep working. Messages say what was wrong, the value received, and what to do.

::

    VecboxError
    ├── InvalidInputError (ValueError)          bad arrays, ids, metadata, parameters
    │   ├── DimensionMismatchError               vectors of the wrong width
    │   ├── DuplicateIdError                     an id repeated in a batch or already stored
    │   ├── FilterError                          a malformed ``where`` filter
    │   ├── SpecError                            a codec spec string that does not parse or fit the width
    │   └── NotFittedError (AttributeError)      an estimator used before ``fit``
    ├── UnknownIdError (KeyError)                ids that are not in the collection
    ├── CollectionNotFoundError (FileNotFoundError)
    ├── CollectionExistsError (FileExistsError)
    ├── CorruptCollectionError                   damaged or truncated files on disk
    ├── CollectionLockedError (TimeoutError)     another writer holds the lock
    ├── MissingDependencyError (ImportError)     an optional extra is not installed
    └── DatasetError (ValueError)                a data set on disk is not in the expected format
"""

from __future__ import annotations


class VecboxError(Exception):
    """Root of every error raised by vecbox."""


class InvalidInputError(VecboxError, ValueError):
    """An argument has the wrong type, shape or value; nothing was written."""


class DimensionMismatchError(InvalidInputError):
    """Vectors do not have the width the collection or model expects."""


class DuplicateIdError(InvalidInputError):
    """An id appears twice in one batch, or ``add`` was given an id that is already stored."""


class FilterError(InvalidInputError):
    """A ``where`` filter uses an unknown operator or a value of the wrong type."""


class NotFittedError(InvalidInputError, AttributeError):
    """An estimator (analyzer, codec) was used before ``fit``; call ``fit(x)`` first."""


class SpecError(InvalidInputError):
    """A codec spec string (``"rot+int4"``) does not parse, or its stages do not fit the vector width.

    The message quotes the spec, marks the offending stage with a caret and suggests the nearest token.
    """


class UnknownIdError(VecboxError, KeyError):
    """Some of the requested ids are not in the collection."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CollectionNotFoundError(VecboxError, FileNotFoundError):
    """The path does not hold a vecbox collection."""


class CollectionExistsError(VecboxError, FileExistsError):
    """``create`` was asked for a path that already holds a collection."""


class CorruptCollectionError(VecboxError):
    """A collection's files are damaged: a truncated segment, a bad header, an unreadable database."""


class CollectionLockedError(VecboxError, TimeoutError):
    """Another process held the collection's write lock for longer than the timeout."""


class MissingDependencyError(VecboxError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class DatasetError(VecboxError, ValueError):
    """A data set on disk is missing files or is not in the expected format."""


__all__ = [
    "VecboxError",
    "InvalidInputError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "FilterError",
    "SpecError",
    "NotFittedError",
    "UnknownIdError",
    "CollectionNotFoundError",
    "CollectionExistsError",
    "CorruptCollectionError",
    "CollectionLockedError",
    "MissingDependencyError",
    "DatasetError",
]
