"""``predictor endpoints plan|apply|status|promote`` against the workspace stand-in's
serving-endpoints API and a real (sqlite) MLflow registry; the Predictor then queries the
applied endpoint by name, with a real MLflow scoring server behind it."""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path

import pytest
from _iris import iris_labels
from workspace_standin import WorkspaceStandin, workspace  # noqa: F401  (fixture)

from client import Predictor, SchemaValidationError
from client.local.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAT = "dapi-standin-" + secrets.token_hex(6)
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}

CONFIG = """\
name: {endpoint}
served_entities:
  - name: champion
    entity_name: {model}
    alias: champion
    workload_size: Small
    workload_type: CPU
    scale_to_zero_enabled: true
rate_limits:
  - calls: 50
    key: user
tags:
  team: ml
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def ws(workspace, monkeypatch: pytest.MonkeyPatch) -> WorkspaceStandin:  # noqa: F811
    w = workspace()
    w.add_pat(PAT)
    monkeypatch.setenv("DATABRICKS_HOST", w.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    for var in ("CLIENT_ID", "CLIENT_SECRET", "CONFIG_PROFILE", "AUTH_TYPE"):
        monkeypatch.delenv(f"DATABRICKS_{var}", raising=False)
    return w


@pytest.fixture
def model(registry_uri: str) -> str:
    """A fresh registered model with versions 1 and 2 (copies of the iris demo), champion -> 1."""
    from mlflow import MlflowClient

    from client._mlflow import activate

    activate(registry_uri)
    client = MlflowClient(registry_uri=registry_uri)
    iris = client.get_model_version("main.default.iris", "1")
    name = f"main.default.iris_ep_{secrets.token_hex(4)}"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=iris.source, run_id=iris.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    return name


class Cli:
    def __init__(self, registry_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.registry_uri, self.capsys = registry_uri, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        extra = ["--registry-uri", self.registry_uri]
        if args[0] in ("apply", "promote"):
            extra += ["--poll-interval", "0.01", "--timeout", "30"]
        self.capsys.readouterr()
        rc = main(["endpoints", *args, *extra])
        out, err = self.capsys.readouterr()
        assert PAT not in out + err  # the token never reaches the output
        return rc, out, err


@pytest.fixture
def cli(registry_uri: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(registry_uri, capsys)


def write(tmp_path: Path, text: str) -> str:
    f = tmp_path / "endpoint.yaml"
    f.write_text(text)
    return str(f)


def test_validate_checks_aliases_and_versions_in_the_registry(model, cli, tmp_path) -> None:
    good = CONFIG.format(endpoint="ep-v", model=model)
    rc, out, _ = cli("validate", write(tmp_path, good))
    assert rc == 0 and f"  {model}@champion -> version 1" in out
    f = write(tmp_path, (
        f"name: ep-v\nserved_entities:\n  - name: champion\n    entity_name: {model}\n    alias: nope\n"
        f"  - name: old\n    entity_name: {model}\n    entity_version: 7\ntraffic: {{champion: 100, old: 0}}\n"
    ))
    rc, _, err = cli("validate", f)
    assert rc == 1
    assert f"error: {f}:5: served_entities.0.alias: resolving alias {model}@nope in sqlite:" in err
    assert f"error: {f}:8: served_entities.1.entity_version: {model} version 7 in registry" in err


def test_plan_apply_status_and_idempotent_reapply(ws, model, cli, tmp_path) -> None:
    f = write(tmp_path, CONFIG.format(endpoint="ep-a", model=model))
    rc, out, _ = cli("plan", f)
    assert rc == 0 and out.splitlines()[:2] == [
        "+ endpoint ep-a will be created",
        f"  {model}@champion resolves to version 1",
    ]
    assert ws.writes == []  # plan only reads

    rc, out, err = cli("apply", f)
    assert rc == 0 and out.splitlines()[0] == "+ endpoint ep-a created" and "endpoint ep-a is ready" in out
    assert "ep-a: IN_PROGRESS" in err and "ep-a: NOT_UPDATING" in err  # the progress display
    [(method, path, body)] = ws.writes
    assert (method, path) == ("POST", "/api/2.0/serving-endpoints")
    assert body["config"]["served_entities"][0] == {
        "name": "champion", "entity_name": model, "entity_version": "1", "workload_size": "Small",
        "workload_type": "CPU", "scale_to_zero_enabled": True,
    }
    assert body["config"]["traffic_config"]["routes"] == [{"served_model_name": "champion", "traffic_percentage": 100}]
    assert body["tags"] == [{"key": "team", "value": "ml"}]
    assert body["ai_gateway"] == {"rate_limits": [{"calls": 50, "key": "user", "renewal_period": "minute"}]}

    rc, out, _ = cli("apply", f)
    assert rc == 0 and out.strip() == "= endpoint ep-a: no changes (already matches its config)"
    assert len(ws.writes) == 1

    rc, out, _ = cli("status", "ep-a")
    assert rc == 0
    assert "endpoint ep-a: ready=READY config_update=NOT_UPDATING" in out
    assert f"  champion: {model} version 1, Small CPU, scale to zero [DEPLOYMENT_READY]" in out
    assert f"answering: {model} v1 (100%)" in out
    assert cli("status", "nope")[0] == 1


def test_plan_diff_then_update(ws, model, cli, tmp_path) -> None:
    f = write(tmp_path, CONFIG.format(endpoint="ep-b", model=model))
    assert cli("apply", f)[0] == 0
    edited = (
        f"name: ep-b\nserved_entities:\n"
        f"  - {{name: champion, entity_name: {model}, alias: champion, workload_size: Medium,"
        f" scale_to_zero_enabled: true}}\n"
        f"  - {{name: challenger, entity_name: {model}, entity_version: 2}}\n"
        "traffic: {champion: 80, challenger: 20}\ntags: {team: ds}\n"
    )
    f = write(tmp_path, edited)
    rc, out, _ = cli("plan", f)
    assert rc == 0 and out.splitlines() == [
        "~ endpoint ep-b will be updated",
        f"  {model}@champion resolves to version 1",
        "  ~ served entity champion:",
        "      workload_size: 'Small' -> 'Medium'",
        f"  + served entity challenger: {model} version 2, Small CPU",
        "  ~ traffic: challenger 0% -> 20%, champion 100% -> 80%",
        "  ~ tags: team: ml -> ds",
        "  ~ rate limits: 50 calls/minute per user -> none",
    ]
    rc, out, _ = cli("apply", f)
    assert rc == 0 and out.splitlines()[0] == "~ endpoint ep-b updated" and "endpoint ep-b is ready" in out
    assert [(m, p) for m, p, _ in ws.writes[1:]] == [
        ("PATCH", "/api/2.0/serving-endpoints/ep-b/tags"),
        ("PUT", "/api/2.0/serving-endpoints/ep-b/ai-gateway"),
        ("PUT", "/api/2.0/serving-endpoints/ep-b/config"),
    ]
    assert cli("plan", f)[1].splitlines()[0] == "= endpoint ep-b: no changes"
    status = cli("status", "ep-b")[1]
    assert f"answering: {model} v1 (80%), {model} v2 (20%)" in status and "tags: team=ds" in status


def test_failed_update_reports_the_workspace_reason(ws, model, cli, tmp_path) -> None:
    text = CONFIG.format(endpoint="ep-c", model=model)
    assert cli("apply", write(tmp_path, text))[0] == 0
    ws.broken[f"{model}/2"] = "Container build failed: pip could not resolve scikit-learn==0.0"
    pinned = write(tmp_path, text.replace("alias: champion", "entity_version: 2"))
    rc, _, err = cli("apply", pinned)
    assert rc == 1
    assert "EndpointUpdateFailed: endpoint ep-c: UPDATE_FAILED: champion: Container build failed: pip could not" in err
    assert "ep-c: IN_PROGRESS" in err and "DEPLOYMENT_FAILED" in err
    status = cli("status", "ep-c")[1]
    assert "config_update=UPDATE_FAILED" in status and f"answering: {model} v1 (100%)" in status  # old config serves
    assert "last update failed: champion: Container build failed" in status
    # Each served entity's deployment_state_message, active and pending, in the workspace's words.
    assert f"  champion: {model} version 2 [DEPLOYMENT_FAILED] Container build failed: pip could not" in status
    assert "the last update ended UPDATE_FAILED: champion: Container build failed" in cli("plan", pinned)[1]
    # Fixed on the workspace side: the same file now goes through.
    del ws.broken[f"{model}/2"]
    assert cli("apply", pinned)[0] == 0
    assert f"answering: {model} v2 (100%)" in cli("status", "ep-c")[1]


GATEWAY = """\
inference_table: {{catalog: main, schema: serving_logs, table_prefix: {prefix}}}
usage_tracking: true
"""
GATEWAY_PATH = "/api/2.0/serving-endpoints/ep-g/ai-gateway"


def test_ai_gateway_inference_table_and_usage_tracking(ws, model, cli, tmp_path) -> None:
    base = CONFIG.format(endpoint="ep-g", model=model)
    f = write(tmp_path, base + GATEWAY.format(prefix="iris"))
    rc, out, _ = cli("plan", f)
    assert rc == 0
    assert "  + inference table: main.serving_logs, prefix iris" in out and "  + usage tracking: on" in out
    assert cli("apply", f)[0] == 0
    [(_, _, body)] = ws.writes
    assert body["ai_gateway"] == {
        "inference_table_config": {"catalog_name": "main", "schema_name": "serving_logs",
                                   "table_name_prefix": "iris", "enabled": True},
        "rate_limits": [{"calls": 50, "key": "user", "renewal_period": "minute"}],
        "usage_tracking_config": {"enabled": True},
    }
    status = cli("status", "ep-g")[1]
    assert "inference table: main.serving_logs, prefix iris" in status and "usage tracking: on" in status
    assert cli("apply", f)[1].startswith("= endpoint ep-g: no changes")

    # A new prefix: the workspace changes no enabled table, so apply disables it, then enables the new one.
    f = write(tmp_path, base + GATEWAY.format(prefix="iris_v2"))
    out = cli("plan", f)[1]
    assert out.splitlines()[1:] == [
        f"  {model}@champion resolves to version 1",
        "  ~ inference table: main.serving_logs, prefix iris -> main.serving_logs, prefix iris_v2"
        " (disabled, then enabled: the workspace renames no enabled table)",
    ]
    assert cli("apply", f)[0] == 0
    puts = [b for m, p, b in ws.writes if (m, p) == ("PUT", GATEWAY_PATH)]
    assert [(b["inference_table_config"]["table_name_prefix"], b["inference_table_config"]["enabled"])
            for b in puts] == [("iris", False), ("iris_v2", True)]
    assert all(b["usage_tracking_config"] == {"enabled": True} and len(b["rate_limits"]) == 1 for b in puts)

    # Dropped from the file: both are switched off, not left on; then nothing more to do.
    f = write(tmp_path, base)
    assert cli("apply", f)[0] == 0
    last = ws.writes[-1][2]
    assert last["inference_table_config"] == {"enabled": False} and last["usage_tracking_config"] == {"enabled": False}
    status = cli("status", "ep-g")[1]
    assert "inference table" not in status and "usage tracking" not in status
    assert cli("apply", f)[1].startswith("= endpoint ep-g: no changes")


def test_the_standin_refuses_what_the_workspace_refuses(ws, model, cli, tmp_path) -> None:
    """The stand-in's AI Gateway rules are real: renaming an enabled table in one PUT is a 400."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

    f = write(tmp_path, CONFIG.format(endpoint="ep-g", model=model) + GATEWAY.format(prefix="a"))
    assert cli("apply", f)[0] == 0
    w = WorkspaceClient(host=ws.url, token=PAT)
    renamed = AiGatewayInferenceTableConfig(catalog_name="main", schema_name="serving_logs", table_name_prefix="b",
                                            enabled=True)
    with pytest.raises(InvalidParameterValue, match="disable the inference table first"):
        w.serving_endpoints.put_ai_gateway("ep-g", inference_table_config=renamed)
    with pytest.raises(InvalidParameterValue, match="catalog_name and schema_name are required"):
        w.serving_endpoints.put_ai_gateway("ep-g", inference_table_config=AiGatewayInferenceTableConfig(enabled=True))


