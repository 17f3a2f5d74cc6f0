"""Choose how to run one (possibly filtered) search: exact scan, ANN index, or funnel.

The plan is picked from the filter's estimated match count and a small cost model
in units of "one vector distance in a graph walk" - the same decision Qdrant,
Vespa and Weaviate make (see research/anchors.md section 1b):

* **exact** over the allowed rows when few match (a BLAS scan of a few thousand
  rows is faster than a graph walk and always returns the true top k);
* **post-filter** when most rows match: ask the index for ``k / selectivity``
  (times a safety factor) unfiltered results and drop the disallowed ones;
* **in-graph** filtered traversal (an allow-bitmap inside the HNSW/IVF walk) in
  between. vecbox's own HNSW walk keeps the ef nearest *allowed* rows, so its ef
  need not grow; it visits about 1/selectivity times more nodes instead. FAISS's
  walk (IVF, ``sq8`` storage, or no built extension) returns the allowed rows among
  the ef nearest of any kind, so its effort (ef / nprobe) is grown as selectivity falls.

Whatever runs, the caller falls back to an exact scan for any query that comes
back with fewer than ``k`` hits while at least ``k`` rows are allowed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Cost of scoring one row exactly, relative to one distance in a graph walk. Measured on
# 50k MiniLM sentence vectors (FAISS HNSW M=32, one thread): a walk costs ~2.6 us per unit of
# ef (~0.054 us per "distance" with the visit factor below); one query over gathered rows costs
# ~0.26 us per row (the gather and a memory-bound matrix-vector product); a batch shares the
# gather and runs at BLAS speed (~0.3 units per row and query).
EXACT_ROW_COST_BATCHED = 0.3
EXACT_ROW_COST_SHARED = 4.5
EXACT_ROW_COST_GATHERED = 1.2  # the allowed rows are already gathered (a repeated filter): the product alone
# Rows a graph walk scores per unit of ef (HNSW): about the layer-0 degree (2M) times
# the share of neighbours not visited yet; 0.75 * 2M fits FAISS's HNSW on our data.
HNSW_VISIT_FACTOR = 1.5
EFFORT_CAP = 4096  # largest ef / nprobe the planner grows to
# In-graph filtering with FAISS's beam rule (IVF, sq8 storage, no built extension): ef grows as
# selectivity ** -EF_GROWTH. FAISS's filtered HNSW walks through disallowed nodes too, so it needs
# far less than 1/selectivity more effort: on the 50k sentence set
# recall@10 >= 0.95 needed 1.2x / 1.5x / 3.5x / 6x / 13x the unfiltered ef at 50 / 30 / 10 / 5 / 2 %
# (exponents 0.5-0.66, rising as selectivity falls); 0.7 keeps a margin.
EF_GROWTH = 0.7
# vecbox's two-hop walk (see _walk.c) scores allowed rows only. Against the one-hop walk it needs a larger
# ef for the same recall, and each of its steps reads more neighbour lists; both depend on the index (on
# 50k sentence vectors it is as fast at 10 % selectivity, on 10^6 vectors 1.5x slower), so they are
# measured when the index is built (vecbox.index.calibration.calibrate_walks, under a 10 % filter) and
# carried by IndexStats. Away from 10 % the one-hop walk's cost scales as 1/selectivity and the two-hop
# walk's with its ef, grown as (TWO_HOP_FROM / selectivity) ** EF_GROWTH below 10 % (ef 20-24 at 10 % and
# 96 at 1 % reached 0.95 on the sentences).
TWO_HOP_FROM = 0.1
TWO_HOP_MIN_ALLOWED = 2.0  # allowed rows expected among a node's 2M level-0 neighbours
# Uncalibrated (an index under 20k rows, or saved before calibration): the sentences' figures at 10 %
# (ef 10 -> 20, equal time), so with the margin below the two-hop walk is taken below ~5 % only.
TWO_HOP_EF_RATIO = 2.0
TWO_HOP_TIME_RATIO = 1.0
# Two hops must be clearly cheaper: the calibration's queries (stored rows moved off the data) are harder than
# real ones (ef 146 against 64 for the one-hop walk on 10^6 rows), and there the time ratio came out at 1.0
# where real queries measured 1.5. Where two hops win by less than this, the one-hop walk loses little.
TWO_HOP_MARGIN = 0.8
POST_FILTER_MIN_SELECTIVITY = 0.5
POST_FILTER_SAFETY = 2.0
# A post-filter asks for 2k/selectivity hits and merges them: measured 413 us against 245 us for the
# in-graph walk at 50 % on the sentences, so it only wins where no allow-bitmap exists (estimated filters).
POST_FILTER_OVERHEAD = 1.7
EXACT_ALWAYS_BELOW = 2_000  # rows: below this an exact scan is cheaper than anything else


@dataclass
class Plan:
    """What a search did and why (returned by ``search(..., explain=True)``).

    ``path`` is one of ``exact``, ``hnsw``, ``ivf``, ``hnsw+filter`` / ``ivf+filter``
    (in-graph filtering), ``hnsw+post-filter`` / ``ivf+post-filter``, ``funnel``;
    ``fallback`` counts queries re-run exactly because the index returned fewer
    than k allowed hits. ``estimate`` is the number of rows the filter was
    estimated to match and ``estimate_source`` how it was obtained.
    """

    path: str
    reason: str
    n_rows: int
    estimate: int
    estimate_source: str
    selectivity: float
    effort: int | None = None
    index: str | None = None
    tail_rows: int = 0
    fallback: int = 0
    costs: dict[str, float] = field(default_factory=dict)
    two_hop: bool = False  # the filtered walk scores only allowed rows, reached through disallowed ones

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        extra = f", effort={self.effort}" if self.effort else ""
        tail = f", {self.tail_rows} newer rows scanned exactly" if self.tail_rows else ""
        fb = f", {self.fallback} queries fell back to exact" if self.fallback else ""
        return (f"{self.path}: {self.reason} (matching ~{self.estimate:,} of {self.n_rows:,} rows, "
                f"{self.estimate_source}{extra}{tail}{fb})")


@dataclass(frozen=True)
class IndexStats:
    """What the planner needs to know about an ANN index."""

    kind: str  # "hnsw" | "ivf"
    n: int
    M: int = 32
    effort: int = 64  # default ef_search / nprobe
    nlist: int = 1
    filter_rule: str = "beam"  # "allowed": the walk keeps the ef nearest allowed rows (vecbox's HNSW walk)
    # the two-hop walk against the one-hop walk at equal recall under a 10 % filter: its ef and its time
    two_hop_ef_ratio: float = TWO_HOP_EF_RATIO
    two_hop_time_ratio: float = TWO_HOP_TIME_RATIO


def grown_effort(effort: int, selectivity: float, k: int) -> int:
    """Search effort for in-graph filtering: ``effort * selectivity ** -EF_GROWTH``, capped.

    >>> grown_effort(64, 0.1, 10), grown_effort(64, 1.0, 10), grown_effort(64, 0.0001, 10)
    (321, 64, 4096)
    """
    s = max(selectivity, 1e-9)
    return int(min(max(math.ceil(max(effort, k) * s ** -EF_GROWTH), effort), EFFORT_CAP))


def choose(
    n_rows: int,
    estimate: int,
    k: int,
    index: IndexStats | None,
    *,
    effort: int | None = None,
    estimate_source: str = "exact count",
    index_rows_allowed: int | None = None,
    n_queries: int = 1,
    gathered: bool = False,
) -> Plan:
    """Pick the cheapest path for a search over ``n_rows`` live rows of which ``estimate`` match.

    ``index_rows_allowed`` is how many of the index's own rows may be returned
    (liveness and filter); it defaults to ``estimate``. ``gathered``: the allowed rows
    are already copied out (a cached filter), so a scan costs only the product.

    >>> choose(100_000, 500, 10, IndexStats("hnsw", 100_000)).path
    'exact'
    >>> choose(100_000, 100_000, 10, IndexStats("hnsw", 100_000)).path
    'hnsw'
    >>> choose(100_000, 20_000, 10, IndexStats("hnsw", 100_000)).path
    'hnsw+filter'
    >>> choose(100_000, 80_000, 10, IndexStats("hnsw", 100_000)).path
    'hnsw+filter'
    """
    sel = estimate / n_rows if n_rows else 0.0
    shared = EXACT_ROW_COST_GATHERED if gathered else EXACT_ROW_COST_SHARED
    exact_cost = (EXACT_ROW_COST_BATCHED + shared / max(n_queries, 1)) * estimate
    base = dict(n_rows=n_rows, estimate=estimate, estimate_source=estimate_source, selectivity=sel)
    if index is None:
        return Plan("exact", "no ANN index (build one with build_index())", costs={"exact": exact_cost}, **base)
    if estimate <= max(EXACT_ALWAYS_BELOW, k):
        return Plan("exact", f"only ~{estimate:,} rows match: a scan is cheaper than a graph walk",
                    costs={"exact": exact_cost}, index=index.kind, **base)
    allowed = index_rows_allowed if index_rows_allowed is not None else estimate
    isel = allowed / index.n if index.n else 0.0
    e0 = int(effort or index.effort)
    costs = {"exact": exact_cost}
    if isel >= 1.0:
        costs[index.kind] = _walk_cost(index, e0, k)
        if costs[index.kind] < exact_cost:
            return Plan(index.kind, "no filter (and no deletions since the index was built)",
                        effort=e0, index=index.kind, costs=costs, **base)
        return Plan("exact", "an exact scan is estimated cheaper than the index at this size",
                    index=index.kind, costs=costs, **base)
    want = math.ceil(k * POST_FILTER_SAFETY / max(isel, 1e-9)) + k
    post_effort = min(max(e0, want), EFFORT_CAP)
    two_hop = False
    if index.filter_rule == "allowed":
        # a post-filter is priced at the quality of the filtered walk: its e0 allowed rows are as good as
        # an unfiltered walk's e0 / selectivity (a post-filter at ef e0 would keep only ~e0 * selectivity)
        post_effort = min(max(math.ceil(e0 / max(isel, 1e-9)), want), EFFORT_CAP)
        # the walk goes on until it holds ef allowed rows: about 1/selectivity times the nodes of a plain walk
        in_effort = max(e0, k)
        filter_cost = _walk_cost(index, in_effort, k) / max(isel, 1e-9)
        how = f"filtered walk keeping the {in_effort} nearest allowed rows"
        # or: score allowed rows only, reached through disallowed neighbours (ACORN-1's expansion), priced from
        # the one-hop walk at 10 % and the calibrated ratios
        growth = max(1.0, TWO_HOP_FROM / max(isel, 1e-9)) ** EF_GROWTH
        hop_effort = min(math.ceil(in_effort * index.two_hop_ef_ratio * growth), EFFORT_CAP)
        two_hop_cost = _walk_cost(index, in_effort, k) / TWO_HOP_FROM * index.two_hop_time_ratio * growth
        # a node's list must hold a few allowed rows on average, or the allowed rows fall apart
        # into pieces the walk cannot cross (seen at 2 % with M = 8)
        if 2 * index.M * isel >= TWO_HOP_MIN_ALLOWED and two_hop_cost < TWO_HOP_MARGIN * filter_cost:
            filter_cost, in_effort, two_hop = two_hop_cost, hop_effort, True
            how = (f"filtered walk keeping the {in_effort} nearest allowed rows, scoring only allowed rows "
                   "(reached through disallowed neighbours)")
    else:
        in_effort = grown_effort(e0, isel, k)
        filter_cost = _walk_cost(index, in_effort, k)
        how = f"filtered walk with the effort grown {in_effort / e0:.1f}x"
    if isel >= POST_FILTER_MIN_SELECTIVITY:
        costs["post-filter"] = _walk_cost(index, post_effort, want) * POST_FILTER_OVERHEAD
    costs["filter"] = filter_cost
    best = min(costs, key=costs.get)
    if best == "exact":
        return Plan("exact", f"filter keeps {isel:.2%} of the indexed rows; scanning them is cheapest",
                    index=index.kind, costs=costs, **base)
    if best == "post-filter":
        return Plan(f"{index.kind}+post-filter", f"filter keeps {isel:.1%} of the indexed rows: fetch ~{want} "
                    "unfiltered neighbours and drop the rest", effort=post_effort, index=index.kind,
                    costs=costs, **base)
    return Plan(f"{index.kind}+filter", f"filter keeps {isel:.2%} of the indexed rows: {how}", effort=in_effort,
                index=index.kind, costs=costs, two_hop=two_hop, **base)


def _walk_cost(index: IndexStats, effort: int, k: int) -> float:
    if index.kind == "hnsw":
        return HNSW_VISIT_FACTOR * index.M * max(effort, k)
    return min(effort, index.nlist) * index.n / max(index.nlist, 1)
