"""Score a Spark DataFrame with the same Predictor: same rows out, plus a prediction and its error.

Example::

    from client import Predictor
    from client.spark import score

    scored = score(df, Predictor.from_endpoint("iris"))          # each executor sends its rows
    scored = score(df, Predictor.from_model("models:/main.default.iris@champion"))  # model on executors
    scored.select("prediction", "prediction_error")

How: ``mapInPandas`` over the partitions. The Predictor travels to the executors pickled as its
settings (``client._pickling``: no connection, no loaded model; an endpoint's bearer token in
memory only). Each Python worker builds one Predictor from them and keeps it for every task it
runs, so a model is loaded once per worker. Per Arrow batch, a worker validates the rows against
the signature, sends the valid ones in requests of ``batch_rows`` rows, ``concurrency`` at a time,
with the Predictor's usual retries (429s and ``Retry-After`` included), and splits a request that
failed because of one of its rows until the row is found. A row that is invalid, or whose request
still failed, keeps its place with ``prediction`` null and the reason in ``prediction_error``.

An AI Gateway inference table, unpacked into one row per scored record (features, prediction,
model version) for monitoring::

    unpacked = unpack_payload(spark.read.table("main.serving_logs.iris_payload"),
                              spark.read.table("system.serving.served_entities"))
    unpacked.records          # the records frame; unpacked.summary() counts rows not unpacked

This is the one package that imports pyspark (``pip install 'uc-predictor-client[spark]'``).
"""

from ._batch import ai_query_sql, endpoint_ai_query_sql, run_batch, spark_session
from ._payload import PAYLOAD_SCHEMA, PayloadSummary, UnpackedPayload, unpack_payload
from ._score import prediction_type, score

__all__ = [
    "PAYLOAD_SCHEMA",
    "PayloadSummary",
    "UnpackedPayload",
    "ai_query_sql",
    "endpoint_ai_query_sql",
    "prediction_type",
    "run_batch",
    "score",
    "spark_session",
    "unpack_payload",
]
