"""One MLflow trace per prediction call, recorded after the fact, never failing the call.

Off by default in the SDK (``tracing=True`` on a constructor, or ``PREDICTOR_TRACING=1``). Building
a Predictor with tracing on imports nothing: MLflow (seconds of CPU) is imported, and its tracer
provider built, by :func:`warm_up`, once per process, which the first traced call runs if nobody
ran it before (an app runs it in the background after start-up, so no visitor waits for it).
Traces go to MLflow's active experiment (``mlflow.set_experiment``), through MLflow's own tracing
API and its asynchronous exporter: a call pays for building one span in memory (well under a
millisecond once MLflow is warm), and a tracking store that is down or slow costs a logged
warning from MLflow's background exporter, never an error or a wait here.

What a trace holds (root span ``Predictor.predict``):

* inputs: ``{"records": [...first rows...], "n_rows": N, "params": {...}}``; outputs:
  ``{"predictions": [...first rows...], "n_predictions": N}`` (at most ``MAX_TRACED_ROWS`` rows);
* span attributes: ``predictor.client_request_id``, ``predictor.request_id``,
  ``predictor.retries``, ``predictor.elapsed_ms``, ``predictor.batch_size``, ``predictor.n_rows``;
* trace tags (searchable, read by the feedback summary): ``predictor.model_name``,
  ``predictor.model_version``, ``predictor.served_model_name``, ``predictor.endpoint``,
  ``predictor.mode``, ``predictor.client_request_id``; and, read by ``client.monitoring``:
  ``predictor.status_code`` (200, or the failed call's HTTP status, 500 when it had none, 400
  for input the SDK refused before sending: those calls are traced too, their inputs as given),
  ``predictor.error`` (the failed call's exception type), ``predictor.request_id`` (the server's),
  ``predictor.tracer`` and ``predictor.trace_seq`` (a per-Tracer id and sequence number: a gap in
  the sequence is a trace that never reached the store, counted as dropped by the monitoring report).

A result that already carries a ``trace_id`` (a chat answer the server traced) is not traced twice.

Export off the request's path (:func:`defer_export`, or ``PREDICTOR_TRACE_EXPORT_DELAY`` seconds): the
span is started in the call, which gives its trace id, and ended (handed to MLflow's exporter, which
writes it) by one background thread once no call has been traced for that long (at most
``MAX_EXPORT_DELAY`` s after the oldest), in a batch. Why: writing a trace into a local store is tens
of milliseconds of Python, and exported at once it competes for the GIL and the cores with the page
that shows the answer. The apps turn it on; :func:`flush` writes what waits now (feedback does, and
so should anything that reads the traces back at once). A trace that cannot be written is counted
(:func:`export_failures`) and logged, never dropped in silence.

At exit, MLflow flushes its exporter and would wait for every pending trace, for minutes when the
tracking store is down (its HTTP client retries each request with backoff). A process that traced
gives that flush ``PREDICTOR_TRACE_EXIT_TIMEOUT`` seconds (default 5), then exits and says in a
warning how many traces were not written.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._constants import DEFAULT_TRACE_EXIT_TIMEOUT

if TYPE_CHECKING:
    from ._schema.validate import ValidatedInput

log = logging.getLogger(__name__)

TRACING_ENV = "PREDICTOR_TRACING"
EXIT_TIMEOUT_ENV = "PREDICTOR_TRACE_EXIT_TIMEOUT"
SPAN_NAME = "Predictor.predict"
#: Rows of inputs and predictions kept in a trace (a 5,000-row call is not copied into the store).
MAX_TRACED_ROWS = 20
#: Trace tag names, shared with the feedback summary that reads them back.
TAG_MODEL_NAME = "predictor.model_name"
TAG_MODEL_VERSION = "predictor.model_version"
TAG_SERVED_MODEL = "predictor.served_model_name"
TAG_ENDPOINT = "predictor.endpoint"
TAG_MODE = "predictor.mode"
TAG_CLIENT_REQUEST_ID = "predictor.client_request_id"
TAG_STATUS_CODE = "predictor.status_code"
TAG_ERROR = "predictor.error"
TAG_REQUEST_ID = "predictor.request_id"
TAG_TRACER = "predictor.tracer"
TAG_TRACE_SEQ = "predictor.trace_seq"
_TRUTHY = {"1", "true", "yes", "on"}
#: What MLflow's no-op span (tracing disabled, or the trace sampled out) gives as its trace id.
_NO_OP_TRACE_ID = "MLFLOW_NO_OP_SPAN_TRACE_ID"
EXPORT_DELAY_ENV = "PREDICTOR_TRACE_EXPORT_DELAY"
#: The longest a trace waits for a quiet moment: then it is written even while calls keep coming.
MAX_EXPORT_DELAY = 5.0
#: Traces waiting at once; beyond, the oldest is dropped (counted).
MAX_PENDING_EXPORTS = 1_000
#: MLflow's exporter reports a trace it could not write in a log record starting so (then drops it).
_MLFLOW_EXPORT_LOGGERS = ("mlflow.tracing.export.mlflow_v3", "mlflow.tracing.export.async_export_queue")
_MLFLOW_FAILURE_PREFIXES = ("Failed to send trace", "Trace export queue is full", "Failed to log trace")
_warm_lock = threading.Lock()
_warm = False


def tracing_enabled(tracing: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """``tracing`` if given, else ``PREDICTOR_TRACING`` from the environment (off when unset)."""
    if tracing is not None:
        return bool(tracing)
    env = os.environ if env is None else env
    return env.get(TRACING_ENV, "").strip().lower() in _TRUTHY


def warm_up() -> None:
    """Import MLflow and build its tracer provider, once per process (thread-safe; later calls
    return at once). Raises only if MLflow cannot be imported.

    Example (an app, in a background thread once it serves its page)::

        threading.Thread(target=warm_up, daemon=True).start()
    """
    global _warm
    if _warm:
        return
    with _warm_lock:  # callers arriving meanwhile wait for the one import, then find it done
        if _warm:
            return
        if _writer_delay() > 0:
            # Our writer is the background: MLflow's own queue would only add a second hop, and its
            # failures would land in threads whose traces we cannot count. An explicit setting wins.
            os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        import mlflow  # noqa: F401 - what tracing needs: seconds of CPU, paid here once

        _count_mlflow_failures()
        try:  # build MLflow's tracer provider now (~0.1 s) rather than inside a call
            from mlflow.tracing.provider import _get_tracer

            _get_tracer(__name__)
        except Exception as err:  # a private helper: if it moves, the first span pays instead
            log.debug("could not warm up MLflow tracing: %s", err)
        _install_exit_flush()
        _warm = True


def exit_timeout(env: Mapping[str, str] | None = None) -> float:
    """Seconds the exit flush may take: ``PREDICTOR_TRACE_EXIT_TIMEOUT``, else the default (pure)."""
    env = os.environ if env is None else env
    try:
        value = float(env.get(EXIT_TIMEOUT_ENV, DEFAULT_TRACE_EXIT_TIMEOUT))
    except ValueError:
        return DEFAULT_TRACE_EXIT_TIMEOUT
    return value if value >= 0 else DEFAULT_TRACE_EXIT_TIMEOUT


# -- export off the request's path, and what could not be written ---------------------------


def export_delay(env: Mapping[str, str] | None = None) -> float:
    """``PREDICTOR_TRACE_EXPORT_DELAY`` in seconds; 0 (export at once) when unset or unreadable (pure)."""
    env = os.environ if env is None else env
    try:
        value = float(env.get(EXPORT_DELAY_ENV, "0"))
    except ValueError:
        return 0.0
    return min(value, MAX_EXPORT_DELAY) if value > 0 else 0.0


class _FailureCounter(logging.Filter):
    """Counts the traces MLflow's exporter reports it could not write (it logs them, then drops them)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and str(record.msg).startswith(_MLFLOW_FAILURE_PREFIXES):
            self.add()
        return True  # counted, and still logged as MLflow logs it


