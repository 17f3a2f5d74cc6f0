"""``vecbox train pairs | mine | merge``: fine-tune, mine hard negatives, merge models (:mod:`vecbox.train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vecbox.cli._render import JsonOpt, emit, err_console
from vecbox.errors import InvalidInputError

train_app = typer.Typer(help="Make better embeddings: fine-tune (elastic), mine hard negatives, merge models.",
                        no_args_is_help=True)


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidInputError(f"{what} takes comma-separated integers like 384,128,64; got {text!r}") from None


def _ladder(text: str | None) -> tuple[tuple[int, int], ...] | None:
    """``"1:32,2:64"`` -> ((1, 32), (2, 64))."""
    if text is None:
        return None
    try:
        return tuple((int(a), int(b)) for a, b in (p.split(":") for p in text.split(",") if p.strip()))
    except ValueError:
        raise InvalidInputError(f"--ladder takes layer:dim pairs like 1:32,2:64,6:384; got {text!r}") from None


def _load_pairs(data: Path, kinds: str, max_pairs: int | None, seed: int) -> tuple[list[Any], str]:
    """Pairs from a pairs file (anchor/positive columns), or made from a corpus or a collection's
    documents; and a description."""
    from vecbox.records import read_records
    from vecbox.storage.catalog import CATALOG_FILE
    from vecbox.train.pairs import collection_docs, make_pairs, read_corpus, read_pairs

    if data.is_file():
        first = next(iter(read_records(data)), {})
        if "anchor" in first and "positive" in first:
            pairs = read_pairs(data)
            return pairs[:max_pairs] if max_pairs else pairs, f"{data.name}: {len(pairs)} given pairs"
    kind_list = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if (data / CATALOG_FILE).is_file():
        from vecbox import Collection

        with Collection.open(data) as col:
            docs = collection_docs(col)
    else:
        docs = read_corpus(data)
    pairs = make_pairs(docs, kinds=kind_list, seed=seed, max_pairs=max_pairs)
    return pairs, f"{data.name}: {len(pairs)} unsupervised pairs ({', '.join(kind_list)})"


@train_app.command("pairs")
def train_pairs(
    data: Annotated[Path, typer.Argument(help="A corpus (BEIR folder, JSONL/CSV/Parquet with 'text', 'title'), "
                                              "a collection (its documents), or a pairs file with 'anchor' and "
                                              "'positive' (and 'negatives').")],
    out: Annotated[Path, typer.Option(help="Directory of the trained model (checkpoints in OUT/checkpoints).")],
    model: Annotated[str, typer.Option(help="Base model: 'default' or a sentence-transformers path.")] = "default",
    loss: Annotated[str, typer.Option(help="mnrl, matryoshka, 2dmse, starbucks, or maxsim (a late-interaction "
                                           "token head for TokenEncoder / multi-vector collections).")
                    ] = "starbucks",
    kinds: Annotated[str, typer.Option(help="Pairs made from a corpus: title (title->body), ict (sentence->rest).")
                     ] = "title,ict",
    max_pairs: Annotated[Optional[int], typer.Option(help="Use at most this many pairs (a seeded subset).")] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (in-batch negatives).")] = 32,
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = 1,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-5,
    max_seq_length: Annotated[int, typer.Option(help="Word pieces per text.")] = 128,
    ladder: Annotated[Optional[str], typer.Option(help="Starbucks layer:dim pairs, e.g. 1:32,2:64,3:128,6:384 "
                                                       "(default: doubling from 32).")] = None,
    dims: Annotated[Optional[str], typer.Option(help="Matryoshka / 2DMSE widths, e.g. 384,192,96,48.")] = None,
    head_dim: Annotated[int, typer.Option(help="maxsim: width of the token vectors the head gives.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the data order, dropout and sampling.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; run again to resume.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a model on pairs (resumes from OUT's checkpoint when run again with the same arguments)."""
    from vecbox.train.fit import TrainSettings, train

    pairs, described = _load_pairs(data, kinds, max_pairs, seed)
    settings = TrainSettings(loss=loss, batch_size=batch_size, epochs=epochs, max_steps=max_steps, lr=lr,
                             max_seq_length=max_seq_length, seed=seed, checkpoint_every=checkpoint_every,
                             dims=_ints(dims, "--dims"), ladder=_ladder(ladder), head_dim=head_dim)
    result = train(model, pairs, out, settings, max_minutes=max_minutes, data=described, show_progress=not as_json)
    summary = {**result.to_dict(), "pairs": len(pairs), "data": described}
    summary["last_loss"] = result.losses[-1] if result.losses else None
    del summary["losses"]

    def render() -> str:
        state = "done" if result.finished else f"stopped at step {result.steps} (time budget); run again to resume"
        resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
        late = (f" ({head_dim}-d token vectors: TokenEncoder({str(out)!r}))"
                if loss == "maxsim" and result.finished else "")
        return (f"[bold]{loss}[/] on {described}: {result.steps}/{result.total_steps} steps in "
                f"{result.seconds:.0f} s{resumed} - {state}; model in {out}{late}")

    emit(summary, as_json, render)


