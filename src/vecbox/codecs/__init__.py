"""Vector compression: codecs, rotations, Matryoshka truncation.

A codec is described by a spec string: zero or more transforms, then one codec,
joined by ``+`` — ``"int8"``, ``"rot+int4"``, ``"pca+trunc:128+int8"``, ``"binary"``,
``"pq:48"``, ``"pq:48:opq"``, ``"lowrank:64"``.

======================  ==========  ============  ===========================================
token                   kind        output dim    bytes per vector (d = width arriving)
======================  ==========  ============  ===========================================
``rot[:hadamard|:qr]``  transform   d             —  (seeded Hadamard where d allows, else QR)
``pca``                 transform   d             —  (variance-ordered rotation)
``trunc:D``             transform   D             —  (first D dims, renormalised)
``f32``                 codec       d             4 d
``f16``                 codec       d             2 d
``int8``                codec       d             d
``int4``                codec       d             ceil(d / 2)
``binary``              codec       d             ceil(d / 8)
``pq:M[:opq]``          codec       d             M   (M must divide d)
``lowrank:r``           codec       r             4 r
======================  ==========  ============  ===========================================

Three layers, each usable alone: :func:`parse_spec` → :class:`CodecSpec` (no
arrays; ``str()`` canonical; ``output_dim`` / ``bytes_per_vector`` from the tree),
:func:`make_codec` → unfitted :class:`Codec`, then ``fit`` / ``encode`` / ``decode`` /
``score`` / ``search``, ``save`` / :func:`load_codec` (JSON + ``.npy``, no pickle).

>>> import numpy as np
>>> from vecbox.codecs import make_codec, parse_spec
>>> parse_spec("ROT+int4").bytes_per_vector(384)
192
>>> x = np.random.default_rng(0).standard_normal((500, 32)).astype(np.float32)
>>> codec = make_codec("rot+int4", 32).fit(x)
>>> codec.encode(x).shape
(500, 16)
"""

from vecbox.codecs._codec import Codec, codec_from_state, load_codec, make_codec
from vecbox.codecs._spec import TOKENS, CodecSpec, Stage, parse_spec

__all__ = [
    "Codec", "CodecSpec", "Stage", "TOKENS", "codec_from_state", "load_codec", "make_codec", "parse_spec",
]
