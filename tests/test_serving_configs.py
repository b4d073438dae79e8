"""serving_configs/*.yaml: validation errors with lines, the plan diff, the SDK wire form, and
databricks.yml kept consistent with the files. No workspace, no registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from client import ConfigurationError
from client.endpoints import (
    EntityState,
    ServingConfigError,
    bundle_resources,
    check_bundle,
    diff,
    load_config,
    parse_config,
    resolve,
)
from client.endpoints._diff import gateway_config, served_entities, traffic_config
from client.local.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "serving_configs").glob("*.yaml"))

GOOD = """\
name: iris-classifier
served_entities:
  - name: champion
    entity_name: main.default.iris
    alias: champion
    workload_size: Small
    scale_to_zero_enabled: true
  - name: challenger
    entity_name: main.default.iris
    entity_version: 2
traffic:
  champion: 90
  challenger: 10
tags:
  team: ml
"""


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ServingConfigError) as info:
        parse_config(text, "x.yaml")
    assert isinstance(info.value, ConfigurationError)
    return info.value.problems


def test_good_file_parses_and_pins_versions() -> None:
    cfg = parse_config(GOOD)
    versions = {"champion": "4"}
    desired = resolve(cfg, lambda model, alias, version: versions[alias] if alias else str(version))
    assert desired.entities["champion"].entity_version == "4"
    assert desired.entities["challenger"].entity_version == "2"
    challenger = desired.entities["challenger"]
    assert challenger.workload_type == "CPU" and not challenger.scale_to_zero_enabled  # the defaults
    assert desired.aliases == {"champion": ("main.default.iris", "champion", "4")}
    assert desired.traffic == {"champion": 90, "challenger": 10}


def test_field_errors_point_at_their_line() -> None:
    bad = GOOD.replace("workload_size: Small", "workload_size: small").replace("challenger: 10", "challenger: 20")
    bad = bad.replace("    entity_version: 2\n", "    entity_version: 2\n    alias: new\n")
    found = problems(bad)
    assert (6, "served_entities.0.workload_size", "Input should be 'Small', 'Medium' or 'Large'") in found
    lines = {loc: line for line, loc, _ in found}
    assert lines["served_entities.1"] == 8  # both alias and entity_version: the entity's first line
    assert "traffic" not in lines  # cross-field checks wait until every field has the right shape
    fixed = bad.replace("    alias: new\n", "").replace("small", "Small")
    assert problems(fixed) == [(12, "traffic", "percentages sum to 110, not 100")]


def test_unknown_keys_types_and_references() -> None:
    text = GOOD.replace("  team: ml", "  team: ml\n  cost_center: 42").replace("scale_to_zero_enabled", "scale_to_zero")
    found = problems(text)
    assert (7, "served_entities.0.scale_to_zero", "Extra inputs are not permitted") in found
    assert (16, "tags.cost_center", "Input should be a valid string") in found
    found = problems(GOOD.replace("  challenger: 10", "  challengr: 10"))
    assert (13, "traffic.challengr", "no served entity named 'challengr' (have: champion, challenger)") in found
    assert any("'challenger' (served_entities.1) has no traffic entry" in msg for _, _, msg in found)
    found = problems(GOOD.replace("- name: challenger", "- name: champion"))
    assert (8, "served_entities.1.name", "served entity name 'champion' is used twice") in found
    found = problems(GOOD.replace("entity_name: main.default.iris\n    alias", "entity_name: iris\n    alias"))
    assert [(ln, loc) for ln, loc, _ in found] == [(4, "served_entities.0.entity_name")]
    found = problems(GOOD.replace("workload_size: Small", "workload_type: TPU"))
    assert found[0][:2] == (6, "served_entities.0.workload_type") and "GPU_SMALL" in found[0][2]


def test_yaml_syntax_and_duplicate_keys() -> None:
    assert problems(GOOD.replace("traffic:\n", "traffic: [\n"))[0][0] >= 11
    found = problems(GOOD + "name: other\n")
    assert (16, "name", "duplicate key") in found
    assert problems("- just\n- a list\n") == [(1, "", "expected a mapping with 'name' and 'served_entities'")]


def test_plaintext_secret_in_env_vars_is_refused_and_not_echoed() -> None:
    text = GOOD.replace("    entity_version: 2\n", "    entity_version: 2\n    environment_vars:\n"
                        "      OPENAI_API_KEY: sk-PLAINTEXT-123\n      LOG_LEVEL: debug\n")
    with pytest.raises(ServingConfigError) as info:
        parse_config(text, "x.yaml")
    assert info.value.problems[0][:2] == (12, "served_entities.1.environment_vars.OPENAI_API_KEY")
    assert "sk-PLAINTEXT-123" not in str(info.value)
    ok = text.replace("sk-PLAINTEXT-123", "'{{secrets/ml/openai}}'")
    assert dict(resolve(parse_config(ok), None).entities["challenger"].environment_vars)["LOG_LEVEL"] == "debug"


def test_cli_validate_prints_file_line_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace("challenger: 10", "challenger: 5"))
    assert main(["endpoints", "validate", "--offline", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"error: {f}:12: traffic: percentages sum to 95, not 100" in err
    assert main(["endpoints", "validate", "--offline", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read serving config" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert sum((cfg.traffic or {cfg.served_entities[0].name: 100}).values()) == 100


def test_shipped_configs_cover_the_demo_and_an_ab_test() -> None:
    cfgs = [load_config(p) for p in CONFIGS]
    demo = [c for c in cfgs if any(e.entity_name == "main.default.iris" and e.alias == "champion"
                                   and e.scale_to_zero_enabled and e.workload_type == "CPU" for e in c.served_entities)]
    assert demo, "no scale-to-zero CPU endpoint for main.default.iris@champion"
    ab = [c for c in cfgs if c.traffic and len(c.traffic) >= 2 and {"champion", "challenger"} <= set(c.traffic)]
    assert ab and all(0 < p < 100 for p in ab[0].traffic.values())  # type: ignore[union-attr]


def test_wire_form_is_built_from_sdk_types() -> None:
    from databricks.sdk.service.serving import ServedEntityInput, ServingModelWorkloadType, TrafficConfig

    desired = resolve(parse_config(GOOD), lambda m, a, v: "4" if a else str(v))
    entities = served_entities(desired)
    assert all(isinstance(e, ServedEntityInput) for e in entities)
    assert entities[0].workload_type is ServingModelWorkloadType.CPU
    assert entities[0].as_dict() == {
        "entity_name": "main.default.iris", "entity_version": "4", "name": "champion",
        "scale_to_zero_enabled": True, "workload_size": "Small", "workload_type": "CPU",
    }
    routes = traffic_config(desired)
    assert isinstance(routes, TrafficConfig)
    assert routes.as_dict() == {"routes": [{"served_model_name": "champion", "traffic_percentage": 90},
                                           {"served_model_name": "challenger", "traffic_percentage": 10}]}


def test_diff_reads_like_a_plan() -> None:
    desired = resolve(parse_config(GOOD), lambda m, a, v: "4" if a else str(v))
    created = diff(None, desired)
    assert created.action == "create" and created.lines == [
        "+ served entity champion: main.default.iris version 4, Small CPU, scale to zero",
        "+ served entity challenger: main.default.iris version 2, Small CPU",
        "+ traffic: champion 90%, challenger 10%",
        "+ tags: team=ml",
    ]
    assert "main.default.iris@champion resolves to version 4" in created.text()
    assert diff(desired, desired).action == "none" and not diff(desired, desired).lines
    older = dict(desired.entities)
    older["champion"] = EntityState("champion", "main.default.iris", "3", "Small", "CPU", True)
    del older["challenger"]
    current = type(desired)(desired.name, older, {"champion": 100}, {"team": "ml", "old": "x"})
    plan = diff(current, desired)
    assert plan.action == "update" and plan.core and plan.tags and not plan.ai_gateway
    assert plan.lines == [
        "~ served entity champion:",
        "    entity_version: '3' -> '4'",
        "+ served entity challenger: main.default.iris version 2, Small CPU",
        "~ traffic: challenger 0% -> 10%, champion 100% -> 90%",
        "~ tags: -old",
    ]


def test_databricks_yml_matches_serving_configs() -> None:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    configs = [load_config(p) for p in CONFIGS]
    assert check_bundle(bundle, configs) == []
    endpoints = {c.name for c in configs}
    assert bundle["variables"]["serving_endpoint"]["default"] in endpoints  # the apps query a shipped endpoint
    assert main(["endpoints", "bundle", *map(str, CONFIGS), "--check", str(ROOT / "databricks.yml")]) == 0


def test_bundle_check_catches_drift() -> None:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    configs = [load_config(p) for p in CONFIGS]
    resources, variables = bundle_resources(configs)
    key = next(iter(resources))
    bundle["resources"]["model_serving_endpoints"][key]["config"]["traffic_config"]["routes"][0][
        "traffic_percentage"] = 1
    var = next(iter(variables))
    bundle["variables"][var]["default"] = "latest"
    assert check_bundle(bundle, configs) == [
        f"resources.model_serving_endpoints.{key} differs from its serving config",
        f"variables.{var}.default must be a version number, got 'latest'",
    ]
    del bundle["resources"]["model_serving_endpoints"][key]
    assert f"resources.model_serving_endpoints.{key} is missing" in check_bundle(bundle, configs)


def test_cli_help_imports_no_sdk_or_mlflow() -> None:
    code = (
        "import sys, contextlib, io\nfrom client.local.cli import build_parser\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    build_parser().parse_args(['endpoints', 'apply', '--help'])\n"
        "print([m for m in ('mlflow', 'databricks.sdk', 'client.endpoints._workspace', 'client.endpoints._config',"
        " 'yaml') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


GATEWAY = GOOD + """\
inference_table:
  catalog: main
  schema: serving_logs
  table_prefix: iris
