"""How long a fresh clone takes to its first prediction (`make demo`) and its first test (`make test`).

    .venv/bin/python benchmarks/first_run.py [--skip-test]

Clones this repository (its committed HEAD) into a temporary directory and, there:

1. runs ``make demo`` (uv venv, ``.[apps]``, ``predictor demo`` on a fresh store, Streamlit), on a
   free port, and times until a Chromium page opened on it shows the demo model's prediction
   (the form is pre-filled from the model's input example; one click on Predict);
2. in a second fresh clone, runs ``make test`` with pytest selecting its first test, and times
   until that test has run (set-up of ``.[dev]`` and collection of the whole suite included;
   Debian's Chromium is assumed installed).

Prints both times; the README's set-up section quotes them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    drop = ("PREDICTOR_", "MLFLOW_", "STREAMLIT_", "VIRTUAL_ENV", "PYTHONPATH", "DATABRICKS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def first_prediction(repo: Path, timeout: float = 300) -> float:
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**clean_env(), "STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_HEADLESS": "true"}
    log = (repo / "demo.log").open("wb")
    start = time.monotonic()
    proc = subprocess.Popen(["make", "demo"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None or time.monotonic() - start > timeout:
                raise RuntimeError(f"make demo did not come up:\n{(repo / 'demo.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(url, timeout=120_000)
            page.get_by_role("button", name="Predict").click(timeout=120_000)
            # the demo's first screen: the form pre-filled with a setosa (as test_feedback_browser checks)
            expect(page.get_by_test_id("stMetricValue")).to_have_text("setosa", timeout=120_000)
            elapsed = time.monotonic() - start
            browser.close()
        return elapsed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def first_test(repo: Path) -> float:
    """``make test``'s own steps (set-up, the Chromium, Java and PostgreSQL checks, the project's
    bytecode, pytest), pytest selecting the suite's first test."""
    env = clean_env()
    start = time.monotonic()
    subprocess.run(["make", "setup", "chromium", "java", "postgres"], cwd=repo, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([".venv/bin/python", "-m", "compileall", "-q", "client", "frontends", "tests"], cwd=repo, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                    "test_all_is_sorted_and_importable"], cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("demo", "test"):
            if name == "test" and "--skip-test" in sys.argv:
                continue
            repo = Path(tmp) / name
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
            if name == "demo":
                print(f"fresh clone -> make demo -> first prediction in the browser: {first_prediction(repo):.1f} s")
            else:
                print(f"fresh clone -> make test -> first test run: {first_test(repo):.1f} s")


if __name__ == "__main__":
    main()
