"""The CI/CD files, proven statically (they cannot run here): every workflow passes actionlint;
every command a workflow runs exists (make targets, predictor subcommands and flags, databricks
bundle verbs, targets and app keys, scripts); jobs sign in with GitHub OIDC and no stored secret;
every bundle target is well formed (and, where the Databricks CLI is installed, validates against
its bundle JSON schema)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.local.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
#: Commands a workflow may run that need no check of their own.
PLAIN = {"echo", "python", "pip", "test", "cat", "ls"}
BUNDLE_VERBS = {"validate", "deploy", "run", "destroy", "summary", "schema", "init", "sync", "generate"}


def actionlint() -> str:
    found = Path(sys.executable).with_name("actionlint")
    path = str(found) if found.exists() else shutil.which("actionlint")
    assert path, "actionlint is missing: `make setup` installs it (dev extras)"
    return path


def test_there_are_the_three_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["cd.yml", "ci.yml", "promote.yml"]


def test_every_workflow_passes_actionlint() -> None:
    run = subprocess.run([actionlint(), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                         cwd=ROOT)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_actionlint_does_catch_a_broken_workflow() -> None:
    bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    permissions:\n      id-token: writ\n" \
          "    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n"
    run = subprocess.run([actionlint(), "-no-color", "-"], input=bad, capture_output=True, text=True)
    assert run.returncode == 1 and '"writ" is invalid' in run.stdout and "potentially untrusted" in run.stdout


# --- the commands the workflows run ---------------------------------------------------------------


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _check_predictor(args: list[str]) -> list[str]:
    parser, used = build_parser(), ["predictor"]
    while (subs := _subparsers(parser)) and args and not args[0].startswith("-"):
        if args[0] not in subs:
            return [f"{' '.join(used)} has no subcommand {args[0]!r} (has: {', '.join(sorted(subs))})"]
        parser = subs[args[0]]
        used.append(args.pop(0))
    flags = {o for a in parser._actions for o in a.option_strings}
    return [f"{' '.join(used)} has no option {a}" for a in args if a.startswith("--") and a.split("=")[0] not in flags]


def _check_databricks(args: list[str]) -> list[str]:
    if args[:1] != ["bundle"]:
        return [f"databricks {' '.join(args[:1])}: only bundle commands are expected"]
    if len(args) < 2 or args[1] not in BUNDLE_VERBS:
        return [f"databricks bundle has no command {args[1:2]}"]
    problems = []
    targets = set(BUNDLE.get("targets") or {})
    for flag, value in pairwise(args):
        if flag in ("-t", "--target") and value not in targets and value != "EXPR":  # EXPR: an input
            problems.append(f"databricks.yml has no target {value!r} (has: {', '.join(sorted(targets))})")
    if args[1] == "run":
        keys = {k for kind in ("apps", "jobs", "pipelines") for k in (BUNDLE["resources"].get(kind) or {})}
        positional = [a for i, a in enumerate(args[2:], 2) if not a.startswith("-") and args[i - 1] not in ("-t",
                                                                                                           "--target")]
        problems += [f"databricks bundle run: no app or job {k!r} in databricks.yml" for k in positional
                     if k not in keys]
    return problems


def check_command(words: list[str]) -> list[str]:
    """Why this command would fail for lack of a target, subcommand, option or file ([] when fine)."""
    while (words and words[0] in ("sudo", "env")) or (words and "=" in words[0] and not words[0].startswith("-")):
        words = words[1:]
    if not words:
        return []
    cmd, args = words[0], words[1:]
    if cmd == "make":
        return [f"Makefile has no target {t!r}" for t in args if not t.startswith("-") and "=" not in t
                and t not in _make_targets()]
    if cmd == "predictor":
        return _check_predictor(list(args))
    if cmd == "databricks":
        return _check_databricks(list(args))
    if cmd in ("bash", "sh") or cmd.startswith("./") or (cmd == "python" and args and args[0].endswith(".py")):
        script = cmd if cmd.startswith("./") else args[0]
        return [] if (ROOT / script).exists() else [f"no script {script} in the repository"]
    if cmd == "python" and args[:2] == ["-m", "pip"]:
        return []
    return [] if cmd in PLAIN else [f"unexpected command {cmd!r}"]


def _commands(script: str) -> list[list[str]]:
    text = re.sub(r"\$\{\{.*?\}\}", "EXPR", script).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            if part.strip() and not part.strip().startswith("#"):
                out.append(shlex.split(part))
    return out


def _matrix(job: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of the job's matrix (``[{}]`` without one)."""
    combos: list[dict[str, str]] = [{}]
    for key, values in ((job.get("strategy") or {}).get("matrix") or {}).items():
        if isinstance(values, list):
            combos = [{**c, key: str(v)} for c in combos for v in values]
    return combos


def workflow_problems(workflow: dict[str, Any]) -> list[str]:
    """What :func:`check_command` finds in every ``run:`` (``${{ matrix.x }}`` is each of its values)."""
    problems = []
    for job_name, job in (workflow.get("jobs") or {}).items():
        for combo in _matrix(job):
            for step in job.get("steps") or []:
                script = step.get("run") or ""
                for key, value in combo.items():
                    script = re.sub(r"\$\{\{\s*matrix\." + key + r"\s*\}\}", value, script)
                for words in _commands(script):
                    problems += [f"{job_name}: {p}" for p in check_command(words)]
    return list(dict.fromkeys(problems))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_command_a_workflow_runs_exists(path: Path) -> None:
    assert workflow_problems(yaml.safe_load(path.read_text())) == []


