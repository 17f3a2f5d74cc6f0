"""vecbox: vector embeddings end to end - encode, compress, store, search, analyze.

>>> import vecbox
>>> sorted(vecbox.__all__)[:3]
['Collection', 'Hit', 'Record']

``import vecbox`` stays light: torch and sentence-transformers load only when a
text model is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecbox import errors
from vecbox.collection import Collection, Hit, Record

if TYPE_CHECKING:
    from vecbox.codecs import make_codec, parse_spec
    from vecbox.encoders.text import TextEncoder

__version__ = "0.1.0"
__all__ = ["Collection", "Hit", "Record", "TextEncoder", "errors", "make_codec", "parse_spec", "__version__"]


def __getattr__(name: str) -> Any:
    # Heavier names load on first use, so `import vecbox` stays cheap.
    if name == "TextEncoder":
        from vecbox.encoders.text import TextEncoder

        return TextEncoder
    if name in ("make_codec", "parse_spec"):
        from vecbox import codecs

        return getattr(codecs, name)
    raise AttributeError(f"module 'vecbox' has no attribute {name!r}")
