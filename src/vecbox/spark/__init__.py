"""vecbox on Apache Spark (the optional extra ``pip install 'vecbox[spark]'``).

- :func:`fastrp` - FastRP node embeddings of a graph held in a DataFrame; for the same
  seed the numbers equal those of :class:`vecbox.encoders.graph.FastRP`.
- :func:`read_edges` - an edge file (TSV/CSV/Parquet) as a ``src, dst[, weight]`` DataFrame.
- :func:`to_collection` - FastRP output (DataFrame or Parquet) into a vecbox Collection.
- :func:`embeddings_to_numpy` - an ``id, vector`` DataFrame on the driver as ``(ids, x)`` numpy arrays.
- :func:`local_session` - a SparkSession set up for vecbox (loopback, no UI, this Python).

Importing this package does not import pyspark; each function raises
:class:`vecbox.errors.MissingDependencyError` with the install command when it is missing.
"""

from vecbox.spark._arrow import embeddings_to_numpy
from vecbox.spark.fastrp import fastrp, local_session, read_edges, to_collection

__all__ = ["fastrp", "read_edges", "to_collection", "embeddings_to_numpy", "local_session"]
