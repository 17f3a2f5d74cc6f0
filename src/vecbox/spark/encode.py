"""Text → vectors on Spark: :class:`vecbox.encoders.text.TextEncoder` inside a pandas UDF.

Each Python worker loads the model once (a per-process cache keyed by the encoder's
settings; Spark reuses its Python workers across tasks), offline (``HF_HUB_OFFLINE=1``),
and encodes each Arrow batch of the partition (``spark.sql.execution.arrow.maxRecordsPerBatch``
rows, 10,000 by default) with ``TextEncoder.encode``, which sorts the batch's texts by length
before cutting them into forward passes, so padding stays small. The vectors are the ones
``TextEncoder`` gives on one machine (the same code runs).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from typing import Any

from vecbox.errors import InvalidInputError
from vecbox.spark._frames import pyspark

_ENCODERS: dict[tuple[Any, ...], Any] = {}  # one loaded model per worker process and setting


def encode(
    df: Any,
    text_col: str,
    model: str = "default",
    layers: int | None = None,
    dims: int | None = None,
    *,
    output_col: str = "vector",
    kind: str = "document",
    batch_size: int = 64,
    normalize: bool = True,
    query_prompt: str = "",
    document_prompt: str = "",
    threads_per_task: int | None = None,
) -> Any:
    """``df`` with a vector column added: the text of ``text_col`` encoded by a sentence-transformers model.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
    text_col : str
        A string column. A null text gives a null vector.
    model : str
        ``"default"`` (the bundled all-MiniLM-L6-v2) or a local model directory that every
        executor can read. Nothing is downloaded.
    layers, dims : int, optional
        Elastic inference (the first ``layers`` transformer layers, the first ``dims``
        coordinates), forwarded to :class:`~vecbox.encoders.text.TextEncoder` when given.
    output_col : str
        Name of the new ``array<float>`` column.
    kind : {"document", "query"}
        Which prompt to put before each text.
    batch_size, normalize, query_prompt, document_prompt
        As in :class:`~vecbox.encoders.text.TextEncoder`.
    threads_per_task : int, optional
        Torch threads per Python worker; default ``spark.task.cpus`` (1), so that ``local[n]``
        runs ``n`` workers on ``n`` cores without oversubscription.

    Returns
    -------
    pyspark.sql.DataFrame
        All the columns of ``df`` plus ``output_col``.

    Examples
    --------
    >>> df = spark.createDataFrame([(1, "read a csv file")], "id long, text string")    # doctest: +SKIP
    >>> len(encode(df, "text").first()["vector"])                                        # doctest: +SKIP
    384
    """
    pyspark("encoding text on Spark")
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    if text_col not in df.columns:
        raise InvalidInputError(f"the DataFrame has no column {text_col!r} (its columns: {', '.join(df.columns)}); "
                                "pass the name of the text column")
    if dict(df.dtypes)[text_col] != "string":
        raise InvalidInputError(f"column {text_col!r} is {dict(df.dtypes)[text_col]}, not string; cast it first")
    if output_col in df.columns:
        raise InvalidInputError(f"the DataFrame already has a column {output_col!r}; choose another output_col")
    if kind not in ("document", "query"):
        raise InvalidInputError(f"kind must be 'document' or 'query'; got {kind!r}")
    options = {"batch_size": batch_size, "normalize": normalize, "query_prompt": query_prompt,
               "document_prompt": document_prompt, **elastic_options(layers, dims)}
    from vecbox.encoders.text import TextEncoder

    TextEncoder(model, **options)  # settings checked on the driver (the weights load in the workers)
    key = (model, tuple(sorted(options.items())), threads_per_task)

    import pandas as pd

    def vectors(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        enc = _worker_encoder(key)
        for texts in batches:
            present = texts.notna().to_numpy()
            out: list[Any] = [None] * len(texts)
            if present.any():
                for i, v in zip(present.nonzero()[0], enc.encode(texts[present].tolist(), kind=kind)):
                    out[i] = v
            yield pd.Series(out, dtype=object)

    # real objects, not this module's postponed strings: pandas_udf reads the iterator form from them
    vectors.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
    return df.withColumn(output_col, pandas_udf(vectors, "array<float>")(F.col(text_col)))


def elastic_options(layers: int | None, dims: int | None) -> dict[str, int]:
    """``layers=`` / ``dims=`` for :class:`~vecbox.encoders.text.TextEncoder`, only those given.

    Raises :class:`~vecbox.errors.InvalidInputError` when one is given but this version's
    ``TextEncoder`` does not take it yet.
    """
    from vecbox.encoders.text import TextEncoder

    given = {name: value for name, value in (("layers", layers), ("dims", dims)) if value is not None}
    accepted = inspect.signature(TextEncoder.__init__).parameters
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise InvalidInputError(f"{' and '.join(n + '=' for n in unknown)} need a TextEncoder with elastic "
                                "inference, which this version of vecbox does not have yet; leave them unset")
    return given


def _worker_encoder(key: tuple[Any, ...]) -> Any:
    """The encoder of ``key`` in this Python worker, loaded (offline) on first use."""
    enc = _ENCODERS.get(key)
    if enc is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from pyspark import TaskContext

        from vecbox.encoders.text import TextEncoder

        model, options, threads = key
        ctx = TaskContext.get()
        torch.set_num_threads(threads or (int(ctx.cpus()) if ctx is not None else 1))
        enc = TextEncoder(model, **dict(options))
        enc.model  # noqa: B018 - load the weights now, once
        _ENCODERS[key] = enc
    return enc


__all__ = ["encode", "elastic_options"]