def test_legacy_auto_capture_config_is_refused_before_anything_is_sent(ws, model, cli, tmp_path) -> None:
    legacy = "auto_capture_config:\n  catalog_name: main\n  schema_name: logs\n  table_name_prefix: iris\n"
    f = write(tmp_path, CONFIG.format(endpoint="ep-l", model=model) + legacy)
    for command in ("validate", "plan", "apply"):
        rc, _, err = cli(command, f)
        assert rc == 1 and f"error: {f}:15: auto_capture_config: legacy inference tables are deprecated" in err
        assert "'inference_table: {catalog: main, schema: logs, table_prefix: iris}'" in err
    assert ws.writes == [] and ws.requests == []


def test_timeout_then_refusal_while_an_update_runs(ws, model, cli, tmp_path) -> None:
    ws.update_polls = 10_000
    f = write(tmp_path, CONFIG.format(endpoint="ep-d", model=model))
    rc = main(["endpoints", "apply", f, "--registry-uri", cli.registry_uri, "--poll-interval", "0.01",
               "--timeout", "0.2"])
    err = cli.capsys.readouterr().err
    assert rc == 1 and "endpoint ep-d: still IN_PROGRESS after" in err
    rc, _, err = cli("apply", f)
    assert rc == 1 and "an update is already in progress" in err
    assert len(ws.writes) == 1


