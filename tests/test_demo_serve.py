"""The demo model, the local scoring server and the CLI, for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _iris import iris_labels

ROOT = Path(__file__).resolve().parent.parent

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
IRIS_LABELS = ["setosa", "virginica", "versicolor"]


def test_demo_registration_is_idempotent(registry_uri: str) -> None:
    from mlflow import MlflowClient

    from client.local.demo import register_demo_model

    # This registry by name, not MLflow's process-wide one, which an earlier test in the same
    # process may have pointed elsewhere (seen with two xdist workers: 'databricks-uc').
    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    before = client.search_model_versions("name='main.default.iris'")
    assert register_demo_model(registry_uri) == "models:/main.default.iris@champion"
    after = client.search_model_versions("name='main.default.iris'")
    assert len(before) == len(after) == 1
    assert str(client.get_model_version_by_alias("main.default.iris", "champion").version) == "1"


@pytest.mark.slow
def test_served_paths_agree(scoring_server: str) -> None:
    payload = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    a = httpx.post(f"{scoring_server}/serving-endpoints/iris/invocations", json=payload, timeout=30)
    b = httpx.post(f"{scoring_server}/invocations", json=payload, timeout=30)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json() == b.json()
    assert iris_labels(a.json()["predictions"]) == IRIS_LABELS
    assert httpx.get(f"{scoring_server}/serving-endpoints/iris/ping", timeout=10).status_code == 200


@pytest.mark.slow
def test_official_clients_query_it_like_a_workspace_endpoint(
    scoring_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """databricks-sdk's serving_endpoints.query and mlflow.deployments' Databricks client, both
    pointed at `predictor serve` as if it were a workspace: same predictions, and the SDK reads the
    served entity from the served-model-name header as it does on Model Serving."""
    from databricks.sdk import WorkspaceClient
    from mlflow.deployments import get_deploy_client

    records = [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]
    for var in ("CLIENT_ID", "CLIENT_SECRET", "CONFIG_PROFILE", "AUTH_TYPE"):
        monkeypatch.delenv(f"DATABRICKS_{var}", raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", scoring_server)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-local-not-checked")

    answer = WorkspaceClient(host=scoring_server, token="dapi-local-not-checked").serving_endpoints.query(
        "iris", dataframe_records=records
    )
    assert iris_labels(answer.predictions) == IRIS_LABELS
    assert answer.served_model_name == "iris-1"  # main.default.iris@champion is version 1
    via_mlflow = get_deploy_client("databricks").predict(endpoint="iris", inputs={"dataframe_records": records})
    assert via_mlflow["predictions"] == answer.predictions
    # Only invocations answers carry it, as on a workspace; the header is MLflow's answer plus one.
    assert "served-model-name" not in httpx.get(f"{scoring_server}/ping", timeout=10).headers
    r = httpx.post(f"{scoring_server}/invocations", json={"dataframe_records": records}, timeout=30)
    assert r.headers.get_list("served-model-name") == ["iris-1"] and r.json() == {"predictions": answer.predictions}


def test_served_entity_name_can_be_given(registry_uri: str) -> None:
    """`predictor serve --served-entity champion` answers as a config file's named entity would."""
    from starlette.testclient import TestClient

    from client.local.serve import build_app, default_served_name

    assert default_served_name("models:/main.default.iris/1", registry_uri) == "iris-1"
    assert default_served_name("models:/main.default.iris@champion", registry_uri) == "iris-1"
    app = build_app("models:/main.default.iris@champion", "iris", registry_uri, served_entity="champion")
    payload = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS[:1]}}
    with TestClient(app) as http:
        r = http.post("/serving-endpoints/iris/invocations", json=payload)
    assert r.status_code == 200 and iris_labels(r.json()["predictions"]) == ["setosa"]
    assert r.headers["served-model-name"] == "champion"


@pytest.mark.slow
def test_mixed_server_answers(mixed_server: str) -> None:
    from _models import mixed_expected

    row = {"x": 1.5, "f": 2.25, "n": 3, "s": "abc", "b": True, "t": "2024-01-05T00:00:00"}
    payload = {"dataframe_records": [row], "params": {"threshold": 1.0}}
    r = httpx.post(f"{mixed_server}/serving-endpoints/mixed/invocations", json=payload, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [pytest.approx(mixed_expected(row, 1.0))]


def test_cli_schema_lists_columns(registry_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from client.local.cli import main

    assert main(["schema", "models:/main.default.iris@champion", "--registry-uri", registry_uri]) == 0
    out = capsys.readouterr().out
    for col in IRIS_COLUMNS:
        assert col in out
    assert "double" in out


def test_cli_schema_mixed_params(registry_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from client.local.cli import main

    assert main(["schema", "models:/main.default.mixed@champion"]) == 0
    out = capsys.readouterr().out
    assert "threshold" in out and "note" in out and "datetime" in out


def test_cli_error_is_one_line(registry_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from client.local.cli import main

    assert main(["schema", "models:/main.default.nope@champion"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_demo_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PREDICTOR_HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "client.local", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["models:/main.default.iris@champion",
                                                     "models:/main.default.assistant@champion"]
    assert (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()


_OLD_DEMO_SCRIPT = """
import mlflow, sys
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from mlflow.models import infer_signature
from client._mlflow import activate, ensure_experiment, resolve_registry_uri
from client.local.cli import main

activate(resolve_registry_uri(None))
data = load_iris(as_frame=True)
model = LogisticRegression(max_iter=500).fit(data.data, data.target)  # the demo before: answers 0, 1, 2
ensure_experiment("/old-demo")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name="main.default.iris",
                                    signature=infer_signature(data.data, model.predict(data.data)),
                                    pip_requirements=["scikit-learn"])
MlflowClient().set_registered_model_alias("main.default.iris", "champion", info.registered_model_version)
assert main(["demo"]) == 0 and main(["demo"]) == 0  # the second run finds the new version current
from client import Predictor
champion = MlflowClient().get_model_version_by_alias("main.default.iris", "champion").version
row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
print(champion, Predictor.from_model("models:/main.default.iris@champion").predict([row]).predictions[0]["prediction"])
"""


@pytest.mark.slow
def test_cli_demo_replaces_an_older_demo_that_answered_class_indices(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PREDICTOR_HOME=str(tmp_path), PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _OLD_DEMO_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == "2 setosa"  # a new version, the champion, answering a name


@pytest.mark.slow
def test_cli_predict_url(scoring_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from client.local.cli import main

    rows = [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]
    argv = [
        "predict",
        "--url",
        f"{scoring_server}/serving-endpoints/iris/invocations",
        "--model-uri",
        "models:/main.default.iris@champion",
        "--json",
        json.dumps(rows),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert iris_labels(out["predictions"]) == IRIS_LABELS and out["mode"] == "endpoint"


def test_demo_agent_is_a_responses_agent_with_a_signature(agent_registry: str) -> None:
    import mlflow

    from client.local.demo import register_demo_agent

    assert register_demo_agent(agent_registry) == "models:/main.default.assistant@champion"  # idempotent
    info = mlflow.models.get_model_info("models:/main.default.assistant@champion")
    assert info.metadata["task"] == "agent/v1/responses"
    assert "input" in info.signature.inputs.input_names()