usage_tracking: true
"""


def test_ai_gateway_fields_parse_and_reach_the_wire_form() -> None:
    from databricks.sdk.service.serving import AiGatewayConfig, AiGatewayGuardrails, AiGatewayInferenceTableConfig

    desired = resolve(parse_config(GATEWAY), lambda m, a, v: "4" if a else str(v))
    assert str(desired.inference_table) == "main.serving_logs, prefix iris" and desired.usage_tracking
    assert diff(None, desired).lines[-2:] == [
        "+ inference table: main.serving_logs, prefix iris", "+ usage tracking: on"]
    gw = gateway_config(desired, None)
    assert isinstance(gw.inference_table_config, AiGatewayInferenceTableConfig)
    assert gw.as_dict() == {
        "inference_table_config": {"catalog_name": "main", "schema_name": "serving_logs",
                                   "table_name_prefix": "iris", "enabled": True},
        "usage_tracking_config": {"enabled": True},
    }
    # What the file does not manage stays; what it dropped is switched off, not left on.
    guard = AiGatewayGuardrails.from_dict({"input": {"safety": True}})
    current = AiGatewayConfig(guardrails=guard, inference_table_config=gw.inference_table_config,
                              usage_tracking_config=gw.usage_tracking_config)
    plain = resolve(parse_config(GOOD), lambda m, a, v: "4" if a else str(v))
    off = gateway_config(plain, current)
    assert off.guardrails is guard
    assert off.as_dict()["inference_table_config"] == {"enabled": False}
    assert off.as_dict()["usage_tracking_config"] == {"enabled": False}
    assert gateway_config(plain, None).as_dict() == {}
    assert diff(desired, plain).lines == [
        "~ inference table: main.serving_logs, prefix iris -> none", "~ usage tracking: on -> off"]
    assert diff(desired, plain).ai_gateway and not diff(desired, plain).core


def test_inference_table_errors_and_legacy_auto_capture() -> None:
    found = problems(GATEWAY.replace("  table_prefix: iris\n", "").replace("schema: serving_logs", "schema: a.b"))
    assert (18, "inference_table.schema", "String should match pattern '^[A-Za-z0-9_`-]+$'") in found
    assert (17, "inference_table.table_prefix", "Field required") in found  # the table's first line
    legacy = GOOD + "auto_capture_config:\n  catalog_name: main\n  schema_name: logs\n  enabled: true\n"
    [(line, loc, msg)] = problems(legacy)
    assert (line, loc) == (17, "auto_capture_config")
    assert msg.startswith("legacy inference tables are deprecated and unsupported since 2026-03-20")
    assert "'inference_table: {catalog: main, schema: logs, table_prefix: <prefix>}'" in msg


def test_bundle_carries_the_ai_gateway() -> None:
    resources, _ = bundle_resources([parse_config(GATEWAY)])
    gateway = resources["iris_classifier"]["ai_gateway"]
    assert gateway["inference_table_config"]["table_name_prefix"] == "iris"
    assert gateway["usage_tracking_config"] == {"enabled": True}
    assert "ai_gateway" not in bundle_resources([parse_config(GOOD)])[0]["iris_classifier"]


MONITORED = GATEWAY + """\
monitor:
  problem_type: classification
  output_schema: main.serving_monitoring
  granularities: [1 hour, 1 day]
  baseline_table: main.default.iris_training
  schedule:
    cron: 0 0 * * * ?
  email_on_failure: [ml-team@example.com]
