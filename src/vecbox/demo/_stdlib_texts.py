"""One standard-library object in, one short text out: the docstring half of the harvest.

Used by :mod:`vecbox.demo._stdlib_harvest` in the child interpreter (see
:mod:`vecbox.demo.stdlib_docs`), so it imports nothing but the standard library.

- :func:`own_doc` / :func:`class_doc`: the cleaned docstring of an object (a class
  without a docstring of its own falls back to its ``__init__``; auto-generated
  ``Point(x, y)`` docstrings and docstrings inherited from a public base do not count);
- :func:`signature_of`: a one-line signature without memory addresses, ``(...)`` when long;
- :func:`text_record`: the ``{"id", "text", "metadata"}`` record of one object, its text
  ``"{qualified name}{signature}: {docstring}"`` whitespace-collapsed and cut to
  :data:`MAX_TEXT_CHARS` by :func:`truncate`;
- :func:`method_records`: the records of a class's own documented public methods
  (including those of its private bases; overrides with an unchanged docstring are skipped).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

#: Longest text produced, in characters (the embedding model reads ~256 tokens).
MAX_TEXT_CHARS = 1000
#: Longest signature kept; longer ones are written ``(...)``.
_MAX_SIGNATURE_CHARS = 300
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def own_doc(obj: Any) -> str | None:
    """``obj.__doc__`` cleaned with :func:`inspect.cleandoc`; None when missing, empty or not text.

    >>> own_doc(len)
    'Return the number of items in a container.'
    """
    try:
        doc = obj.__doc__
    except Exception:
        return None
    if not isinstance(doc, str):
        return None
    doc = inspect.cleandoc(doc)
    return doc or None


def _collapse(text: str) -> str:
    return " ".join(text.split())


def signature_of(obj: Any, *, drop_self: bool = False) -> str:
    """The signature of ``obj`` on one line, without ``at 0x...`` addresses.

    ``""`` when there is none, ``"(...)"`` when it is longer than 300 characters;
    ``drop_self`` leaves out a first parameter named ``self``.

    >>> signature_of(divmod)
    '(x, y, /)'
    """
    try:
        sig = inspect.signature(obj)
    except Exception:  # builtins without __text_signature__, odd callables
        return ""
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        try:
            sig = sig.replace(parameters=params[1:])
        except Exception:
            return ""
    try:
        text = _ADDRESS.sub("", str(sig))
    except Exception:
        return ""
    text = _collapse(text)
    return text if len(text) <= _MAX_SIGNATURE_CHARS else "(...)"


def truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, on a word boundary when one is near, with ``...``.

    >>> truncate("one two three four", limit=12)
    'one two...'
    """
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 3)
    if cut < limit // 2:
        cut = limit - 3
    return text[:cut].rstrip() + "..."


def _is_auto_doc(short_name: str, doc: str) -> bool:
    """A docstring written by the machinery for an undocumented class.

    ``Point(x, y)`` from ``namedtuple``/``dataclass``, ``An enumeration.``
    from ``enum`` (functional API).
    """
    if doc == "An enumeration.":
        return True
    return "\n" not in doc and doc.startswith(short_name + "(") and doc.endswith(")")


_OBJECT_INIT_DOC = inspect.cleandoc(object.__init__.__doc__ or "")


def class_doc(cls: type, name: str) -> str | None:
    """The class docstring, else its own ``__init__`` docstring (like pydoc shows)."""
    doc = own_doc(cls)
    if doc is not None and (
        _is_auto_doc(getattr(cls, "__name__", name), doc) or _class_doc_is_inherited(cls, doc)
    ):
        doc = None
    if doc is None:
        try:
            init = vars(cls).get("__init__")
        except Exception:
            init = None
        init_doc = own_doc(init) if inspect.isfunction(init) else None
        if init_doc is not None and init_doc != _OBJECT_INIT_DOC:
            doc = init_doc
    return doc


def text_record(public: str, kind: str, name: str, signature: str, doc: str) -> dict[str, Any]:
    """The record of one object documented under module ``public``.

    ``"_doc"`` (the collapsed docstring, for deduplication) is removed by the harvester.

    >>> r = text_record("os.path", "function", "os.path.join", "(a, *p)", "Join  two   paths.")
    >>> r["text"], r["metadata"]["package"]
    ('os.path.join(a, *p): Join two paths.', 'os')
    """
    head = f"module {name}" if kind == "module" else f"{name}{signature}"
    return {
        "id": name,
        "text": truncate(_collapse(f"{head}: {doc}")),
        "metadata": {
            "module": public,
            "package": public.split(".")[0],
            "kind": kind,
            "name": name,
        },
        "_doc": _collapse(doc),
    }


def _own_bases(cls: type) -> list[type]:
    """``cls`` and its private bases up to the first public one, in MRO order.

    What these define is documented with ``cls``: private bases are never
    harvested themselves (``argparse._ActionsContainer``, ``_io._IOBase``).
    """
    mro = list(cls.__mro__)
    own = [cls]
    for base in mro[1:]:
        if not getattr(base, "__name__", "_").startswith("_"):
            break
        own.append(base)
    return own


def _class_doc_is_inherited(cls: type, doc: str) -> bool:
    """Whether a public base (or ``object``) has the very same docstring."""
    try:
        public_bases = cls.__mro__[len(_own_bases(cls)) :]
    except Exception:
        return False
    return any(own_doc(base) == doc for base in public_bases)


def method_records(public: str, qualname: str, cls: type) -> list[dict[str, Any]]:
    """The documented public methods of ``cls``.

    Methods defined by the class itself count, and so do those of its
    private bases up to the first public one (``argparse.ArgumentParser``
    inherits ``add_argument`` from ``argparse._ActionsContainer``); methods
    of public bases are documented with those bases.
    """
    try:
        mro = list(cls.__mro__)
        own_bases = _own_bases(cls)
    except Exception:
        return []
    records = []
    done: set[str] = set()
    for depth, owner in enumerate(own_bases):
        try:
            namespace = dict(vars(owner))
        except Exception:
            continue
        for attr in sorted(namespace):
            if attr.startswith("_") or attr in done:
                continue
            done.add(attr)
            func = _unwrap(namespace[attr])
            if not inspect.isroutine(func):
                continue  # properties, constants, nested classes
            doc = own_doc(func)
            if doc is None:
                continue
            if any(
                attr in vars(base) and own_doc(_unwrap(vars(base)[attr])) == doc
                for base in mro[depth + 1 :]
            ):
                continue  # same text as the method it overrides
            try:
                bound = getattr(cls, attr)
            except Exception:
                bound = func
            signature = signature_of(bound, drop_self=True)
            record = text_record(public, "method", f"{qualname}.{attr}", signature, doc)
            record["_depth"] = depth
            record["_func"] = func
            records.append(record)
    return records


def _unwrap(raw: Any) -> Any:
    return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw

