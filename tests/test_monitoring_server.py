"""Reading traces for a report and for the Feedback summary, from a database and from a tracking
server: as few ``search_traces`` requests as the store allows (one for a database, pages of 500
for ``mlflow server``, which refuses more), the latest ``max_traces`` and the truncated flag kept."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_healthy

from client._constants import DATABASE_TRACE_PAGE, TRACKING_SERVER_TRACE_PAGE
from client._mlflow import search_trace_infos, trace_page_size
from client.feedback import summarize
from client.monitoring import records_from_traces

EXPERIMENT = "/server-traces"
N_TRACES = 600  # more than one server page
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}


def write_traces(store_uri: str, n: int) -> str:
    """``n`` one-row traces of main.default.iris, one a second up to now, as ``Tracer.record`` shapes
    them, written through the store itself (MLflow's exporter is ~10 traces/s): the experiment's id."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(store_uri, str(Path(store_uri.removeprefix("sqlite:///")).parent / "artifacts"))
    exp_id = store.create_experiment(EXPERIMENT)
    now = int(time.time() * 1000)
    for i in range(n):
        tags = {"predictor.model_name": "main.default.iris", "predictor.model_version": str(1 + i % 2),
                "predictor.status_code": "200", "predictor.tracer": "server-test", "predictor.trace_seq": str(i + 1)}
        store.start_trace(TraceInfo(
            trace_id=f"tr-{uuid.uuid4().hex}", trace_location=TraceLocation.from_experiment_id(exp_id),
            request_time=now - (n - i) * 1000, execution_duration=5, state=TraceState.OK,
            request_preview=json.dumps({"n_rows": 1, "records": [ROW]}),
            response_preview=json.dumps({"predictions": [{"prediction": "setosa"}]}),
            client_request_id=str(uuid.uuid4()), trace_metadata={}, tags=tags))
    return exp_id


@pytest.fixture(scope="module")
def traces_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A sqlite store of :data:`N_TRACES` traces, and ``mlflow server`` on it (started while the
    traces are written, without its job runner): ``(store URI, experiment id, server URL)``."""
    from client._mlflow.store import seed_sqlite_store

    # in memory where there is a tmpfs: a sqlite commit per trace on a busy disk took 12 s to
    # create the store and 19 s for the traces here, 0.1 s and 5 s on /dev/shm
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path_factory.mktemp("server_traces")
    db = folder / "mlflow.db"
    uri, port = f"sqlite:///{db}", free_port()
    seed_sqlite_store(db)
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                             "--default-artifact-root", str(db.parent / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri,
                                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        exp_id = write_traces(uri, N_TRACES)
        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        wait_healthy(proc, f"{base}/health", "mlflow server", output)
        yield uri, exp_id, base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pointed_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``pointed_at(uri)``: MLflow's tracking and registry at ``uri`` for this test, then back."""
    import mlflow

    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)

    def point(uri: str) -> None:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)

    yield point
    mlflow.set_tracking_uri(saved[0])
    mlflow.set_registry_uri(saved[1])


def count_requests(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``max_results`` of every ``MlflowClient.search_traces`` call from now on."""
    import mlflow

    asked: list[int] = []
    search = mlflow.MlflowClient.search_traces

    def spy(self, *args, **kwargs):
        asked.append(kwargs["max_results"])
        return search(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "search_traces", spy)
    return asked


def test_the_page_is_the_most_the_store_allows():
    for uri in ("sqlite:////tmp/x.db", "postgresql://u@h/db", "postgresql+psycopg2://u@h/db", "mysql+pymysql://h/db",
                "mssql://h/db"):
        assert trace_page_size(uri) == DATABASE_TRACE_PAGE, uri
    for uri in ("http://127.0.0.1:5000", "https://mlflow.example.com", "databricks", "databricks://profile"):
        assert trace_page_size(uri) == TRACKING_SERVER_TRACE_PAGE == 500, uri


def test_a_database_is_read_in_one_request(traces_db, pointed_at, monkeypatch):
    uri, exp_id, _server = traces_db
    pointed_at(uri)
    asked = count_requests(monkeypatch)
    infos, truncated = search_trace_infos([exp_id], None, 10_000)
    assert (len(infos), truncated, asked) == (N_TRACES, False, [10_000])
    asked.clear()
    latest, truncated = search_trace_infos([exp_id], None, 550)
    assert (len(latest), truncated, asked) == (550, True, [550])
    assert [t.info.trace_id for t in latest] == [t.info.trace_id for t in infos[:550]]  # the latest first
    _frame, meta = records_from_traces("main.default.iris", experiments=[EXPERIMENT], max_traces=550,
                                       registry_uri=uri)
    assert (meta.traces, meta.predictions, meta.truncated, meta.dropped_traces) == (550, 550, True, 0)


def test_a_tracking_server_is_read_in_pages_of_500(traces_db, pointed_at, monkeypatch):
    """The old pages of 1,000 were refused by the server (``max_results must be between 1 and
    500``): the Feedback summary and a report failed against ``mlflow server``."""
    _uri, exp_id, tracking_server = traces_db
    pointed_at(tracking_server)
    asked = count_requests(monkeypatch)
    summary = summarize("main.default.iris", [exp_id])  # max_traces 10,000: more than one page wanted
    assert sorted((s.model_version, s.predictions) for s in summary) == [("1", 300), ("2", 300)]
    assert asked == [500, 500]  # 500, then 100 and no next page

    asked.clear()
    frame, meta = records_from_traces("main.default.iris", experiments=[EXPERIMENT], max_traces=550,
                                      registry_uri=tracking_server)
    assert (meta.traces, meta.predictions, meta.truncated, meta.dropped_traces) == (550, 550, True, 0)
    assert asked == [500, 50]
    frame, meta = records_from_traces("main.default.iris", experiments=[EXPERIMENT], registry_uri=tracking_server)
    assert (meta.traces, meta.truncated) == (N_TRACES, False)
    assert frame["request_time"].is_monotonic_decreasing  # the latest first, across the page boundary