"""


def test_a_monitor_block_fills_its_defaults_from_the_inference_table() -> None:
    m = resolve(parse_config(MONITORED), lambda m, a, v: "4" if a else str(v)).monitor
    assert m is not None and str(m) == (
        "classification on main.serving_logs.iris_records; every 1 hour, 1 day; metrics in main.serving_monitoring; "
        "baseline main.default.iris_training; sliced by served_entity; schedule '0 0 * * * ?' UTC; "
        "failures to ml-team@example.com")
    assert (m.timestamp_column, m.prediction_column, m.model_id_column) == ("request_time", "prediction",
                                                                          "model_version")
    assert resolve(parse_config(GATEWAY), None).monitor is None


def test_monitor_errors_point_at_their_line() -> None:
    found = problems(MONITORED.replace("classification", "ranking").replace("1 day]", "2 days]")
                     .replace("ml-team@example.com", "ml-team") + "  slice_by: served_entity\n")
    assert [(line, loc) for line, loc, _ in found] == [
        (22, "monitor.problem_type"), (24, "monitor.granularities.1"), (28, "monitor.email_on_failure"),
        (29, "monitor.slice_by")]
    assert found[3][2] == "Extra inputs are not permitted"  # a wrong key is an error at its line
    no_table = problems(GOOD + "monitor: {problem_type: regression, output_schema: main.mon}\n")
    assert no_table == [(16, "monitor", "a monitor needs 'table' (the unpacked records table) or an "
                                        "'inference_table' to take it from (<catalog>.<schema>.<prefix>_records)")]


def test_the_bundle_carries_the_monitor_as_a_quality_monitor() -> None:
    from client.endpoints import monitor_resources

    [(key, monitor)] = monitor_resources([parse_config(MONITORED)]).items()
    assert key == "iris_classifier_monitor"
    assert monitor == {
        "assets_dir": "/Workspace/Shared/predictor-monitors/iris-classifier",
        "baseline_table_name": "main.default.iris_training",
        "inference_log": {"granularities": ["1 hour", "1 day"], "model_id_col": "model_version",
                          "prediction_col": "prediction", "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
                          "timestamp_col": "request_time"},
        "notifications": {"on_failure": {"email_addresses": ["ml-team@example.com"]}},
        "output_schema_name": "main.serving_monitoring",
        "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"},
        "slicing_exprs": ["served_entity"],
        "table_name": "main.serving_logs.iris_records",
    }
    shipped = [load_config(p) for p in CONFIGS]
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    assert bundle["resources"]["quality_monitors"] == monitor_resources(shipped) != {}
    bundle["resources"]["quality_monitors"]["iris_ab_monitor"]["inference_log"]["granularities"] = ["1 day"]
    assert check_bundle(bundle, shipped) == [
        "resources.quality_monitors.iris_ab_monitor differs from its serving config"]
