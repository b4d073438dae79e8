"""Spark scoring, side by side in one run (one machine, figures as ratios).

Starts MLflow's scoring server for the demo model on loopback, a SparkSession on ``local[2]``,
and measures rows/s for the same rows:

- ``client.spark.score`` in endpoint mode (each Python worker: requests of 1,000 rows, 4 in flight;
  and of 5,000 rows, the single-process Predictor's chunk size);
- the single-process ``Predictor.predict`` on the same endpoint (chunks of 5,000 rows, 4 in flight);
- ``client.spark.score`` in direct mode (the model in each Python worker, rows validated);
- ``mlflow.pyfunc.spark_udf`` (``env_manager="local"``), direct, no validation: the baseline;

then how endpoint-mode time grows from 10,000 rows to ``--max-rows`` (default 1,000,000).

``--unpack``: instead, ``client.spark.unpack_payload`` on an AI Gateway payload table (Parquet, one
record per request in ``dataframe_split``, the demo's answer shape, 1 % HTTP 500) of 10,000 rows
up to ``--max-rows``, beside Spark's own ``from_json`` + ``explode`` for that one request shape
(no served-entity lookup, no unreadable-row accounting): what the generality costs.
Every Spark figure is one job writing to the ``noop`` sink (everything computed, nothing kept),
after a warm-up job, so Python workers are started and imports done; a direct-mode job still
loads its model in each worker, as a real job would.

    .venv/bin/python benchmarks/spark.py [--rows 100000] [--max-rows 1000000]
    .venv/bin/python benchmarks/spark.py --unpack [--max-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
URI = "models:/main.default.iris@champion"
COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
RANGES = ((4.3, 7.9), (2.0, 4.4), (1.0, 6.9), (0.1, 2.5))


def start_server(registry: str) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "client.local", "serve", URI, "--name", "iris", "--port", str(port),
         "--registry-uri", registry],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("scoring server did not start")


def rows_frame(spark, n: int, partitions: int = 4):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    cols = [
        F.round(F.rand(seed=i) * (hi - lo) + lo, 2).alias(c)
        for i, (c, (lo, hi)) in enumerate(zip(COLUMNS, RANGES, strict=True))
    ]
    df = spark.range(0, n, numPartitions=partitions).select("id", *cols).cache()
    df.count()
    return df


def timed_job(df) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def payload_table(spark, n: int, path: str):  # type: ignore[no-untyped-def]
    """``n`` payload rows as the stand-in writes them, saved as Parquet and read back."""
    from pyspark.sql import functions as F

    features = [F.round(F.rand(seed=i) * (hi - lo) + lo, 2) for i, (lo, hi) in enumerate(RANGES)]
    request = F.to_json(F.struct(F.struct(F.array(*map(F.lit, COLUMNS)).alias("columns"),
                                          F.array(F.array(*features)).alias("data")).alias("dataframe_split")))
    answer = F.struct(F.lit("setosa").alias("prediction"), F.rand(seed=9).alias("probability_setosa"))
    ok = F.rand(seed=7) > 0.01
    spark.range(0, n, numPartitions=4).select(
        F.expr("uuid()").alias("databricks_request_id"), F.current_date().alias("request_date"),
        F.lit(None).cast("string").alias("client_request_id"),
        F.timestamp_seconds(F.lit(1_764_000_000) + F.col("id")).alias("request_time"),
        F.when(ok, 200).otherwise(500).alias("status_code"), F.lit(1.0).alias("sampling_fraction"),
        (F.rand(seed=8) * 50).cast("long").alias("execution_duration_ms"), request.alias("request"),
        F.when(ok, F.to_json(F.struct(F.array(answer).alias("predictions"))))
        .otherwise(F.lit('{"error_code": "INTERNAL_ERROR", "message": "boom"}')).alias("response"),
        F.array().cast("array<string>").alias("logging_error_codes"),
        F.when(F.col("id") % 10 == 0, "e-challenger").otherwise("e-champion").alias("served_entity_id"),
        F.lit("sp").alias("requester"),
    ).write.mode("overwrite").parquet(path)
    return spark.read.parquet(path)


def native_unpack(payload):  # type: ignore[no-untyped-def]
    """Spark's own JSON functions for the one request shape of the benchmark."""
    from pyspark.sql import functions as F

    req = F.from_json("request", "dataframe_split struct<columns: array<string>, data: array<array<double>>>")
    resp = F.from_json("response", "predictions array<struct<prediction: string>>")
    rows = payload.select("request_time", "databricks_request_id", "status_code", "execution_duration_ms",
                          F.arrays_zip(req["dataframe_split"]["data"].alias("d"),
                                       resp["predictions"].alias("p")).alias("z"))
    one = rows.select("*", F.explode_outer("z").alias("r")).drop("z")
    return one.select("*", *[one["r"]["d"][i].alias(c) for i, c in enumerate(COLUMNS)],
                      one["r"]["p"]["prediction"].alias("prediction")).drop("r")


