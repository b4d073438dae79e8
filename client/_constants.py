"""Defaults, in one place. Every one of them is settable per client, most per call."""

from __future__ import annotations

import httpx

#: Read/write/pool budget for one HTTP attempt; connecting gets a short budget of its own
#: so that a dead host fails fast instead of eating the whole read timeout.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)

#: Retries after the first attempt (``0`` disables retrying).
DEFAULT_MAX_RETRIES = 3

#: Wall-clock budget for one call from its start, all attempts and waits included (seconds):
#: the signature's first fetch, waiting in a batch, retries, a resend alone, every chunk.
DEFAULT_TOTAL_TIMEOUT = 180.0

#: Exponential backoff: first wait, growth factor and cap (seconds); full jitter on top.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
#: The longest ``Retry-After`` we honour; a server asking for more gets this.
MAX_RETRY_AFTER = 30.0

#: HTTP statuses worth another attempt. 401 is handled apart: one token refresh, then a retry.
RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})

#: At exit, how long traces still being exported may hold the process up (seconds); what is not
#: written by then is counted in a warning and dropped. ``PREDICTOR_TRACE_EXIT_TIMEOUT`` overrides.
DEFAULT_TRACE_EXIT_TIMEOUT = 5.0

#: Model Serving rejects request bodies above 16 MB.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

#: Micro-batching (``Batching``): rows per coalesced request, how long pending rows may wait
#: for company while other batches are in flight (a lone caller never waits), batches in flight.
DEFAULT_BATCH_MAX_ROWS = 64
DEFAULT_BATCH_MAX_WAIT = 0.002
DEFAULT_BATCH_MAX_CONCURRENCY = 4

#: Large inputs: rows per request and requests in flight when one call is split into chunks.
DEFAULT_CHUNK_ROWS = 5_000
DEFAULT_CHUNK_CONCURRENCY = 4
#: Seconds after two sync calls overlapped during which sync calls go through the event loop (to
#: be batched) even when none is in flight; a lone caller's calls go from its own thread.
SYNC_COMPANY_WINDOW = 0.1

#: Connection pool of the one ``httpx.AsyncClient`` each Predictor owns.
DEFAULT_CONNECTION_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

#: How long a fetched signature stays fresh when it was looked up by alias (aliases move).
SIGNATURE_ALIAS_TTL = 300.0

#: Where the embedded default keeps its MLflow registry (relative to the working directory,
#: overridable with ``PREDICTOR_HOME``).
DEFAULT_HOME_DIR = ".predictor"
DEMO_MODEL_NAME = "main.default.iris"
DEMO_MODEL_ALIAS = "champion"
DEMO_MODEL_URI = f"models:/{DEMO_MODEL_NAME}@{DEMO_MODEL_ALIAS}"
#: The demo agent (a ResponsesAgent that calls the iris model as a tool), registered beside it.
DEMO_AGENT_NAME = "main.default.assistant"
DEMO_AGENT_URI = f"models:/{DEMO_AGENT_NAME}@{DEMO_MODEL_ALIAS}"

USER_AGENT = "uc-predictor-client"

#: ``client.spark.score`` in endpoint mode: rows per request and requests in flight, per Spark
#: Python worker (so a job keeps at most workers x concurrency requests in flight).
DEFAULT_SPARK_BATCH_ROWS = 1_000
DEFAULT_SPARK_CONCURRENCY = 4

#: A monitoring baseline read from a table (``catalog.schema.table``, through Spark): at most this
#: many rows, sampled with a fixed seed, so that a large table gives a report in seconds, the same
#: report every time. The drift statistics need a sample, not the whole table.
DEFAULT_BASELINE_MAX_ROWS = 100_000
BASELINE_SAMPLE_SEED = 7

#: Reading traces (monitoring reports, the Feedback summary): an MLflow tracking *server* refuses a
#: ``search_traces`` page over 500 (``max_results must be between 1 and 500``: its SearchTracesV3
#: and V2 handlers, mlflow/server/handlers.py), so over http(s) and on Databricks traces are read
#: 500 at a time. A database-backed store (sqlite, postgresql, mysql, mssql) is read in one request
#: of up to this many: each further page repeats the store's sorted query from an offset.
TRACKING_SERVER_TRACE_PAGE = 500
DATABASE_TRACE_PAGE = 50_000