def test_promote_with_canary_then_cut_over(ws, model, cli, tmp_path, registry_uri, scoring_server) -> None:
    ws.upstreams[model] = scoring_server
    f = write(tmp_path, CONFIG.format(endpoint="ep-e", model=model))
    assert cli("apply", f)[0] == 0

    rc, out, _ = cli("promote", "ep-e", "--alias", "champion", "--version", "2", "--canary", "10")
    assert rc == 0, out
    assert (f"canary: champion-canary serves {model} version 2 with 10% of traffic; "
            "champion keeps version 1 with 90%") in out
    assert f"alias {model}@champion not moved yet" in out
    assert f"{model}@champion resolves to version 1" in cli("plan", f)[1]  # the alias has not moved
    with Predictor.from_endpoint("ep-e", registry_uri=registry_uri) as p:  # the local registry stands in for UC
        results = [p.predict([ROW]) for _ in range(10)]
    assert Counter(r.served_model_name for r in results) == {"champion": 9, "champion-canary": 1}
    assert {tuple(iris_labels(r.predictions)) for r in results} == {("setosa",)}  # both versions answer (same weights)

    rc, out, _ = cli("promote", "ep-e", "--alias", "champion", "--version", "2")
    assert rc == 0
    assert out.splitlines() == [
        f"cut over: champion serves {model} version 2 with 100% of traffic",
        f"alias {model}@champion: 1 -> 2",
    ]
    status = cli("status", "ep-e")[1]
    assert f"answering: {model} v2 (100%)" in status and "canary" not in status
    assert cli("apply", f)[1].strip() == "= endpoint ep-e: no changes (already matches its config)"  # alias -> 2 now
    with Predictor.from_endpoint("ep-e", registry_uri=registry_uri) as p:
        result = p.predict([ROW])
    assert (result.model_name, result.model_version, result.served_model_name) == (model, "2", "champion")


