"""Session fixtures: a temporary registry with the demo and mixed models, and real scoring servers.

``registry_uri``   sqlite registry (tmp dir) holding ``main.default.iris`` and ``main.default.mixed``
``scoring_server`` base URL of ``python -m client.local serve models:/main.default.iris@champion --name iris``
``mixed_server``   the same for ``models:/main.default.mixed@champion --name mixed``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from _ports import free_port  # noqa: E402  (the tests' one way to a port: see _ports.py)

# `make test` runs two pytest-xdist workers, each starting its own servers while the other works
# (and on CI, other jobs share the 2 cores): 90 s was seen to pass by with a loaded machine.
SERVER_STARTUP_TIMEOUT = 180.0
BROWSER_ASSERT_TIMEOUT_MS = 30_000

# Property tests draw the same examples on every run (`make test` must pass on every run, CI included); a
# failure they find once is a defect to fix with a pinned @example. To go looking for new ones:
# HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/test_markup.py tests/test_properties.py
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("suite", derandomize=True)
_hypothesis_settings.register_profile("explore", derandomize=False)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# A pytest-xdist worker's __main__ is execnet's `python -c` bootstrap: no __file__, no __spec__.
# pyspark.sql.connect takes that for a doctest run and calls sys.exit(0) at import, and MLflow
# imports it in infer_signature (SystemExit, not ImportError). Give the worker the __main__ file a
# plain `python -m pytest` run has (pytest/__main__.py, which does nothing when run by another name).
_main = sys.modules["__main__"]
if os.environ.get("PYTEST_XDIST_WORKER") and getattr(_main, "__spec__", None) is None \
        and not hasattr(_main, "__file__"):
    _main.__file__ = str(Path(pytest.__file__).parent / "__main__.py")


def wait_healthy(proc: subprocess.Popen, url: str, what: str, output: Callable[[], str]) -> None:
    """Return once ``url`` answers 200; fail the test with the server's output if ``proc`` exits
    first or ``SERVER_STARTUP_TIMEOUT`` passes (a dead server never hangs the suite)."""
    deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{output()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not up after {SERVER_STARTUP_TIMEOUT}s:\n{output()}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("predictor_home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("PREDICTOR_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["PREDICTOR_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_REGISTRY_URI"] = uri

    from _models import register_mixed_model

    from client.local.demo import register_demo_model

    register_demo_model(uri)
    register_mixed_model(uri)
    yield uri
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


#: The experiment the session's agent server traces chat answers into.
AGENT_TRACES = "/agent-server-traces"


def _start_server(model_uri: str, name: str, registry_uri: str, *extra: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH")]))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "client.local",
            "serve",
            model_uri,
            "--name",
            name,
            "--port",
            str(port),
            "--registry-uri",
            registry_uri,
            *extra,
        ],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-8000:]

    try:
        wait_healthy(proc, f"{base}/ping", f"server for {model_uri}", output)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def scoring_server(registry_uri: str) -> Iterator[str]:
    yield from _start_server("models:/main.default.iris@champion", "iris", registry_uri)


@pytest.fixture(scope="session")
def mixed_server(registry_uri: str) -> Iterator[str]:
    yield from _start_server("models:/main.default.mixed@champion", "mixed", registry_uri)


@pytest.fixture(scope="session")
def agent_registry(registry_uri: str) -> str:
    """``registry_uri`` with the demo agent (``main.default.assistant@champion``) registered too."""
    from client.local.demo import register_demo_agent

    register_demo_agent(registry_uri)
    return registry_uri


@pytest.fixture(scope="session")
def agent_server(agent_registry: str) -> Iterator[str]:
    """``python -m client.local serve models:/main.default.assistant@champion --name assistant --experiment
    /agent-server-traces``: MLflow's agent server, tracing into that experiment (``AGENT_TRACES``).
    Its chunks are paced (``PREDICTOR_DEMO_AGENT_PACE_MS``) only when a request asks."""
    yield from _start_server("models:/main.default.assistant@champion", "assistant", agent_registry,
                             "--experiment", AGENT_TRACES)


#: The demo agent in each chat format: ``(registered name, endpoint name, endpoint task)``.
CHAT_FORMATS = {
    "responses": ("main.default.assistant", "assistant", "agent/v1/responses"),
    "chat_agent": ("main.default.assistant_chat_agent", "chat-agent", "agent/v2/chat"),
    "completions": ("main.default.assistant_chat_model", "chat-model", "agent/v1/chat"),
}


class ChatServers:
    """``predictor serve`` of the demo agent in each chat format, by format: the session's
    ``agent_server`` for ``responses``; the ChatAgent and ChatModel ones when first asked for
    (:meth:`start` starts several side by side)."""

    def __init__(self, registry: str, agent_server: str) -> None:
        self.registry, self.running = registry, {"responses": agent_server}
        self._stops: list[Iterator[str]] = []

    def __getitem__(self, fmt: str) -> str:
        self.start(fmt)
        return self.running[fmt]

    def start(self, *formats: str) -> None:
        """Start the servers of ``formats`` not yet running, side by side (~8 s of CPU each,
        mostly imports: two in parallel take little more wall time than one)."""
        missing = [f for f in formats if f not in self.running]
        if not missing:
            return
        from concurrent.futures import ThreadPoolExecutor

        from _models import register_chat_demos

        register_chat_demos(self.registry)
        servers = [_start_server(f"models:/{CHAT_FORMATS[f][0]}@champion", CHAT_FORMATS[f][1], self.registry,
                                 "--experiment", AGENT_TRACES) for f in missing]
        self._stops.extend(servers)
        with ThreadPoolExecutor(len(servers)) as pool:
            self.running.update(zip(missing, pool.map(next, servers), strict=True))

    def invocations(self, fmt: str) -> str:
        return f"{self[fmt]}/serving-endpoints/{CHAT_FORMATS[fmt][1]}/invocations"

    def close(self) -> None:
        for server in self._stops:
            server.close()


@pytest.fixture(scope="session")
def chat_servers(agent_registry: str, agent_server: str) -> Iterator[ChatServers]:
    servers = ChatServers(agent_registry, agent_server)
    try:
        yield servers
    finally:
        servers.close()



@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (``tests/_postgres.py``; Debian's ``postgresql``, ``make postgres``)."""
    from _postgres import PostgresCluster

    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True, scope="module")
