"""Helpers for the browser tests: start an app as a real server, and a recording upstream.

``start_app("streamlit", env)`` runs the command from ``app.yaml`` with the variables Databricks
Apps preset; ``start_app("gradio", env)`` runs ``python -m frontends.gradio_ui.app``.
``Recorder`` is a loopback proxy in front of a scoring server that records each call's bearer
token, answers 401 to tokens starting with ``expired`` and, as Databricks does for a token
without a scope, 403 to tokens starting with ``noscope``; ``with recorder.hold(marker)`` keeps a
request whose body holds ``marker`` waiting until the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from _ports import free_port
from conftest import SERVER_STARTUP_TIMEOUT
from front_door import stamp

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
#: Databricks' 403 for a token issued without a scope the call needs.
MISSING_SCOPE = "Provided OAuth token does not have required scopes: serving.serving-endpoints"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


#: The pages' size unless a test asks for another (conftest's ``context``, ``open_page``).
VIEWPORT = {"width": 1400, "height": 1000}


#: The pages opened last, as ``(page, time.time() at opening, its last 200 network and console
#: steps)``: a failing browser test's report shows those still open or opened during it (conftest),
#: beside the front doors' own logs, so a page left waiting shows what it waits for.
RECENT_PAGES: deque[tuple[Any, float, deque[str]]] = deque(maxlen=8)


def _watch(page: Any) -> None:
    log: deque[str] = deque(maxlen=200)
    RECENT_PAGES.append((page, time.time(), log))

    def note(step: str) -> None:
        log.append(f"{stamp()} {step}")

    page.on("request", lambda r: note(f"request {r.method} {r.url[:160]}"))
    page.on("requestfinished", lambda r: note(f"finished {r.method} {r.url[:160]}"))
    page.on("requestfailed", lambda r: note(f"failed {r.method} {r.url[:160]}: {r.failure}"))
    page.on("websocket", lambda ws: (note(f"websocket {ws.url[:160]}"),
                                     ws.on("close", lambda w: note(f"websocket closed {w.url[:160]}"))))
    page.on("console", lambda m: m.type in ("error", "warning") and note(f"console {m.type}: {m.text[:300]}"))


def open_page(context: Any, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]) -> Any:
    """A new page (tab) of ``width`` x ``height`` in ``context`` (conftest's module-wide one)."""
    page = context.new_page()
    _watch(page)
    if (width, height) != (VIEWPORT["width"], VIEWPORT["height"]):
        page.set_viewport_size({"width": width, "height": height})
    return page


def streamlit_idle(page: Any) -> None:
    """Wait (up to 10 s, then go on) for Streamlit's running indicator to go: the rerun is done."""
    from playwright.sync_api import Error

    with contextlib.suppress(Error):
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=10_000)


def app_yaml() -> tuple[list[str], dict[str, str]]:
    """``app.yaml``'s command and its literal ``env`` values (``valueFrom`` ones are the caller's)."""
    spec = yaml.safe_load((ROOT / "app.yaml").read_text())
    env = {e["name"]: str(e["value"]) for e in spec.get("env", []) if "value" in e}
    return list(spec["command"]), env


@dataclass
class AppServer:
    kind: str
    url: str
    proc: subprocess.Popen
    log: IO[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def launch_app(kind: str, env: dict[str, str], log_path: Path, script: Path | None = None) -> AppServer:
    """Start the Streamlit (as ``app.yaml`` says) or Gradio app on a free loopback port; don't wait.

    ``script``: another page started the same way (the benchmark's hello-world floors).
    """
    port = free_port()
    # None of the caller's own settings (a DATABRICKS_TOKEN beside a service principal would be a
    # second auth method): the app gets only ``env``.
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("PREDICTOR_", "STREAMLIT_", "GRADIO_", "DATABRICKS_"))}
    full.update({"DATABRICKS_APP_PORT": str(port), "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"})
    if kind == "streamlit":
        command, yaml_env = app_yaml()
        full.update(yaml_env)
        # What Databricks Apps preset for Streamlit (address on loopback here, not 0.0.0.0).
        full.update({"STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
                     "STREAMLIT_SERVER_HEADLESS": "true"})
        command = [str(Path(sys.executable).parent / command[0]), *command[1:]]
        if script is not None:
            command[-1] = str(script)
    else:
        command = [sys.executable, str(script)] if script else [sys.executable, "-m", "frontends.gradio_ui.app"]
        full["GRADIO_SERVER_NAME"] = "127.0.0.1"
    full.update(env)
    log = open(log_path, "wb")  # noqa: SIM115 - closed by AppServer.stop
    proc = subprocess.Popen(command, cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT)
    return AppServer(kind, f"http://127.0.0.1:{port}", proc, log, log_path)


def wait_ready(server: AppServer, timeout: float = SERVER_STARTUP_TIMEOUT) -> AppServer:
    """Wait until the server answers its health route; stop it and raise with its log if not."""
    ready = "/_stcore/health" if server.kind == "streamlit" else "/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{server.kind} app exited with {server.proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + ready, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise TimeoutError(f"{server.kind} app not up after {timeout}s:\n{server.output()}")


def start_app(kind: str, env: dict[str, str], log_path: Path, timeout: float = SERVER_STARTUP_TIMEOUT) -> AppServer:
    return wait_ready(launch_app(kind, env, log_path), timeout)


@dataclass
class Recorder:
    """A loopback proxy to ``upstream`` (a scoring server) recording who called.

    ``tokens`` counts calls per bearer token (``None``: no Authorization header).
    """

    upstream: str
    tokens: Counter = field(default_factory=Counter)
    url: str = ""
    _server: Any = None
    _hold: tuple[bytes, threading.Event, threading.Event] | None = None

    #: A held request is let go after this even if its ``hold`` block never ends.
    HOLD_CAP = 120.0

    @contextlib.contextmanager
    def hold(self, marker: str) -> Iterator[threading.Event]:
        """Hold each request whose body contains ``marker`` until the block ends; the event
        yielded is set once one has arrived. No sleeps: a test waits on events only."""
        arrived, released = threading.Event(), threading.Event()
        self._hold = (marker.encode(), arrived, released)
        try:
            yield arrived
        finally:
            released.set()
            self._hold = None

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hold = recorder._hold
                if hold is not None and hold[0] in body:
                    hold[1].set()
                    hold[2].wait(recorder.HOLD_CAP)
                auth = self.headers.get("Authorization")
                token = auth.removeprefix("Bearer ") if auth else None
                recorder.tokens[token] += 1
                if token and token.startswith("expired"):
                    status, content = 401, json.dumps({"error_code": "UNAUTHENTICATED",
                                                       "message": "Token expired."}).encode()
                elif token and token.startswith("noscope"):  # a user token issued without the serving scope
                    status, content = 403, json.dumps({"error_code": "PERMISSION_DENIED", "message": MISSING_SCOPE
                                                       }).encode()
                else:
                    r = httpx.post(recorder.upstream + "/invocations", content=body, timeout=30,
                                   headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                    status, content = r.status_code, r.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
