"""The ``predictor`` command line on bad input: one line naming what is wrong, exit status 2 for a
usage error and 1 for a failure while running, never a traceback unless ``--debug``/``-v`` asks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from client.local.cli import main

IRIS = "models:/main.default.iris@champion"


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(("argv", "named"), [
    (["serve", "models:/bad", "--name", "x"], "model URI 'models:/bad'"),
    (["serve", IRIS, "--name", "x", "--port", "99999"], "--port: '99999'"),
    (["serve", IRIS, "--name", "x", "--port", "http"], "--port: 'http'"),
    (["predict", "--model", "models:/a.b.c/latest", "--json", "[]"], "--model"),
    (["predict", "--url", "http://127.0.0.1:9/invocations", "--json", "[]", "--params", "{x"],
     "--params: not valid JSON"),
    (["batch", "in.csv", "out", "--url", "http://127.0.0.1:9/invocations", "--params", "{x"], "--params"),
    (["batch", "in.csv", "out", "--url", "http://127.0.0.1:9/invocations", "--params", "[1]"], "a JSON object"),
    (["feedback", "summary", "--model", IRIS, "--max-traces", "-5"], "--max-traces: '-5' must be at least 1"),
    (["feedback", "summary", "--model", IRIS, "--days", "0"], "--days: '0'"),
    (["feedback", "summary", "--model", "iris"], "must start with 'models:/'"),
    (["endpoints", "apply", "x.yaml", "--timeout", "-1"], "--timeout: '-1'"),
    (["no-such-command"], "invalid choice"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert named in _one_line(captured.err)
    assert captured.out == ""


def test_a_runtime_failure_is_one_line_and_exit_1_and_debug_shows_the_traceback(
        registry_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "models:/main.default.no_such_model@champion", "--name", "x", "--registry-uri", registry_uri]
    assert main(argv) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and "no_such_model" in line
    with pytest.raises(Exception, match="no_such_model"):
        main([*argv, "--debug"])


def test_feedback_summary_on_an_empty_directory_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DATABRICKS_HOST", "PREDICTOR_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["feedback", "summary", "--model", IRIS]) == 0
    assert "nothing traced yet" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no .predictor/mlflow.db made by a read-only command


def test_feedback_summary_with_the_store_down_fails_in_bounded_time_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_"))}
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "client.local", "feedback", "summary", "--model", IRIS],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _one_line(proc.stderr).startswith("error: ")
    assert elapsed < 120  # MLflow's own retries took over four minutes; a loaded machine's start takes some
