"""Both apps in a real browser beside each framework's hello-world floor, reported as ratios (one run).

For Streamlit and Gradio, in one run: a hello-world app of the framework (one number field, a
Predict button, written to a temp dir; the issue's floor), the same hello-world with the four iris
fields and one raw httpx call to the demo model's scoring server (what calling the model costs a
page at the least; ratios to it in their own column), then our app in direct mode (the demo model loaded in
process) and in endpoint mode (MLflow's scoring server for the demo model on loopback, reached
by URL; the signature from the registry), every one started the same way (Streamlit with
``app.yaml``'s command and variables, Gradio with ``python <file>``; the launcher of
tests/_browser.py) and driven by Debian's Chromium through Playwright. Measured:

- cold start: process start -> the first form field visible and editable in a page opened as
  soon as the server answers its health route;
- endpoint by name: the same scoring server behind tests/workspace_standin.py, run in its own
  process (a serving endpoint ``iris`` with its ``/openapi`` document), the app configured as a
  Databricks App is (``PREDICTOR_ENDPOINT``; ``DATABRICKS_HOST``, ``DATABRICKS_WORKSPACE_ID`` and
  its service principal's ``DATABRICKS_CLIENT_ID``/``DATABRICKS_CLIENT_SECRET``, no PAT: the SDK
  gets OAuth M2M tokens from the stand-in's OIDC endpoint): the signature comes from the endpoint,
  no MLflow in the app. The secret is random per run, passed through the environment only, and
  the logs the run writes are checked not to contain it;
- click -> answer: a pointer-down on Predict -> the expected prediction shown, timed inside the
  page (``performance.now()``, checked every animation frame). Inputs are distinct (no cache hit)
  and alternate between iris classes, so each answer changes the text on the page. One warm-up
  click first, not counted.

Rounds are interleaved (floor, direct, endpoint, floor, ...); ratios are to the floor's figures
over the same rounds.

    .venv/bin/python benchmarks/apps.py [--rounds 2] [--clicks 10] [--only streamlit|gradio]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _browser import CHROMIUM, free_port, launch_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# (petal length, petal width) typical of each class; the sepal length makes every input distinct.
CLASS_PETALS = [(1.4, 0.2), (4.5, 1.4), (6.0, 2.3)]

STREAMLIT_FLOOR = '''
import streamlit as st

with st.form("predict-form"):
    x = st.number_input("x", value=None, placeholder="required")
    submitted = st.form_submit_button("Predict", type="primary")
if submitted:
    st.metric("Prediction", f"{(x or 0) * 2:g}")
'''

GRADIO_FLOOR = '''
import os

import gradio as gr

with gr.Blocks() as demo:
    x = gr.Number(label="x")
    button = gr.Button("Predict", variant="primary")
    out = gr.Textbox(label="Prediction", interactive=False)
    button.click(lambda v: f"{(v or 0) * 2:g}", x, out)

demo.launch(server_name=os.environ["GRADIO_SERVER_NAME"], server_port=int(os.environ["DATABRICKS_APP_PORT"]))
'''

# The same hello-worlds with the iris form and one call to the same model (raw httpx, no SDK, nothing
# else on the page): what a page that calls the model costs at the very least in each framework.
# frontends/core/proba.py (pure, stdlib only) turns the answer into the text our apps show.
STREAMLIT_FLOOR_MODEL = '''
import os

import httpx
import streamlit as st

from frontends.core.proba import prediction_label, single_prediction

NAMES = %r


@st.cache_resource
def http() -> httpx.Client:
    return httpx.Client()


with st.form("predict-form"):
    values = {n: st.number_input(n, value=None, placeholder="required") for n in NAMES}
    submitted = st.form_submit_button("Predict", type="primary")
if submitted:
    answer = http().post(os.environ["FLOOR_MODEL_URL"], json={"dataframe_records": [values]}).json()
    st.metric("Prediction", str(prediction_label(single_prediction(answer["predictions"]))))
'''

GRADIO_FLOOR_MODEL = '''
import os

import gradio as gr
import httpx

from frontends.core.proba import prediction_label, single_prediction

NAMES = %r
http = httpx.AsyncClient()


async def predict(*values):
    answer = (await http.post(os.environ["FLOOR_MODEL_URL"],
                              json={"dataframe_records": [dict(zip(NAMES, values))]})).json()
    return str(prediction_label(single_prediction(answer["predictions"])))


with gr.Blocks() as demo:
    fields = [gr.Number(label=n) for n in NAMES]
    button = gr.Button("Predict", variant="primary")
    out = gr.Textbox(label="Prediction", interactive=False)
    button.click(predict, fields, out)

demo.launch(server_name=os.environ["GRADIO_SERVER_NAME"], server_port=int(os.environ["DATABRICKS_APP_PORT"]))
'''

# The prediction as shown: Streamlit's metric value, Gradio's "Prediction" textbox.
SHOWN_JS = {
    "streamlit": "() => { const e = document.querySelector('[data-testid=stMetricValue]');"
                 " return e ? e.textContent.trim() : null; }",
    "gradio": "() => { for (const l of document.querySelectorAll('label')) {"
              " const t = l.querySelector('textarea, input');"
              " if (t && l.textContent.trim().startsWith('Prediction')) return t.value.trim(); }"
              " return null; }",
}


@dataclass
class Variant:
    kind: str  # streamlit | gradio
    name: str  # floor | floor-model | direct | endpoint | endpoint-by-name
    cold: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    #: the app server's own CPU time (user + system): up to form ready, and per counted click
    cold_cpu: list[float] = field(default_factory=list)
    click_cpu: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        names = {"floor": "hello-world floor", "floor-model": "hello-world + model call"}
        return f"{self.kind} {names.get(self.name) or self.name.replace('-', ' ')}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_file.close()  # type: ignore[attr-defined]


def wait_http(proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def inputs(n: int, floor: bool) -> list[tuple[dict[str, float], str | None]]:
    """``n`` distinct inputs and, for the floor, the answer it shows (ours come from the model)."""
    out: list[tuple[dict[str, float], str | None]] = []
    for i in range(n):
        if floor:
            x = round(1.5 + 0.25 * i, 2)
            out.append(({"x": x}, f"{x * 2:g}"))
        else:
            petal_len, petal_wid = CLASS_PETALS[i % 3]
            out.append(({IRIS[0]: round(5.0 + 0.01 * i, 2), IRIS[1]: 3.0, IRIS[2]: petal_len, IRIS[3]: petal_wid},
                        None))
    return out


def expected_from_server(scoring: str, rows: list[dict[str, float]]) -> list[str]:
    from frontends.core.session import format_prediction

    r = httpx.post(f"{scoring}/invocations", json={"dataframe_records": rows}, timeout=60)
    r.raise_for_status()
    return [format_prediction([p]) for p in r.json()["predictions"]]


def run_variant(browser: Any, v: Variant, script: Path | None, env: dict[str, str], logs: Path,
                cases: list[tuple[dict[str, float], str]]) -> None:
    log = logs / f"{v.kind}-{v.name}-{len(v.cold)}.log"
    started = time.perf_counter()
    server = launch_app(v.kind, env, log, script)
    proc, url = server.proc, server.url
    try:
        wait_http(proc, url + ("/_stcore/health" if v.kind == "streamlit" else "/"), log)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=180_000)
        first = page.get_by_label(next(iter(cases[0][0])), exact=True)
        first.wait_for(state="visible", timeout=180_000)
        while not first.is_editable():
            page.wait_for_timeout(10)
        v.cold.append(time.perf_counter() - started)
        v.cold_cpu.append(cpu_seconds(proc.pid))
        button = page.get_by_role("button", name="Predict")
        for i, (values, want) in enumerate(cases):
            if i == 1:
                cpu_before = cpu_seconds(proc.pid)
            for name, value in values.items():
                page.get_by_label(name, exact=True).fill(str(value))
            page.evaluate("() => { window.__t0 = null; document.addEventListener('pointerdown',"
                          " () => { window.__t0 = performance.now(); }, {capture: true, once: true}); }")
            button.click()
            done = page.wait_for_function(
                f"want => {{ const got = ({SHOWN_JS[v.kind]})(); "
                "return got === want && window.__t0 !== null ? performance.now() - window.__t0 : false; }",
                arg=want, polling="raf", timeout=120_000)
            if i:  # the first click is a warm-up
                v.clicks.append(float(done.json_value()) / 1000)
        v.click_cpu.append((cpu_seconds(proc.pid) - cpu_before) / (len(cases) - 1))
        page.close()
    finally:
        server.stop()


def start_scoring(registry: str, logs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = open(logs / "scoring.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "client.local", "serve", "models:/main.default.iris@champion",
                             "--name", "iris", "--port", str(port), "--registry-uri", registry],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log_file = out  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, url + "/ping", logs / "scoring.log")
    return proc, url


def iris_openapi() -> dict[str, Any]:
    """What a workspace's ``/openapi`` says of the iris endpoint's request body (records form)."""
    record = {"type": "object", "required": IRIS,
              "properties": {name: {"type": "number", "format": "double"} for name in IRIS}}
    body = {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": record}}}
    return {"openapi": "3.1.0", "info": {"title": "iris", "version": "1"},
            "paths": {"/serving-endpoints/iris/invocations": {"post": {"requestBody": {
                "content": {"application/json": {"schema": body}}}}}}}


def start_workspace(scoring_url: str, logs: Path, client_id: str, secret: str) -> tuple[subprocess.Popen, str]:
    """tests/workspace_standin.py in its own process (not sharing this one's GIL with Playwright):
    endpoint ``iris`` in front of the scoring server, the app's service principal ``client_id``
    with ``secret`` (through the environment: a command line shows in ``ps``)."""
    from workspace_standin import SECRET_ENV

    port = free_port()
    openapi = logs / "iris-openapi.json"
    openapi.write_text(json.dumps(iris_openapi()))
    out = open(logs / "workspace.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "workspace_standin.py"), "--port", str(port),
                             "--client-id", client_id, "--endpoint", f"iris={scoring_url}",
                             "--entity", "iris=main.default.iris/1", "--openapi", f"iris={openapi}"],
                            cwd=ROOT, env={**os.environ, SECRET_ENV: secret}, stdout=out, stderr=subprocess.STDOUT)
    proc.log_file = out  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, url + "/.well-known/databricks-config", logs / "workspace.log")
    return proc, url


def model_load_alone(registry: str) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh process that only loads the demo model in process (direct
    mode's own cost: MLflow, the registry, the weights), the reference for direct-mode cold start."""
    code = ("import resource, time; t = time.perf_counter(); from client import Predictor; "
            f"Predictor.from_model('models:/main.default.iris@champion', registry_uri={registry!r}).get_signature(); "
            "r = resource.getrusage(resource.RUSAGE_SELF); print(time.perf_counter() - t, r.ru_utime + r.ru_stime)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, check=True).stdout.split()
    return time.perf_counter() - started, float(out[-1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def report(variants: list[Variant], args: argparse.Namespace, loads: list[tuple[float, float]]) -> str:
    import gradio
    import streamlit

    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, "
             f"python {platform.python_version()}, streamlit {streamlit.__version__}, gradio {gradio.__version__}; "
             f"{args.rounds} round(s), {args.clicks} clicks per round (+1 warm-up)", "",
             "| app | cold start (median) | vs floor | server CPU to form | click -> answer p50 | p90 "
             "| p50 vs floor | p90 vs floor | p50 vs hello-world + model | server CPU per click |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    floors = {v.kind: v for v in variants if v.name == "floor"}
    model_floors = {v.kind: statistics.median(v.clicks) for v in variants if v.name == "floor-model"}
    for v in variants:
        f = floors[v.kind]
        cold, fcold = statistics.median(v.cold), statistics.median(f.cold)
        p50, fp50 = statistics.median(v.clicks), statistics.median(f.clicks)
        p90, fp90 = pct(v.clicks, 0.9), pct(f.clicks, 0.9)
        lines.append(f"| {v.label} | {cold:.1f} s | {cold / fcold:.2f}x ({cold - fcold:+.1f} s) | "
                     f"{statistics.median(v.cold_cpu):.1f} s | {p50 * 1000:.0f} ms | {p90 * 1000:.0f} ms | "
                     f"{p50 / fp50:.2f}x | {p90 / fp90:.2f}x | {p50 / model_floors[v.kind]:.2f}x | "
                     f"{statistics.median(v.click_cpu) * 1000:.0f} ms |")
    wall, cpu = statistics.median(w for w, _ in loads), statistics.median(c for _, c in loads)
    lines += ["", f"the demo model's own load in a fresh process (python + client + MLflow + registry + weights): "
                  f"{wall:.1f} s wall, {cpu:.1f} s CPU (median of {len(loads)})"]
    lines += ["", "raw cold starts (s): " + "; ".join(f"{v.label} {[round(c, 1) for c in v.cold]}" for v in variants)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--only", choices=["streamlit", "gradio"])
    ap.add_argument("--no-tracing", action="store_true", help="our apps with PREDICTOR_TRACING=0 (tracing's cost)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="apps-bench-"))
    registry = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ.update({"PREDICTOR_HOME": str(tmp), "MLFLOW_TRACKING_URI": registry, "MLFLOW_REGISTRY_URI": registry})
    from client.local.demo import register_demo_model

    register_demo_model(registry)
    scoring, scoring_url = start_scoring(registry, tmp)
    scripts = {("streamlit", "floor"): STREAMLIT_FLOOR, ("gradio", "floor"): GRADIO_FLOOR,
               ("streamlit", "floor-model"): STREAMLIT_FLOOR_MODEL % (IRIS,),
               ("gradio", "floor-model"): GRADIO_FLOOR_MODEL % (IRIS,)}
    for (kind, name), text in scripts.items():
        (tmp / f"{kind}_{name}.py").write_text(textwrap.dedent(text))
    base = {"PREDICTOR_REGISTRY_URI": registry, "MLFLOW_TRACKING_URI": registry, "MLFLOW_REGISTRY_URI": registry,
            "PREDICTOR_HOME": str(tmp)}
    if args.no_tracing:
        base["PREDICTOR_TRACING"] = "0"
    envs = {"floor": {}, "floor-model": {"FLOOR_MODEL_URL": f"{scoring_url}/invocations"},
            "direct": {**base, "PREDICTOR_MODEL_URI": "models:/main.default.iris@champion"},
            "endpoint": {**base, "PREDICTOR_MODEL_URI": "models:/main.default.iris@champion",
                         "PREDICTOR_ENDPOINT_URL": f"{scoring_url}/invocations"}}
    ours = inputs(args.clicks + 1, floor=False)
    ours = [(vals, want) for (vals, _), want in zip(ours, expected_from_server(scoring_url, [v for v, _ in ours]),
                                                    strict=True)]
    # What Databricks Apps inject for the app's service principal (the secret: random, never printed).
    client_id, secret = "bench-app-service-principal", secrets.token_urlsafe(24)
    workspace, workspace_url = start_workspace(scoring_url, tmp, client_id, secret)
    envs["endpoint-by-name"] = {**({"PREDICTOR_TRACING": "0"} if args.no_tracing else {}), "PREDICTOR_ENDPOINT": "iris",
                                "DATABRICKS_HOST": workspace_url, "DATABRICKS_WORKSPACE_ID": "1234567890",
                                "DATABRICKS_CLIENT_ID": client_id, "DATABRICKS_CLIENT_SECRET": secret}
    cases = {"floor": inputs(args.clicks + 1, floor=True), "floor-model": ours,
             "direct": ours, "endpoint": ours, "endpoint-by-name": ours}
    kinds = [args.only] if args.only else ["streamlit", "gradio"]
    variants = [Variant(k, n) for k in kinds
                for n in ("floor", "floor-model", "direct", "endpoint", "endpoint-by-name")]
    loads: list[tuple[float, float]] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            for r in range(args.rounds):
                loads.append(model_load_alone(registry))
                for v in variants:
                    script = tmp / f"{v.kind}_{v.name}.py" if v.name.startswith("floor") else None
                    run_variant(browser, v, script, envs[v.name], tmp, cases[v.name])  # type: ignore[arg-type]
                    print(f"round {r + 1}: {v.label}: cold {v.cold[-1]:.1f} s, clicks p50 "
                          f"{statistics.median(v.clicks[-args.clicks:]) * 1000:.0f} ms", flush=True)
            browser.close()
    finally:
        stop(workspace)
        stop(scoring)
        if leaked := sorted(p.name for p in tmp.glob("*.log") if secret in p.read_text(errors="replace")):
            raise RuntimeError(f"the service principal's secret appears in {leaked} (under {tmp})")
    print()
    print(report(variants, args, loads))


if __name__ == "__main__":
    main()
