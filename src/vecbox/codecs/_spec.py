"""Codec spec strings: parse once into a frozen tree, derive everything from it.

``parse_spec("pca+trunc:128+int8")`` returns a :class:`CodecSpec` holding a tuple of
:class:`Stage` objects; ``str(spec)`` is canonical; ``spec.output_dim(d)`` and
``spec.bytes_per_vector(d)`` come from the tree. The parser knows no arrays.

Grammar (EBNF; case-insensitive, no spaces inside)::

    spec      = { transform "+" } codec ;
    transform = "rot" [ ":hadamard" | ":qr" ]
              | "pca"
              | "trunc:" INT ;
    codec     = "f32" | "f16" | "int8" | "int4" | "binary"
              | "pq:" INT [ ":opq" ]
              | "lowrank:" INT ;
    INT       = digit { digit } ;           (no leading zeros, >= 1)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from vecbox.errors import SpecError

Kind = Literal["transform", "codec"]


@dataclass(frozen=True)
class _ArgRule:
    """One positional argument of a token: an integer or one word out of a set."""

    name: str
    choices: tuple[str, ...] = ()  # empty: a positive integer
    required: bool = True
    default: str | None = None  # canonical form drops an argument equal to its default


@dataclass(frozen=True)
class _Token:
    name: str
    kind: Kind
    args: tuple[_ArgRule, ...]
    usage: str
    doc: str


# The token table. Each row is also one row of the docs' token table (docs/ARCHITECTURE.md).
TOKENS: dict[str, _Token] = {
    t.name: t
    for t in (
        _Token("rot", "transform", (_ArgRule("kind", ("qr", "hadamard"), required=False),),
               "rot[:hadamard|:qr]", "seeded rotation: randomized Hadamard where d allows, else random orthogonal "
               "(QR); d -> d"),
        _Token("pca", "transform", (), "pca", "variance-ordered rotation (post-hoc Matryoshka); d -> d"),
        _Token("trunc", "transform", (_ArgRule("D"),), "trunc:D", "keep the first D dimensions and renormalise; d -> D"),
        _Token("f32", "codec", (), "f32", "float32, 4 d bytes (lossless)"),
        _Token("f16", "codec", (), "f16", "float16, 2 d bytes"),
        _Token("int8", "codec", (), "int8", "per-dimension calibrated 8-bit scalar quantizer, d bytes"),
        _Token("int4", "codec", (), "int4", "per-dimension calibrated 4-bit scalar quantizer, two codes per byte"),
        _Token("binary", "codec", (), "binary", "sign bits around the per-dimension mean, packed, d/8 bytes"),
        _Token("pq", "codec", (_ArgRule("M"), _ArgRule("opq", ("opq",), required=False)),
               "pq:M[:opq]", "product quantizer, M sub-vectors of 8 bits (FAISS), optional OPQ rotation; M bytes"),
        _Token("lowrank", "codec", (_ArgRule("r"),), "lowrank:r", "SVD projection to r dims stored as float32, 4 r bytes"),
    )
}


@dataclass(frozen=True)
class Stage:
    """One stage of a codec spec: a token name and its (canonical) arguments.

    Integers stay ``int``; words stay ``str``; arguments equal to their default are dropped.
    """

    name: str
    args: tuple[int | str, ...] = ()

    @property
    def kind(self) -> Kind:
        return TOKENS[self.name].kind

    def __str__(self) -> str:
        return ":".join([self.name, *(str(a) for a in self.args)])


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec spec: zero or more transforms followed by exactly one codec.

    Examples
    --------
    >>> spec = parse_spec("PCA+trunc:128+int8")
    >>> str(spec), spec.output_dim(384), spec.bytes_per_vector(384)
    ('pca+trunc:128+int8', 128, 128)
    >>> str(parse_spec("ROT:QR+int4")), str(parse_spec("rot+int4"))
    ('rot:qr+int4', 'rot+int4')
    """

    stages: tuple[Stage, ...]

    def __str__(self) -> str:
        return "+".join(str(s) for s in self.stages)

    @property
    def transforms(self) -> tuple[Stage, ...]:
        return self.stages[:-1]

    @property
    def codec(self) -> Stage:
        return self.stages[-1]

    def dims(self, d: int) -> list[int]:
        """The working dimension before each stage and after the last transform (``len(stages)`` values).

        Raises :class:`SpecError` when a stage does not fit the width it receives.
        """
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise SpecError(f"the vector width must be a positive integer; got {d!r}")
        out = [d]
        for i, stage in enumerate(self.stages):
            d_in = out[-1]
            if stage.name == "trunc":
                target = int(stage.args[0])
                if target > d_in:
                    raise self._dim_error(i, f"trunc:{target} keeps {target} dims but only {d_in} arrive",
                                          f"use trunc:D with D <= {d_in}")
                d_in = target
            elif stage.name == "rot" and stage.args == ("hadamard",) and hadamard_factor(d_in) is None:
                raise self._dim_error(i, f"rot:hadamard needs d = 2^k * m with m = 1 or m - 1 a prime = 3 (mod 4) "
                                         f"(e.g. 256, 384, 768, 1024); got d = {d_in}",
                                      "use 'rot' or 'rot:qr' (random orthogonal) for this width")
            elif stage.name == "pq":
                m = int(stage.args[0])
                if d_in % m:
                    divisors = [v for v in range(1, d_in + 1) if d_in % v == 0 and 4 <= d_in // v <= 32]
                    raise self._dim_error(i, f"pq:{m} splits {d_in} dims into {m} sub-vectors, but {m} does not "
                                             f"divide {d_in}", f"choose M among {divisors[-6:] or [1]}")
            elif stage.name == "lowrank":
                r = int(stage.args[0])
                if r > d_in:
                    raise self._dim_error(i, f"lowrank:{r} asks for {r} dims but only {d_in} arrive",
                                          f"use lowrank:r with r <= {d_in}")
            if i < len(self.stages) - 1:
                out.append(d_in)
        return out

    def output_dim(self, d: int) -> int:
        """Width of the vectors the final codec quantizes (after every transform)."""
        return self.dims(d)[-1]

    def bytes_per_vector(self, d: int) -> int:
        """Size of one code in bytes for ``d``-dimensional input vectors."""
        d_out = self.output_dim(d)
        c = self.codec
        if c.name == "f32":
            return 4 * d_out
        if c.name == "f16":
            return 2 * d_out
        if c.name == "int8":
            return d_out
        if c.name == "int4":
            return (d_out + 1) // 2
        if c.name == "binary":
            return (d_out + 7) // 8
        if c.name == "pq":
            return int(c.args[0])
        if c.name == "lowrank":
            return 4 * int(c.args[0])
        raise AssertionError(c.name)  # unreachable: the parser admits only table tokens

    def _dim_error(self, i: int, problem: str, remedy: str) -> SpecError:
        text = str(self)
        start = sum(len(str(s)) + 1 for s in self.stages[:i])
        return SpecError(f"codec spec {text!r} does not fit: {problem}; {remedy}\n"
                         + _caret(text, start, len(str(self.stages[i]))))


# --------------------------------------------------------------------------- parser
def parse_spec(text: str | CodecSpec) -> CodecSpec:
    """Parse a codec spec string such as ``"rot+int4"``, ``"pca+trunc:128+int8"`` or ``"pq:48"``.

    Raises :class:`SpecError` (a ``ValueError``) naming the position, with a suggestion.

    Examples
    --------
    >>> parse_spec("rot+int4")
    CodecSpec(stages=(Stage(name='rot', args=()), Stage(name='int4', args=())))
    >>> parse_spec("rot+in4")
    Traceback (most recent call last):
    ...
    vecbox.errors.SpecError: unknown stage 'in4' in codec spec 'rot+in4'; did you mean 'int4'?
        rot+in4
            ^^^
    known stages: rot[:hadamard|:qr], pca, trunc:D, f32, f16, int8, int4, binary, pq:M[:opq], lowrank:r
    """
    if isinstance(text, CodecSpec):
        return text
    if not isinstance(text, str):
        raise SpecError(f"a codec spec must be a string such as 'rot+int8'; got {type(text).__name__}")
    raw = text
    if not raw.strip():
        raise SpecError(f"empty codec spec; give one such as 'int8', 'rot+int4', 'binary' or 'pq:48'. {_KNOWN}")
    lead = len(raw) - len(raw.lstrip())
    body = raw.strip().lower()
    stages: list[Stage] = []
    pos = 0
    parts = body.split("+")
    for j, part in enumerate(parts):
        start = lead + pos
        stages.append(_parse_stage(raw, part, start))
        pos += len(part) + 1
    kinds = [s.kind for s in stages]
    for i, (stage, kind) in enumerate(zip(stages, kinds)):
        start = lead + sum(len(p) + 1 for p in parts[:i])
        if kind == "codec" and i < len(stages) - 1:
            raise SpecError(
                f"codec spec {raw!r} has the codec {str(stage)!r} before its end; a spec is transforms, then exactly "
                f"one codec (e.g. 'rot+int4')\n" + _caret(raw, start, len(parts[i]))
            )
    if kinds[-1] != "codec":
        raise SpecError(
            f"codec spec {raw!r} ends with the transform {str(stages[-1])!r}; end it with a codec, "
            f"e.g. {str(CodecSpec(tuple(stages))) + '+f32'!r}\n" + _caret(raw, lead + len(body), 1)
        )
    return CodecSpec(tuple(stages))


def _parse_stage(raw: str, part: str, start: int) -> Stage:
    if not part:
        raise SpecError(f"empty stage in codec spec {raw!r} (two '+' in a row, or a '+' at an end)\n"
                        + _caret(raw, start, 1))
    name, *args = part.split(":")
    token = TOKENS.get(name)
    if token is None:
        close = difflib.get_close_matches(name, list(TOKENS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown stage {name!r} in codec spec {raw!r}{hint}\n"
                        + _caret(raw, start, max(len(name), 1)) + f"\n{_KNOWN}")
    rules = token.args
    n_required = sum(r.required for r in rules)
    if not n_required <= len(args) <= len(rules):
        want = f"exactly {n_required}" if n_required == len(rules) else f"{n_required} to {len(rules)}"
        raise SpecError(f"stage {part!r} in codec spec {raw!r} takes {want} argument(s) ({token.usage}); "
                        f"got {len(args)}\n" + _caret(raw, start, len(part)))
    values: list[int | str] = []
    offset = start + len(name) + 1
    for rule, arg in zip(rules, args):
        if rule.choices:
            if arg not in rule.choices:
                close = difflib.get_close_matches(arg, list(rule.choices), n=1, cutoff=0.4)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SpecError(f"{name}: {rule.name} must be one of {', '.join(rule.choices)}; got {arg!r}{hint}\n"
                                + _caret(raw, offset, max(len(arg), 1)))
            values.append(arg)
        else:
            if not arg.isdigit() or not arg.isascii() or arg.startswith("0"):
                raise SpecError(f"{name}: {rule.name} must be a positive integer ({token.usage}); got {arg!r}\n"
                                + _caret(raw, offset, max(len(arg), 1)))
            values.append(int(arg))
        offset += len(arg) + 1
    while values and len(values) <= len(rules) and values[-1] == rules[len(values) - 1].default:
        values.pop()  # canonical form: trailing defaults dropped
    return Stage(name, tuple(values))


def _caret(text: str, start: int, width: int) -> str:
    return f"    {text}\n    {' ' * start}{'^' * max(width, 1)}"


_KNOWN = "known stages: " + ", ".join(t.usage for t in TOKENS.values())


# --------------------------------------------------------------------------- Hadamard sizes
def hadamard_factor(d: int) -> tuple[int, int] | None:
    """``(m, 2**k)`` with ``d = m * 2**k`` for which a Hadamard matrix is built, or ``None``.

    ``m`` is 1 (Sylvester) or ``q + 1`` with ``q`` a prime = 3 mod 4 (Paley I), e.g. 12, 20, 24, 44.

    >>> hadamard_factor(384), hadamard_factor(1024), hadamard_factor(100)
    ((12, 32), (1, 1024), None)
    """
    p = 1
    while d % (2 * p) == 0:
        p *= 2
    m = d // p
    while m <= d:
        if m == 1 or (m % 4 == 0 and _is_prime(m - 1) and (m - 1) % 4 == 3):
            return m, d // m
        m *= 2
    return None


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True
