"""vecbox on Apache Spark (the optional extra ``pip install 'vecbox[spark]'``).

- :func:`fastrp` - FastRP node embeddings of a graph held in a DataFrame; for the same
  seed the numbers equal those of :class:`vecbox.encoders.graph.FastRP`.
- :func:`read_edges` - an edge file (TSV/CSV/Parquet) as a ``src, dst[, weight]`` DataFrame.
- :func:`embeddings_to_numpy` - an ``id, vector`` DataFrame on the driver as ``(ids, x)`` numpy arrays.
- :func:`local_session` - a SparkSession set up for vecbox (loopback, no UI, this Python).

To store the output in a collection use :func:`vecbox.io.to_collection` (a DataFrame or
its Parquet). Importing this package does not import pyspark; each function raises
:class:`vecbox.errors.MissingDependencyError` with the install command when it is missing.
"""

from vecbox.spark._arrow import embeddings_to_numpy
from vecbox.spark.fastrp import fastrp, local_session, read_edges

__all__ = ["fastrp", "read_edges", "embeddings_to_numpy", "local_session"]
