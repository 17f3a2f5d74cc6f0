"""vecbox on Apache Spark (the optional extra ``pip install 'vecbox[spark]'``).

- :func:`fastrp` - FastRP node embeddings of a graph held in a DataFrame; for the same
  seed the numbers equal those of :class:`vecbox.encoders.graph.FastRP`.
- :func:`read_edges` - an edge file (TSV/CSV/Parquet) as a ``src, dst[, weight]`` DataFrame.
- :func:`embeddings_to_numpy` - an ``id, vector`` DataFrame on the driver as ``(ids, x)`` numpy arrays.
- :func:`local_session` - a SparkSession set up for vecbox (loopback, no UI, this Python).
- :func:`encode` - a text column encoded by :class:`vecbox.encoders.text.TextEncoder` (same vectors).
- :func:`knn_join` - exact (or FAISS-per-partition approximate) top-k of every query among a corpus;
  :func:`approximate_recall` measures the approximate one.
- :func:`near_duplicates` - pairs above a cosine threshold and their connected components.
- :func:`anomaly_scores` - k-th-neighbour distance of every row (``KNNDetector``'s exact score).

To store the output in a collection use :func:`vecbox.io.to_collection` (a DataFrame or
its Parquet). Importing this package does not import pyspark; each function raises
:class:`vecbox.errors.MissingDependencyError` with the install command when it is missing.
"""

from vecbox.spark._arrow import embeddings_to_numpy
from vecbox.spark.anomaly import anomaly_scores
from vecbox.spark.dedup import NearDuplicates, near_duplicates
from vecbox.spark.encode import encode
from vecbox.spark.fastrp import fastrp, local_session, read_edges
from vecbox.spark.knn import approximate_recall, knn_join

__all__ = ["fastrp", "read_edges", "embeddings_to_numpy", "local_session", "encode", "knn_join",
           "approximate_recall", "near_duplicates", "NearDuplicates", "anomaly_scores"]