def test_promote_canary_with_hold_and_bad_requests(ws, model, cli, tmp_path) -> None:
    assert cli("apply", write(tmp_path, CONFIG.format(endpoint="ep-f", model=model)))[0] == 0
    rc, out, _ = cli("promote", "ep-f", "--alias", "champion", "--version", "2", "--canary", "50", "--hold", "0")
    assert rc == 0 and out.splitlines()[0].startswith("canary: champion-canary") and "with 50%" in out
    assert f"alias {model}@champion: 1 -> 2" in out
    configs = [b for m, p, b in ws.writes if p.endswith("/config")]
    assert [[(r["served_model_name"], r["traffic_percentage"]) for r in c["traffic_config"]["routes"]]
            for c in configs] == [[("champion", 50), ("champion-canary", 50)], [("champion", 100)]]
    rc, _, err = cli("promote", "ep-f", "--alias", "champion", "--version", "9")
    assert rc == 1 and f"{model} version 9" in err and "not found" in err
    rc, _, err = cli("promote", "ep-f", "--alias", "champion", "--version", "2", "--canary", "100")
    assert rc == 1 and "between 1 and 99" in err
    rc, out, _ = cli("promote", "ep-f", "--alias", "champion", "--version", "2")
    assert rc == 0 and "already serves" in out and "already points to version 2" in out


def test_predictor_finds_the_signature_through_the_served_entity(
    ws, cli, registry_uri, scoring_server, monkeypatch
) -> None:
    import client._schema.signatures as sigs

    sigs.clear_cache()
    seen: list[str | None] = []

    def uc_is_the_local_registry(explicit: str | None = None) -> str:
        seen.append(explicit)
        return registry_uri

    monkeypatch.setattr(sigs, "resolve_registry_uri", uc_is_the_local_registry)
    ws.upstreams["main.default.iris"] = scoring_server
    rc, out, _ = cli("apply", str(ROOT / "serving_configs" / "iris.yaml"))  # the shipped demo config
    assert rc == 0 and "main.default.iris@champion resolves to version 1" in out
    with Predictor.from_endpoint("iris") as p:  # no model_uri: found via the endpoint's served entity
        sig = p.get_signature()
        result = p.predict([ROW])
        invocations = ws.invocations
        with pytest.raises(SchemaValidationError):
            p.predict([{"sepal length (cm)": "wide"}])
    assert seen == ["databricks-uc"]  # from_endpoint asked for the UC registry
    assert sig is not None and [c.name for c in sig.columns] == list(ROW)
    assert ws.invocations == invocations  # the bad row never left the client
    assert result.predictions == Predictor.from_model("models:/main.default.iris/1").predict([ROW]).predictions
    assert (result.model_name, result.model_version, result.served_model_name) == ("main.default.iris", "1", "champion")
    assert ("GET", "/api/2.0/serving-endpoints/iris") in ws.requests


