"""Driver helpers: a SparkSession for this interpreter, ``predictor batch``, and the ai_query SQL."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession

from .._exceptions import ConfigurationError
from .._types import Signature
from ._score import score

if TYPE_CHECKING:
    from .._predictor import Predictor

def spark_session(master: str = "local[*]", app_name: str = "predictor") -> SparkSession:
    """A SparkSession whose Python workers run this interpreter (so they can import ``client``),
    without the web UI and with few shuffle partitions. Reuses an active session if there is one.

    Example::

        spark = spark_session("local[2]")
    """
    # PySpark reads the workers' interpreter from the environment when it starts its context;
    # without this, local mode runs them on `python3` from PATH, which may lack this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )


def ai_query_sql(endpoint: str, signature: Signature, table: str, prediction_col: str = "prediction") -> str:
    """The Databricks SQL that scores ``table`` on ``endpoint`` with ``ai_query``: the signature's
    columns as a ``named_struct``, ``failOnError => false`` (the result is a struct
    ``{result, errorMessage}``, so a bad row does not fail the query).

    Example::

        print(ai_query_sql("iris", signature, "main.default.iris_input"))
    """
    if signature.is_tensor or not signature.columns or any(c.name is None for c in signature.columns):
        raise ConfigurationError("ai_query needs a signature with named input columns")
    fields = ",\n    ".join(f"{_sql_string(str(c.name))}, {_sql_ident(str(c.name))}" for c in signature.columns)
    return (
        f"SELECT\n  *,\n  ai_query(\n    {_sql_string(endpoint)},\n    named_struct(\n    {fields}\n    ),\n"
        f"    failOnError => false\n  ) AS {_sql_ident(prediction_col)}\n"
        f"FROM {'.'.join(_sql_ident(part) for part in table.split('.'))}"
    )


def endpoint_ai_query_sql(
    endpoint: str, table: str, *, model_uri: str | None = None, registry_uri: str | None = None
) -> str:
    """:func:`ai_query_sql` with the signature of ``model_uri`` (from the registry), else of the
    endpoint itself (from the workspace)."""
    from .._http import sync as _sync
    from .._predictor import Predictor
    from .._schema.signatures import from_registry

    if model_uri is not None:
        signature, _ = _sync.run(from_registry(model_uri, registry_uri))
    else:
        signature = Predictor.from_endpoint(endpoint, registry_uri=registry_uri).get_signature()
    if signature is None:
        raise ConfigurationError(f"no signature for endpoint {endpoint!r}: pass --model-uri")
    return ai_query_sql(endpoint, signature, table)


def _sql_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_ident(s: str) -> str:
    return "`" + s.replace("`", "``") + "`"


def run_batch(
    input_path: str,
    output_path: str,
    predictor: Predictor,
    *,
    master: str = "local[*]",
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Any = None,
) -> tuple[int, int]:
    """Score a Parquet or CSV table into a Parquet directory; returns (rows, rows with an error).

    An existing output is refused unless ``overwrite``. ``progress(done_tasks, total_tasks)`` is
    called as Spark's tasks finish. Spark writes the output with its commit protocol: a failed
    job leaves no ``_SUCCESS`` marker and no committed files.

    Example::

        run_batch("iris.csv", "scored.parquet", Predictor.from_endpoint("iris"), master="local[2]")
    """
    lower = input_path.lower().rstrip("/")
    if not (lower.endswith((".csv", ".parquet", ".pq")) or os.path.isdir(input_path)):
        raise ConfigurationError(f"cannot tell the format of {input_path!r}: name it .csv or .parquet")
    if not os.path.exists(input_path):
        raise ConfigurationError(f"no such input: {input_path!r}")
    if os.path.exists(output_path) and not overwrite:
        raise ConfigurationError(f"{output_path!r} exists; pass --overwrite to replace it")
    spark = spark_session(master)
    df = read_csv(spark, input_path) if lower.endswith(".csv") else spark.read.parquet(input_path)
    scored = score(df, predictor, params=params)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_tasks, args=(spark, progress, stop), daemon=True) if progress else None
    if watcher is not None:
        watcher.start()
    try:
        scored.write.mode("overwrite" if overwrite else "errorifexists").parquet(output_path)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(5)
    written = spark.read.parquet(output_path)
    return written.count(), written.where(written[scored.columns[-1]].isNotNull()).count()


#: The CSV dialect the apps' reader (Python's ``csv`` module) reads, in Spark's words: RFC 4180
#: quoting (a quoted field may hold commas, ``""`` and line breaks), UTF-8 with or without a BOM,
#: a header row, blank lines skipped.
CSV_OPTIONS = {"header": "true", "inferSchema": "true", "multiLine": "true", "quote": '"', "escape": '"',
               "encoding": "UTF-8"}


def read_csv(spark: SparkSession, path: str) -> DataFrame:
    """A CSV file as a DataFrame, read in :data:`CSV_OPTIONS`' dialect; a file with a header and no
    rows is refused (``ConfigurationError``), as the apps refuse it.

    Example::

        df = read_csv(spark_session("local[2]"), "iris.csv")
    """
    df = spark.read.options(**CSV_OPTIONS).csv(path)
    # Why: Spark keeps a UTF-8 BOM in the first header name when it reads multi-line CSV.
    first = df.columns[0] if df.columns else ""
    if first.startswith("\ufeff"):
        df = df.withColumnRenamed(first, first[1:])
    if df.isEmpty():
        raise ConfigurationError(f"{path!r}: the CSV file has no data rows")
    return df


def _watch_tasks(spark: SparkSession, progress: Any, stop: threading.Event) -> None:
    """Report (tasks done, tasks) of the running stages whenever it changes."""
    tracker = spark.sparkContext.statusTracker()
    last = None
    while not stop.wait(1.0):
        stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        done = sum(s.numCompletedTasks for s in stages if s is not None)
        total = sum(s.numTasks for s in stages if s is not None)
        if total and (done, total) != last:
            last = (done, total)
            progress(done, total)