def _trace_export_back_to_the_sdk_default() -> Iterator[None]:
    """An app built in this process (set_up_tracking) defers trace export process-wide, as the apps
    should; the next module in the same worker reads its traces back at once and must not inherit
    that (it did: the CLI summary and the vote tests found no traces after test_app_sessions). Traces
    already waiting are written by the writer in the background, as before: not waited for here (a
    flush after the soak test's 10,500 traced calls took 62 s)."""
    yield
    if "client.feedback" in sys.modules:
        from client.feedback import defer_trace_export

        defer_trace_export(0.0)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module (the browser tests share it)."""
    from _browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    # Playwright's 5 s for an assertion is too short here: on CI's two cores, shared by two workers,
    # the third lane, the apps and Chromium, a Streamlit rerun after a click once took longer (the
    # renamed title of test_history_browser not yet listed after 5 s). A passing assertion still
    # returns at once; only a failing one waits the full time.
    expect.set_options(timeout=BROWSER_ASSERT_TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    """The module's one browser context; open pages in it with ``_browser.open_page``.

    Its pages share Chromium's HTTP and code caches: a new context per page loads and compiles
    the app's scripts again (the four browser modules took 9-14 % more CPU and wall time that way,
    README "Where the suite's time goes"). Users are told apart as on Databricks Apps, by
    the headers their own front door adds (``tests/front_door.py``: each its own port, so its own
    origin and storage), not by the browser. Cookies are per host and so shared: the apps set none
    that says who the user is (``test_browser.py`` checks).
    """
    from _browser import VIEWPORT

    ctx = browser.new_context(viewport=VIEWPORT)
    yield ctx
    ctx.close()


#: The modules that take longest (``--durations``), run first: under ``--dist loadfile`` each
#: pytest-xdist worker takes the next module when it is free (the Makefile passes
#: --no-loadscope-reorder, so in this order), and a long one left for the end
#: keeps one core busy while the others idle.
LONGEST_FIRST = ("test_browser_chat.py", "test_browser.py", "test_faults.py", "test_spark.py",
                 "test_soak.py", "test_feedback_browser.py", "test_history_browser.py",
                 "test_monitoring_server.py",
                 "test_tracing.py", "test_secrets.py",
                 "test_cli.py", "test_frontends_cold_start.py", "test_demo_serve.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing browser test's report shows what its pages and front doors last did (those still
    open, and those opened during the failing step): which request a page still waits for, and
    whether the door forwarded it and the app answered."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    # at setup too: a module's apps fixture warms each app up with a page (test_browser.py)
    if report.when == "teardown" or not report.failed or "_browser" not in sys.modules:
        return
    from _browser import RECENT_PAGES
    from front_door import RECENT

    lines: list[str] = []
    for page, opened, log in list(RECENT_PAGES):
        if opened >= call.start or not page.is_closed():
            lines += [f"-- page {page.url}", *log]
    for door in list(RECENT):
        if door.started >= call.start or door.stopped is None:
            lines += [f"-- front door {door.url} -> {door.user.email}", *door.log]
    if lines:
        report.sections.append(("pages and front doors", "\n".join(lines)))