@train_app.command("mine")
def train_mine(
    collection: Annotated[Path, typer.Argument(help="A text collection (its model and documents are used).")],
    out: Annotated[Path, typer.Option(help="JSONL file of the pairs with their hard negatives.")],
    data: Annotated[Optional[Path], typer.Argument(help="Pairs file, or a corpus to make pairs from (as `train "
                                                        "pairs`); default: the collection's own documents.")] = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per pair.")] = 1,
    candidates: Annotated[int, typer.Option(help="Nearest documents considered per pair.")] = 50,
    ratio: Annotated[float, typer.Option(help="Drop candidates scoring >= RATIO x the positive's score.")] = 0.95,
    margin: Annotated[Optional[float], typer.Option(help="Also drop those >= the positive's score - MARGIN.")] = None,
    kinds: Annotated[str, typer.Option(help="Pairs made from a corpus: title, ict.")] = "title,ict",
    max_pairs: Annotated[Optional[int], typer.Option(help="Use at most this many pairs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pairs made from a corpus.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Add hard negatives from a collection to training pairs (NV-Embed's positive-aware filter)."""
    from vecbox import Collection
    from vecbox.train.mining import mine_hard_negatives
    from vecbox.train.pairs import write_pairs

    pairs, described = _load_pairs(data if data is not None else collection, kinds, max_pairs, seed)
    with Collection.open(collection) as col:
        mined = mine_hard_negatives(col, pairs, n_negatives=negatives, candidates=candidates, ratio=ratio,
                                    margin=margin, show_progress=not as_json)
    write_pairs(mined, out)
    counts = [len(p.negatives) for p in mined]
    summary = {"pairs": len(mined), "data": described, "out": str(out), "negatives": sum(counts),
               "pairs_without_negatives": sum(1 for c in counts if c == 0)}
    emit(summary, as_json, lambda: f"{summary['negatives']:,} hard negatives for {len(mined):,} pairs "
                                   f"({summary['pairs_without_negatives']:,} without) written to {out}")


@train_app.command("merge")
def train_merge(
    models: Annotated[list[str], typer.Argument(help="Model directories sharing an architecture.")],
    out: Annotated[Path, typer.Option(help="Directory of the merged model.")],
    method: Annotated[str, typer.Option(help="linear, slerp, task_arithmetic, ties or self_positioning.")] = "linear",
    base: Annotated[Optional[str], typer.Option(help="The common base model (task_arithmetic, ties, "
                                                     "self_positioning).")] = None,
    probe: Annotated[Optional[Path], typer.Option(help="self_positioning: pairs (or a corpus) to learn the "
                                                       "weights on.")] = None,
    steps: Annotated[int, typer.Option(help="self_positioning: optimisation steps.")] = 20,
    weights: Annotated[Optional[str], typer.Option(help="One weight per model, e.g. 0.7,0.3.")] = None,
    t: Annotated[float, typer.Option(help="slerp: 0 = the first model, 1 = the second.")] = 0.5,
    density: Annotated[float, typer.Option(help="ties: share of each task vector kept.")] = 0.2,
    scaling: Annotated[float, typer.Option(help="task_arithmetic, ties: scale of the merged task vector.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Merge fine-tuned models into one (safetensors model directory with a card)."""
    from vecbox.train.merge import merge_models

    w = None
    if weights is not None:
        try:
            w = [float(x) for x in weights.split(",")]
        except ValueError:
            raise InvalidInputError(f"--weights takes comma-separated numbers like 0.7,0.3; got {weights!r}") from None
    if not as_json:
        err_console.print(f"merging {len(models)} models ({method})...")
    pairs = _load_pairs(probe, "title,ict", None, 0)[0] if probe is not None else None
    path = merge_models(models, out, method=method, base=base, weights=w, t=t, density=density, scaling=scaling,
                        probe=pairs, steps=steps)
    card = json.loads((path / "vecbox_train.json").read_text(encoding="utf-8"))
    learned = card["Merge"].get("learned")
    emit({"out": str(path), "method": method, "models": models, "learned": learned}, as_json,
         lambda: f"merged {len(models)} models ({method}) into {path}"
                 + (f"; learned weights {learned['weights']}" if learned else ""))


__all__ = ["train_app"]
