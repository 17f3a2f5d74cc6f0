"""``FDEConfig``: the parameters of a MUVERA fixed dimensional encoding, validated once."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from vecbox.errors import DimensionMismatchError, InvalidInputError

PROJECTIONS = ("identity", "ams")
MAX_KSIM = 30  # the reference's limit: 2**30 partitions per repetition


def _check_int(value: Any, name: str, low: int, high: int | None = None, hint: str = "") -> int:
    ok = not isinstance(value, bool) and isinstance(value, int) and value >= low and (high is None or value <= high)
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"FDEConfig.{name} must be an integer {rng}; got {value!r}{hint}")
    return int(value)


@dataclass(frozen=True)
class FDEConfig:
    """Parameters of a MUVERA fixed dimensional encoding (FDE).

    Queries and documents must be encoded with the same config (same ``seed``).
    The semantics follow Google's reference C++ (``graph-mining/sketching/point_cloud``):
    SimHash partitions with a Gray-code index, sum for queries, average for
    documents, empty partitions of documents filled with the nearest point,
    optional AMS inner projection and count-sketch final projection.

    Parameters
    ----------
    reps : int
        Independent repetitions R (>= 1).
    ksim : int
        SimHash hyperplanes per repetition, in [0, 30]; ``2**ksim`` partitions. 0 means one
        partition (the FDE of a repetition is then the sum / mean of the points).
    dproj : int, optional
        Inner projection width. ``None`` keeps the token width d (identity).
    projection : {"identity", "ams"}, optional
        ``"ams"``: the reference's AMS sketch (each input coordinate goes to one random
        output coordinate with a random sign; unscaled). Defaults to ``"ams"`` when
        ``dproj`` is given and ``"identity"`` otherwise.
    fill_empty : bool
        Documents only: an empty partition receives the point whose sign bits are
        nearest (Hamming) to the partition's. Queries never fill.
    final_dim : int, optional
        Count-sketch the whole FDE down to this width (the paper's final projection).
    seed : int
        Seed of every random matrix (repetition r uses ``seed + r``, as the reference does).

    Examples
    --------
    >>> cfg = FDEConfig(reps=20, ksim=5, dproj=16)
    >>> cfg.projection, cfg.output_dim(384)
    ('ams', 10240)
    >>> FDEConfig(reps=1, ksim=0).output_dim(384)
    384
    """

    reps: int
    ksim: int
    dproj: int | None = None
    projection: str | None = None
    fill_empty: bool = True
    final_dim: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int(self.reps, "reps", 1)
        _check_int(self.ksim, "ksim", 0, MAX_KSIM, hint=" (2**ksim partitions per repetition)")
        if self.dproj is not None:
            _check_int(self.dproj, "dproj", 1, hint="; use None to keep the token width")
        projection = self.projection
        if projection is None:
            projection = "identity" if self.dproj is None else "ams"
        if projection not in PROJECTIONS:
            raise InvalidInputError(f"FDEConfig.projection must be one of {PROJECTIONS}; got {projection!r}")
        if projection == "ams" and self.dproj is None:
            raise InvalidInputError("FDEConfig(projection='ams') needs dproj, the projected width (e.g. dproj=16)")
        object.__setattr__(self, "projection", projection)
        if not isinstance(self.fill_empty, bool):
            raise InvalidInputError(f"FDEConfig.fill_empty must be True or False; got {self.fill_empty!r}")
        if self.final_dim is not None:
            _check_int(self.final_dim, "final_dim", 1, hint="; use None for no final projection")
        _check_int(self.seed, "seed", 0)

    @property
    def partitions(self) -> int:
        """Partitions per repetition, ``2**ksim``."""
        return 1 << self.ksim

    def block_dim(self, d: int) -> int:
        """Width of one partition's block: ``dproj``, or ``d`` for the identity projection.

        Raises :class:`DimensionMismatchError` when an identity config with ``dproj`` set meets
        tokens of another width.
        """
        if self.projection == "identity":
            if self.dproj is not None and self.dproj != d:
                raise DimensionMismatchError(
                    f"this FDEConfig has projection='identity' and dproj={self.dproj}, but the tokens are {d}-d; "
                    "drop dproj (identity keeps the token width) or use projection='ams'"
                )
            return d
        return int(self.dproj)  # type: ignore[arg-type]

    def fde_dim(self, d: int) -> int:
        """Width before the final projection: ``reps * 2**ksim * block_dim(d)``."""
        return self.reps * self.partitions * self.block_dim(d)

    def output_dim(self, d: int) -> int:
        """Width of the encodings of ``d``-dimensional tokens (``final_dim`` if set)."""
        return self.final_dim if self.final_dim is not None else self.fde_dim(d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``FDEConfig.from_dict`` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FDEConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown FDEConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