def test_dead_workspace_fails_cleanly_and_quickly(monkeypatch, capsys) -> None:
    import socket

    import client.endpoints._workspace as endpoints

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setattr(endpoints, "SDK_RETRY_BUDGET", 1)
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    for var in ("CLIENT_ID", "CLIENT_SECRET", "CONFIG_PROFILE", "AUTH_TYPE"):
        monkeypatch.delenv(f"DATABRICKS_{var}", raising=False)
    assert main(["endpoints", "status", "iris"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: EndpointOperationError: reading endpoint iris:") and "Traceback" not in err
    assert PAT not in err


MONITOR = """\
monitor:
  problem_type: classification
  table: main.serving_logs.{prefix}_records
  output_schema: main.serving_monitoring
  granularities: [{granularities}]
  schedule: {{cron: '0 0 * * * ?', timezone: Europe/Paris}}
  email_on_failure: [ml@example.com]
"""


def test_the_monitor_block_becomes_a_data_profiling_monitor(ws, model, cli, tmp_path, monkeypatch) -> None:
    """plan/apply create the monitor through w.data_quality once its table exists, update only the
    fields that changed (update_mask), then have nothing to do; an SDK without the API says so."""
    base = CONFIG.format(endpoint="ep-m", model=model) + GATEWAY.format(prefix="iris_m")
    f = write(tmp_path, base + MONITOR.format(prefix="iris_m", granularities="1 hour"))
    ws.create_schema("main.serving_monitoring")
    rc, out, err = cli("plan", f)
    assert rc == 0 and "  + monitor: classification on main.serving_logs.iris_m_records; every 1 hour;" in out, err
    assert "monitor: table main.serving_logs.iris_m_records does not exist yet" in out
    rc, out, _ = cli("apply", f)  # the endpoint now; the monitor needs its table first
    assert rc == 0 and "monitor skipped: table main.serving_logs.iris_m_records does not exist yet" in out
    assert not ws.monitors

    ws.append_rows("main.serving_logs.iris_m_records", [{"request_time": "2026-12-02T10:00:00Z", "prediction": "a"}])
    rc, out, _ = cli("apply", f)
    assert rc == 0 and "monitor created on main.serving_logs.iris_m_records" in out
    [(table_id, monitor)] = ws.monitors.items()
    assert monitor["object_type"] == "table"
    cfg = monitor["data_profiling_config"]
    assert cfg["output_schema_id"] == ws.uc_object("schemas", "main.serving_monitoring")["schema_id"]
    assert cfg["inference_log"] == {
        "problem_type": "INFERENCE_PROBLEM_TYPE_CLASSIFICATION", "timestamp_column": "request_time",
        "granularities": ["AGGREGATION_GRANULARITY_1_HOUR"], "prediction_column": "prediction",
        "model_id_column": "model_version"}
    assert cfg["slicing_exprs"] == ["served_entity"]
    assert cfg["schedule"] == {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "Europe/Paris"}
    assert cfg["notification_settings"] == {"on_failure": {"email_addresses": ["ml@example.com"]}}
    assert cli("apply", f)[1].startswith("= endpoint ep-m: no changes")  # idempotent

    f = write(tmp_path, base + MONITOR.format(prefix="iris_m", granularities="1 hour, 1 day"))
    rc, out, _ = cli("plan", f)
    assert "  ~ monitor on main.serving_logs.iris_m_records: granularities -> " in out
    writes = len(ws.writes)
    assert cli("apply", f)[0] == 0
    [(method, path, _)] = ws.writes[writes:]
    assert (method, path) == ("PATCH", f"/api/data-quality/v1/monitors/table/{table_id}")
    cfg = ws.monitors[table_id]["data_profiling_config"]
    assert cfg["inference_log"]["granularities"] == ["AGGREGATION_GRANULARITY_1_HOUR", "AGGREGATION_GRANULARITY_1_DAY"]
    assert cfg["monitor_version"] == 2 and cfg["schedule"]["timezone_id"] == "Europe/Paris"  # the rest kept
    assert cli("apply", f)[1].startswith("= endpoint ep-m: no changes")

    from databricks.sdk import WorkspaceClient

    monkeypatch.delattr(WorkspaceClient, "data_quality", raising=False)  # as in databricks-sdk < 0.68
    rc, out, err = cli("plan", f)
    assert rc == 1 and err.count("\n") == 1
    assert "MonitorUnsupported: the 'monitor:' block needs databricks-sdk >= 0.68 (the data_quality API)" in err