_failures = _FailureCounter()


def _count_mlflow_failures() -> None:
    for name in _MLFLOW_EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        if _failures not in logger.filters:
            logger.addFilter(_failures)


def export_failures() -> int:
    """Traces this process could not write to the tracking store (MLflow's exporter failed, a queue
    was full, or the process exited first). An app shows it; the CLI warns with it.

    Example::

        if (lost := export_failures()):
            st.caption(f"{lost} trace(s) could not be written")
    """
    return _failures.count


class _Writer:
    """Ends finished calls' spans (so MLflow writes them) in one background thread, once no call
    has been traced for ``delay`` s or the oldest has waited ``MAX_EXPORT_DELAY`` s."""

    def __init__(self, delay: float, clock: Any = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._pending: list[tuple[Any, float, Any]] = []  # (span, queued at, how to end it)
        self._last = 0.0
        self._cond = threading.Condition()
        self._ending = threading.Lock()  # held while a batch is ended: flush() waits for it
        self._left_in_batch = 0  # spans of the batch being ended, not ended yet
        self._thread: threading.Thread | None = None

    def put(self, span: Any, end: Any) -> None:
        with self._cond:
            now = self._clock()
            self._pending.append((span, now, end))
            self._last = now
            if len(self._pending) > MAX_PENDING_EXPORTS:
                self._pending.pop(0)
                _failures.add()
                log.warning("trace export queue full (%d); the oldest trace was dropped", MAX_PENDING_EXPORTS)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="predictor-trace-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        """Traces not handed to MLflow yet: waiting, or in the batch being ended."""
        with self._cond:
            return len(self._pending) + self._left_in_batch

    def _due_in(self) -> float:
        """Seconds until the pending batch is due (<= 0: now). Call with the condition held."""
        now = self._clock()
        oldest = self._pending[0][1]
        return min(self._last + self.delay, oldest + MAX_EXPORT_DELAY) - now

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                while self._pending and (wait := self._due_in()) > 0:
                    self._cond.wait(wait)
            self.flush()  # locks in one order everywhere: _ending, then _cond

    def flush(self) -> None:
        """End every waiting span now, in this thread (and wait for a batch being ended)."""
        with self._ending:
            with self._cond:
                batch, self._pending = self._pending, []
            self._end_all(batch)

    def _end_all(self, batch: list[tuple[Any, float, Any]]) -> None:
        """End (and so export) each span; call with ``_ending`` held."""
        self._left_in_batch = len(batch)
        for span, _, end in batch:
            try:
                end(span)
            except Exception as err:  # MLflow catches its own; this is a span that could not be ended
                _failures.add()
                log.warning("a trace could not be written (%s: %s)", type(err).__name__, err)
            finally:
                self._left_in_batch -= 1


_writer_lock = threading.Lock()
_writer: _Writer | None = None
_delay_override: float | None = None


def _writer_delay() -> float:
    return export_delay() if _delay_override is None else _delay_override


def defer_export(delay: float) -> None:
    """Write traces ``delay`` seconds after the last traced call, off the calls' path (0: at once).
    Call it before the first traced call (MLflow's exporter is set up then).

    Example (an app, at start-up)::

        defer_export(1.0)   # the answer is on screen long before its trace is written
    """
    global _delay_override
    _delay_override = max(0.0, min(float(delay), MAX_EXPORT_DELAY))


def _the_writer() -> _Writer | None:
    global _writer
    delay = _writer_delay()
    if delay <= 0:
        return None
    with _writer_lock:
        if _writer is None:
            _writer = _Writer(delay)
        _writer.delay = delay
        return _writer


def flush(timeout: float | None = None) -> None:
    """Write every trace waiting for export now (and those in MLflow's queue): before reading
    traces back (a vote on the answer just shown), or before a process says it is done."""
    writer = _writer
    if writer is not None:
        writer.flush()
    if _warm:
        import mlflow

        mlflow.flush_trace_async_logging()


def _pending_exports() -> int | None:
    """Traces waiting in our writer, queued or in flight in MLflow's exporter when its queue can be
    seen (else ``None``)."""
    ours = _writer.pending() if _writer is not None else 0
    try:
        from mlflow.tracing.provider import _get_trace_exporter

        queue = getattr(getattr(_get_trace_exporter(), "_async_queue", None), "_queue", None)
        return ours + (0 if queue is None else int(queue.unfinished_tasks))
    except Exception:  # MLflow internals moved: the warning says "some" instead of a number
        return ours or None


def _flush_at_exit() -> None:
    """Flush MLflow's trace export as the interpreter shuts down, bounded; then let it go on.

    Runs among ``threading``'s exit hooks, before ``concurrent.futures`` joins its worker threads
    (MLflow's exporter sends from such a pool). Past the deadline, MLflow's senders are left out of
    that join; they are daemon threads (started by MLflow's daemon consumer), so they end with the
    process, and MLflow's own ``atexit`` flush finds its queue already stopped and returns at once.
    """
    import mlflow

    timeout = exit_timeout()
    done = threading.Event()

    def flush() -> None:
        try:
            if _writer is not None:
                _writer.flush()
            mlflow.flush_trace_async_logging(terminate=True)
        except Exception as err:
            log.debug("flushing traces at exit failed: %s", err)
        finally:
            done.set()

    pending = _pending_exports()
    threading.Thread(target=flush, name="predictor-trace-exit-flush", daemon=True).start()
    if done.wait(timeout):
        return
    left = _pending_exports()
    count = left if left is not None else pending
    _failures.add(count or 1)
    log.warning("%s trace(s) not written to the tracking store within %.0f s of exit (is it reachable?); "
                "exiting without them (%s sets the wait)", count if count else "some", timeout, EXIT_TIMEOUT_ENV)
    _release_export_threads()


#: The name MLflow gives its trace-sending threads (``ThreadPoolExecutor(thread_name_prefix=...)``).
_MLFLOW_SENDER_PREFIX = "MlflowTraceLoggingWorker"


def _release_export_threads() -> None:
    """Leave MLflow's trace senders out of ``concurrent.futures``' exit join (a stdlib internal,
    looked up defensively: where it is missing, the exit waits for them as before)."""
    from concurrent.futures import thread as futures_thread

    joined = getattr(futures_thread, "_threads_queues", None)
    if joined is None:
        return
    for worker in list(joined):
        if worker.name.startswith(_MLFLOW_SENDER_PREFIX) and worker.daemon:
            joined.pop(worker, None)


_exit_hook_lock = threading.Lock()
_exit_hook_installed = False


def _install_exit_flush() -> None:
    """Register :func:`_flush_at_exit` once, after MLflow's import (so after ``concurrent.futures``'
    own hook, and therefore before it: these hooks run last-in first-out)."""
    global _exit_hook_installed
    with _exit_hook_lock:
        if _exit_hook_installed:
            return
        register = getattr(threading, "_register_atexit", None)
        try:
            (register or atexit.register)(_flush_at_exit)
        except RuntimeError:  # the interpreter is already shutting down
            return
        _exit_hook_installed = True


def _head(values: Any) -> Any:
    if isinstance(values, list) and len(values) > MAX_TRACED_ROWS:
        return values[:MAX_TRACED_ROWS]
    return values


def trace_inputs(validated: ValidatedInput) -> dict[str, Any]:
    """What the trace shows as the call's inputs: the first rows as records, and the count (pure)."""
    out: dict[str, Any] = {"n_rows": validated.n_rows}
    if validated.table is not None:
        part = validated if validated.n_rows <= MAX_TRACED_ROWS else validated.rows(0, MAX_TRACED_ROWS)
        split = part.to_wire()["dataframe_split"]
        out["records"] = [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
    else:
        out["inputs"] = _head(validated.to_wire().get("inputs"))
    if validated.params:
        out["params"] = validated.params
    return out


def trace_outputs(predictions: Any) -> dict[str, Any]:
    """What the trace shows as the call's outputs (pure)."""
    n = len(predictions) if isinstance(predictions, list) else 1
    return {"predictions": _head(predictions), "n_predictions": n}


def result_tags(result: Any) -> dict[str, str]:
    """Trace tags naming who answered (pure): empty values are left out. ``result`` is a
    ``PredictionResult`` or a ``ChatResult`` (which has no client request id)."""
    pairs = {
        TAG_MODEL_NAME: result.model_name,
        TAG_MODEL_VERSION: result.model_version,
        TAG_SERVED_MODEL: result.served_model_name,
        TAG_ENDPOINT: result.endpoint,
        TAG_MODE: result.mode,
        TAG_CLIENT_REQUEST_ID: getattr(result, "client_request_id", None),
    }
    return {k: str(v) for k, v in pairs.items() if v not in (None, "")}


def refused_inputs(inputs: Any) -> dict[str, Any]:
    """What the trace of a call refused by validation shows as its inputs (pure): the first rows
    as records when the input is records, one record, columns or a DataFrame; else only its type."""
    records: Any = None
    if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # a DataFrame, without importing pandas
        records = inputs.head(MAX_TRACED_ROWS).to_dict("records")
        n = len(inputs)
    elif isinstance(inputs, dict) and inputs and all(isinstance(v, list) for v in inputs.values()):
        n = max(len(v) for v in inputs.values())
        records = [{k: (v[i] if i < len(v) else None) for k, v in inputs.items()}
                   for i in range(min(n, MAX_TRACED_ROWS))]
    elif isinstance(inputs, dict):
        records, n = [inputs], 1
    elif isinstance(inputs, list) and all(isinstance(r, dict) for r in inputs):
        records, n = inputs[:MAX_TRACED_ROWS], len(inputs)
    if records is None:
        return {"input_type": type(inputs).__name__}
    return {"records": records, "n_rows": n}


def error_tags(err: BaseException) -> dict[str, str]:
    """Trace tags of a failed call (pure): its HTTP status (500 when it had none: no answer, or the
    model raised in direct mode), its exception type, and, when the error answer said, the served
    entity and request id."""
    tags = {TAG_STATUS_CODE: str(getattr(err, "status_code", None) or 500), TAG_ERROR: type(err).__name__}
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    if served := headers.get("served-model-name"):
        tags[TAG_SERVED_MODEL] = str(served)
    if request_id := getattr(err, "request_id", None):
        tags[TAG_REQUEST_ID] = str(request_id)
    return tags


def result_attributes(result: Any) -> dict[str, Any]:
    """Span attributes of a finished call (pure)."""
    attrs = {
        "predictor.client_request_id": result.client_request_id,
        "predictor.request_id": result.request_id,
        "predictor.retries": result.retries,
        "predictor.elapsed_ms": round(result.elapsed_ms, 3),
        "predictor.batch_size": result.batch_size,
    }
    return {k: v for k, v in attrs.items() if v is not None}


class Tracer:
    """Records one trace per call. Every method swallows its own failures (and logs a warning).

    Constructing one imports nothing; the first record runs :func:`warm_up` (MLflow's import).
    """

    def __init__(self) -> None:
        import itertools
        import uuid

        self._warned = False
        self._id = uuid.uuid4().hex[:16]
        self._seq = itertools.count(1)  # next() is atomic under the GIL: concurrent calls get distinct numbers

    def _sequence_tags(self) -> dict[str, str]:
        """Taken before anything can fail: a trace lost on its way to the store leaves a gap."""
        return {TAG_TRACER: self._id, TAG_TRACE_SEQ: str(next(self._seq))}

    def _warn(self, err: BaseException) -> None:
        # Once per Tracer at warning level: a broken store must not flood the log per call.
        _failures.add()  # a trace not recorded is one not written: counted like the exporter's
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "prediction not traced (%s: %s); the prediction itself is unaffected",
                type(err).__name__, err)

    def record(
        self, result: Any, validated: ValidatedInput, started_ns: int, n_rows: int | None = None
    ) -> str | None:
        """Write the trace of a finished call; its trace id, or ``None`` if tracing failed or is
        not needed (the result already has a trace id)."""
        if getattr(result, "trace_id", None):
            return None
        tags = self._sequence_tags()
        try:
            warm_up()
            import mlflow

            attrs = result_attributes(result)
            attrs["predictor.n_rows"] = validated.n_rows if n_rows is None else n_rows
            tags.update(result_tags(result))
            tags[TAG_STATUS_CODE] = "200"
            if getattr(result, "request_id", None):
                tags[TAG_REQUEST_ID] = str(result.request_id)
            span = mlflow.start_span_no_context(
                SPAN_NAME, inputs=trace_inputs(validated), attributes=attrs, tags=tags,
                start_time_ns=started_ns,
            )
            _end(span, outputs=trace_outputs(result.predictions))
            trace_id = str(span.trace_id or "")
            return None if not trace_id or trace_id == _NO_OP_TRACE_ID else trace_id
        except Exception as err:
            self._warn(err)
            return None

    def record_error(self, err: Exception, validated: ValidatedInput, started_ns: int,
                     attributes: Mapping[str, Any]) -> None:
        """Write the trace of a call that failed after validation (status ERROR, the exception)."""
        tags = self._sequence_tags()
        try:
            warm_up()
            import mlflow

            attrs = {k: v for k, v in attributes.items() if v is not None}
            tags.update(error_tags(err))
            tags[TAG_MODE] = str(attrs.pop("mode", "")) or "endpoint"
            for key, tag in (("model_name", TAG_MODEL_NAME), ("model_version", TAG_MODEL_VERSION),
                             ("endpoint", TAG_ENDPOINT), ("client_request_id", TAG_CLIENT_REQUEST_ID)):
                if attrs.get(key):
                    tags[tag] = str(attrs[key])
            span = mlflow.start_span_no_context(
                SPAN_NAME, inputs=trace_inputs(validated),
                attributes={f"predictor.{k}": v for k, v in attrs.items()}, tags=tags, start_time_ns=started_ns,
            )
            span.record_exception(err)  # the exception event, and status ERROR
            _end(span)
        except Exception as trace_err:
            self._warn(trace_err)

    def record_refused(self, err: Exception, inputs: Any, started_ns: int, attributes: Mapping[str, Any]) -> None:
        """Write the trace of a call refused before sending (bad input): status ERROR, status code
        400, the inputs as given (first rows), so that monitoring counts what callers send."""
        tags = self._sequence_tags()
        try:
            warm_up()
            import mlflow

            tags.update({TAG_STATUS_CODE: "400", TAG_ERROR: type(err).__name__})
            tags[TAG_MODE] = str(attributes.get("mode") or "endpoint")
            for key, tag in (("model_name", TAG_MODEL_NAME), ("model_version", TAG_MODEL_VERSION),
                             ("endpoint", TAG_ENDPOINT)):
                if attributes.get(key):
                    tags[tag] = str(attributes[key])
            span = mlflow.start_span_no_context(SPAN_NAME, inputs=refused_inputs(inputs), tags=tags,
                                                start_time_ns=started_ns)
            span.record_exception(err)
            _end(span)
        except Exception as trace_err:
            self._warn(trace_err)


def _end(span: Any, outputs: Any = None) -> None:
    """End ``span`` now (MLflow exports it), or, with a deferred export, hand it to the writer
    with its end time taken now."""
    writer = _the_writer()
    if writer is None:
        span.end(outputs=outputs)
        return
    end_ns = time.time_ns()
    writer.put(span, lambda s: s.end(outputs=outputs, end_time_ns=end_ns))


def wall_ns() -> int:
    """Now, as MLflow wants span times (nanoseconds since the epoch)."""
    return time.time_ns()


def make_tracer(tracing: bool | None) -> Tracer | None:
    """A Tracer when tracing is on (argument, else ``PREDICTOR_TRACING``); ``None`` when off."""
    return Tracer() if tracing_enabled(tracing) else None
