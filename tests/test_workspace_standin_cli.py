"""``python tests/workspace_standin.py``: the stand-in in its own process, as benchmarks/apps.py
runs it, queried by databricks-sdk with OAuth M2M in front of a real MLflow scoring server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SERVER_STARTUP_TIMEOUT, free_port
from workspace_standin import SECRET_ENV

OPENAPI = ROOT / "tests" / "data" / "openapi_endpoint_schema.json"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
CLIENT_ID = "app-service-principal"
SECRET = "standin-cli-secret-SENTINEL"

pytestmark = pytest.mark.slow


@pytest.fixture
def standin(scoring_server: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    port = free_port()
    log = tmp_path / "standin.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "workspace_standin.py"), "--port", str(port),
             "--client-id", CLIENT_ID, "--endpoint", f"iris={scoring_server}",
             "--entity", "iris=main.default.iris/1", "--openapi", f"iris={OPENAPI}"],
            cwd=ROOT, env={**os.environ, SECRET_ENV: SECRET}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"stand-in exited with {proc.returncode}:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/.well-known/databricks-config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"stand-in not up after 60 s:\n{log.read_text()}"
            time.sleep(0.1)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sdk_queries_the_endpoint_through_the_standin_process_with_oauth_m2m(standin, scoring_server, monkeypatch):
    from databricks.sdk import WorkspaceClient

    for var in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    proc, url, log = standin
    w = WorkspaceClient(host=url, client_id=CLIENT_ID, client_secret=SECRET)
    got = w.serving_endpoints.query(name="iris", dataframe_records=[ROW])
    direct = httpx.post(f"{scoring_server}/invocations", json={"dataframe_records": [ROW]}, timeout=60).json()
    assert got.predictions == direct["predictions"]
    assert got.served_model_name == "iris-1"
    config = w.serving_endpoints.get("iris").config
    assert config is not None and config.served_entities
    entity = config.served_entities[0]
    assert (entity.entity_name, entity.entity_version) == ("main.default.iris", "1")
    openapi = w.serving_endpoints.get_open_api("iris").contents
    assert openapi is not None and json.load(openapi) == json.loads(OPENAPI.read_text())

    wrong = WorkspaceClient(host=url, client_id=CLIENT_ID, client_secret=SECRET + "-wrong")
    with pytest.raises(Exception, match=r"invalid_client|Client authentication failed"):
        wrong.serving_endpoints.query(name="iris", dataframe_records=[ROW])

    # The secret came through the environment: not in the command line (``ps``), not in the log.
    assert SECRET not in Path(f"/proc/{proc.pid}/cmdline").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert SECRET not in log.read_text()


def test_a_missing_secret_or_malformed_endpoint_is_a_usage_error(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    script = str(ROOT / "tests" / "workspace_standin.py")
    no_secret = subprocess.run([sys.executable, script, "--port", "1", "--endpoint", "iris=http://x"],
                               env=env, capture_output=True, text=True, timeout=60)
    assert no_secret.returncode == 2 and SECRET_ENV in no_secret.stderr
    malformed = subprocess.run([sys.executable, script, "--port", "1", "--endpoint", "iris"],
                               env={**env, SECRET_ENV: SECRET}, capture_output=True, text=True, timeout=60)
    assert malformed.returncode == 2 and "--endpoint 'iris': expected NAME=VALUE" in malformed.stderr