def unpack_main(max_rows: int) -> None:
    from client.spark import spark_session, unpack_payload

    spark = spark_session("local[2]", app_name="unpack-bench")
    spark.sparkContext.setLogLevel("ERROR")
    entities = {"e-champion": ("champion", "1"), "e-challenger": ("challenger", "2")}
    print(f"# {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
          f"pyspark {spark.version}, local[2], 4 partitions\n")
    home = tempfile.mkdtemp(prefix="unpack-bench-")
    warm = payload_table(spark, 2_000, f"{home}/warm")
    timed_job(unpack_payload(warm, entities).records)
    timed_job(native_unpack(warm))
    print(f"{'payload rows':>12} {'unpack_payload s':>17} {'rows/s':>9} {'from_json s':>12} {'ratio':>6}")
    n = 10_000
    while n <= max_rows:
        payload = payload_table(spark, n, f"{home}/p{n}")
        unpacked = unpack_payload(payload, entities)  # the features: from the first 1,000 rows (a job)
        ours = timed_job(unpacked.records)
        theirs = timed_job(native_unpack(payload))
        print(f"{n:>12,} {ours:17.1f} {n / ours:9.0f} {theirs:12.1f} {ours / theirs:5.1f}x")
        n *= 10
    summary = unpacked.summary()
    print(f"\nlast run: {summary.text()}")
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--max-rows", type=int, default=1_000_000)
    parser.add_argument("--unpack", action="store_true", help="time client.spark.unpack_payload instead")
    args = parser.parse_args()
    if args.unpack:
        unpack_main(args.max_rows)
        return

    home = tempfile.mkdtemp(prefix="spark-bench-")
    registry = f"sqlite:///{home}/mlflow.db"
    os.environ.update(PREDICTOR_HOME=home, MLFLOW_TRACKING_URI=registry, MLFLOW_REGISTRY_URI=registry)
    from client.local.demo import register_demo_model

    register_demo_model(registry)
    server, base = start_server(registry)
    url = f"{base}/invocations"
    try:
        import mlflow.pyfunc
        from pyspark.sql import functions as F

        from client import Predictor
        from client.spark import prediction_type, score, spark_session

        spark = spark_session("local[2]", app_name="spark-bench")
        spark.sparkContext.setLogLevel("ERROR")
        print(f"# {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
              f"pyspark {spark.version}, {args.rows:,} rows, local[2], 4 partitions\n")

        def endpoint() -> Predictor:
            return Predictor.from_endpoint(url=url, model_uri=URI, registry_uri=registry)

        df = rows_frame(spark, args.rows)
        timed_job(score(rows_frame(spark, 2_000), endpoint()))  # warm-up: workers, imports
        timed_job(score(rows_frame(spark, 2_000), Predictor.from_model(URI, registry_uri=registry)))
        results: dict[str, float] = {}

        results["score, endpoint mode (local[2])"] = args.rows / timed_job(score(df, endpoint()))
        results["score, endpoint, batch_rows=5000"] = args.rows / timed_job(score(df, endpoint(), batch_rows=5000))
        pdf = df.drop("id").toPandas()
        with endpoint() as p:
            p.predict(pdf.head(100))
            started = time.perf_counter()
            p.predict(pdf)
            results["Predictor.predict, one process"] = args.rows / (time.perf_counter() - started)
        direct = Predictor.from_model(URI, registry_uri=registry)
        results["score, direct mode (local[2])"] = args.rows / timed_job(score(df, direct))
        # The demo's output (a class name and its probabilities) as a struct, the type score() gives it too.
        udf = mlflow.pyfunc.spark_udf(spark, URI, result_type=prediction_type(direct.get_signature()),
                                      env_manager="local")
        results["mlflow spark_udf, direct (local[2])"] = args.rows / timed_job(
            df.withColumn("prediction", udf(F.struct(*[F.col(f"`{c}`") for c in COLUMNS])))
        )
        base_rps = results["Predictor.predict, one process"]
        print(f"{'what':<40} {'rows/s':>9} {'vs one process':>15}")
        for name, rps in results.items():
            print(f"{name:<40} {rps:9.0f} {rps / base_rps:14.2f}x")
        print(f"\ndirect mode: score / spark_udf = "
              f"{results['score, direct mode (local[2])'] / results['mlflow spark_udf, direct (local[2])']:.2f}x")

        print(f"\n{'rows (endpoint mode)':>20} {'seconds':>9} {'rows/s':>9}")
        n = 10_000
        while n <= args.max_rows:
            frame = rows_frame(spark, n)
            seconds = timed_job(score(frame, endpoint()))
            print(f"{n:>20,} {seconds:9.1f} {n / seconds:9.0f}")
            frame.unpersist()
            n *= 10
        spark.stop()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