def test_a_missing_target_subcommand_option_or_script_is_caught() -> None:
    broken = {"jobs": {"j": {"steps": [
        {"run": "make setup lints"},
        {"run": "predictor rolout x.yaml"},
        {"run": "predictor rollout x.yaml --challenger c --canary-steps 5"},
        {"run": "databricks bundle deploy -t qa && databricks bundle run predictor_dash -t prod"},
        {"run": "bash scripts/deploy.sh"},
        {"run": "databricks bundle launch -t dev"},
    ]}}}
    assert workflow_problems(broken) == [
        "j: Makefile has no target 'lints'",
        "j: predictor has no subcommand 'rolout' (has: batch, demo, endpoints, feedback, monitor, predict, rollout, "
        "schema, serve)",
        "j: predictor rollout has no option --canary-steps",
        "j: databricks.yml has no target 'qa' (has: dev, prod, staging)",
        "j: databricks bundle run: no app or job 'predictor_dash' in databricks.yml",
        "j: no script scripts/deploy.sh in the repository",
        "j: databricks bundle has no command ['launch']",
    ]


def test_workspace_jobs_sign_in_with_github_oidc_and_no_stored_secret() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        assert "secrets." not in text and "DATABRICKS_TOKEN" not in text, path.name
        for name, job in yaml.safe_load(text)["jobs"].items():
            runs = " ".join(s.get("run") or "" for s in job["steps"])
            if not re.search(r"\bdatabricks |predictor (rollout|predict)", runs):
                continue
            assert job["permissions"]["id-token"] == "write", (path.name, name)
            assert job["env"]["DATABRICKS_AUTH_TYPE"] == "github-oidc", (path.name, name)
            assert set(job["env"]) >= {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID"}, (path.name, name)


def test_pull_requests_validate_every_target_and_production_waits_for_approval() -> None:
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    assert set(ci["jobs"]["bundle-validate"]["strategy"]["matrix"]["target"]) == set(BUNDLE["targets"])
    cd = yaml.safe_load((ROOT / ".github/workflows/cd.yml").read_text())
    assert cd[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as True
    assert (cd["jobs"]["prod"]["environment"], cd["jobs"]["prod"]["needs"]) == ("prod", "staging")
    apps = set(BUNDLE["resources"]["apps"])
    for job in ("staging", "prod"):
        runs = [s.get("run", "") for s in cd["jobs"][job]["steps"]]
        assert {f"databricks bundle run {a} -t {job}" for a in apps} <= set(runs)  # deploy alone restarts no app
        assert any(r.startswith("predictor predict --endpoint") for r in runs)


# --- the bundle's targets --------------------------------------------------------------------------


def merged(target: str) -> dict[str, Any]:
    """The bundle as ``-t target`` sees it: the target's mappings merged over the top level."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), over[k]) if k in over else base[k] for k in {**base, **over}}
        return over

    top = {k: v for k, v in BUNDLE.items() if k != "targets"}
    override = dict(BUNDLE["targets"][target])
    for key in ("mode", "default", "presets"):
        override.pop(key, None)
    variables = override.pop("variables", {})
    out = merge(top, override)
    for name, value in variables.items():
        out["variables"][name] = {**out["variables"][name], "default": value}
    return out


def test_targets_dev_staging_prod_with_their_own_names_and_paths() -> None:
    targets = BUNDLE["targets"]
    assert set(targets) == {"dev", "staging", "prod"}
    assert targets["dev"]["mode"] == "development" and targets["dev"]["default"] is True
    assert "name_prefix" in targets["dev"]["presets"]
    assert targets["staging"]["mode"] == targets["prod"]["mode"] == "production"
    seen: dict[str, set[str]] = {}
    for name in targets:
        b = merged(name)
        for kind in ("model_serving_endpoints", "apps", "experiments"):
            for key in (targets[name].get("resources") or {}).get(kind) or {}:
                assert key in BUNDLE["resources"][kind], f"target {name} overrides unknown {kind}.{key}"
        names = {r["name"] for kind in ("model_serving_endpoints", "apps", "experiments")
                 for r in b["resources"][kind].values()}
        for other, other_names in seen.items():
            if {name, other} != {"dev", "prod"} or "presets" not in targets["dev"]:
                assert not names & other_names, f"{name} and {other} share {names & other_names}"
        seen[name] = names
        assert b["workspace"]["root_path"].endswith(f"/{name}")
        endpoint = b["variables"]["serving_endpoint"]["default"]
        served = {r["name"] for r in b["resources"]["model_serving_endpoints"].values()}
        assert endpoint in served or name == "dev", f"target {name}: the apps query {endpoint}, not deployed"
    for name in ("staging", "prod"):
        assert {p["level"] for p in targets[name]["permissions"]} == {"CAN_MANAGE", "CAN_VIEW"}


def _cli_schema() -> dict[str, Any]:
    cli = shutil.which("databricks")
    if cli is None:
        pytest.skip("the Databricks CLI is not installed here (CI's bundle-validate job runs it per target)")
    out = subprocess.run([cli, "bundle", "schema"], capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)


@pytest.mark.parametrize("target", sorted(BUNDLE["targets"]))
def test_every_target_validates_against_the_cli_bundle_schema(target: str) -> None:
    import jsonschema

    schema = _cli_schema()
    jsonschema.validate(BUNDLE, schema)
    jsonschema.validate(merged(target), schema)
