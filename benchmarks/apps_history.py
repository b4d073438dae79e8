"""Saved conversations in the apps, in a real browser: listing 1,000 conversations and opening one of
200 messages, each app on each database, beside the framework's hello-world floor (one run).

The store is filled as ``benchmarks/history.py`` fills it (two users with 1,000 conversations of
10 messages each, votes on half the answers; one more of 200 messages for the first user), once on
SQLite and once on a throwaway PostgreSQL cluster (Debian's ``postgresql``, ``tests/_postgres.py``;
an ordinary role with a password over TCP). Each app (Streamlit, Gradio) then starts on each
database in direct mode on the demo agent, started as the tests start it (``tests/_browser.py``),
and Debian's Chromium opens it through the front door (``tests/front_door.py``) signed in as that
user. Measured, median of ``--repeat`` (after one warm-up, not counted):

- list: page opened -> the newest 20 conversations' titles drawn (the floor: a hello-world page of
  the same framework, opened -> its button drawn);
- page 2 and back: "Older" clicked -> page 2's first title drawn, then "Newer" -> page 1's;
- open 200: the 200-message conversation clicked in the list -> its last message and answer drawn
  (Streamlit draws the latest ``SHOWN_MESSAGES`` of them, the earlier ones on request; Gradio all);
- the store alone: the same list page and the same conversation read by ``HistoryStore``.

    .venv/bin/python benchmarks/apps_history.py [--repeat 5] [--only streamlit|gradio]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _browser import CHROMIUM, CHROMIUM_ARGS, launch_app, wait_ready  # noqa: E402
from front_door import FrontDoor, User  # noqa: E402
from history import USERS, fill  # noqa: E402  (benchmarks/history.py)

from frontends.core.history import PG_SCHEMA, HistoryStore  # noqa: E402

AGENT = "models:/main.default.assistant@champion"
TIMEOUT = 120_000
FLOORS = {
    "streamlit": "import streamlit as st\n\nst.title('hello')\nst.button('Hello')\n",
    "gradio": textwrap.dedent("""
        import os

        import gradio as gr

        with gr.Blocks() as demo:
            gr.Markdown("# hello")
            gr.Button("Hello")
        demo.launch(server_name="127.0.0.1", server_port=int(os.environ["DATABRICKS_APP_PORT"]))
    """),
}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    fn()  # warm-up
    return statistics.median(fn() for _ in range(repeat))


def title(page: Any, kind: str, text: str) -> Any:
    """A conversation in the list by its title's first words."""
    name = re.compile("^" + re.escape(text))
    return page.get_by_role("button" if kind == "streamlit" else "radio", name=name).first


def messages(kind: str) -> str:
    return '[data-testid="stChatMessage"]' if kind == "streamlit" else '[data-testid="user"], [data-testid="bot"]'


class Bench:
    def __init__(self, browser: Any, url: str, kind: str, store: HistoryStore, user: str, long_id: str) -> None:
        """``long_id``: the 200-message conversation, the user's newest (filled last)."""
        self.browser, self.url, self.kind = browser, url, kind
        first, second = store.conversations(user, 0, 20), store.conversations(user, 1, 20)
        self.newest = [c.title[:12] for c in first.items]
        self.page2 = second.items[0].title[:12]
        assert first.items[0].id == long_id  # the newest: filled last

    def open_page(self) -> tuple[Any, Any, float]:
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        try:
            ms = timed(lambda: (page.goto(self.url), title(page, self.kind, self.newest[-1]).wait_for()))
        except Exception:
            page.screenshot(path=str(ROOT / "test-artifacts" / f"apps-history-{self.kind}-failure.png"))
            raise
        return ctx, page, ms

    def list_ms(self) -> float:
        ctx, _page, ms = self.open_page()
        ctx.close()
        return ms

    def pages_ms(self) -> float:
        ctx, page, _ = self.open_page()
        try:
            def there_and_back() -> None:
                page.get_by_role("button", name="Older", exact=True).click()
                title(page, self.kind, self.page2).wait_for()
                page.get_by_role("button", name="Newer", exact=True).click()
                title(page, self.kind, self.newest[-1]).wait_for()

            return timed(there_and_back)
        finally:
            ctx.close()

    def open_long_ms(self) -> float:
        ctx, page, _ = self.open_page()
        try:
            def open_it() -> None:
                title(page, self.kind, self.newest[0]).click()
                page.wait_for_function(f"""() => {{ const m = document.querySelectorAll('{messages(self.kind)}');
                    return m.length >= 2 && m[m.length - 2].innerText.includes('long 99 ')
                        && m[m.length - 1].innerText.includes('zzz'); }}""", polling="raf", timeout=TIMEOUT)

            return timed(open_it)
        finally:
            ctx.close()


def floor_ms(browser: Any, kind: str, logs: Path, repeat: int) -> float:
    script = logs / f"floor_{kind}.py"
    script.write_text(FLOORS[kind])
    server = wait_ready(launch_app(kind, {}, logs / f"floor-{kind}.log", script=script), timeout=180)
    try:
        def once() -> float:
            ctx = browser.new_context()
            page = ctx.new_page()
            ms = timed(lambda: (page.goto(server.url, timeout=TIMEOUT),
                                page.get_by_role("button", name="Hello").wait_for(timeout=TIMEOUT)))
            ctx.close()
            return ms

        return median_of(repeat, once)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("streamlit", "gradio"), default=None)
    parser.add_argument("--db", choices=("SQLite", "PostgreSQL"), default=None)
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["streamlit", "gradio"]

    from _postgres import PostgresCluster
    from playwright.sync_api import sync_playwright

    from client.local.demo import register_demo_agent

    rows: list[tuple[str, str, float, float, float, float, float]] = []
    floors: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster.start() as pg, sync_playwright() as pw:
        logs = Path(tmp)
        registry = f"sqlite:///{logs / 'mlflow.db'}"
        os.environ.update({"MLFLOW_TRACKING_URI": registry, "MLFLOW_REGISTRY_URI": registry})
        register_demo_agent(registry)
        pg.sql("CREATE ROLE bench LOGIN PASSWORD 'bench-pw'")
        pg.sql("CREATE DATABASE bench OWNER bench")
        databases = {"SQLite": f"sqlite:///{logs / 'history.db'}",
                     "PostgreSQL": pg.url("bench", "bench", password="bench-pw")}
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for kind in kinds:
            floors[kind] = floor_ms(browser, kind, logs, args.repeat)
        for db, url in databases.items():
            if args.db not in (None, db):
                continue
            store = HistoryStore.connect(url)
            started = time.perf_counter()
            long_id = fill(store)
            print(f"{db}: filled in {time.perf_counter() - started:.0f} s", flush=True)
            user = USERS[0]
            store_list = median_of(args.repeat * 4, lambda s=store, u=user: timed(lambda: s.conversations(u, 0, 20)))
            store_open = median_of(args.repeat * 4, lambda s=store, u=user, c=long_id: timed(lambda: s.messages(u, c)))
            for kind in kinds:
                env = {"PREDICTOR_MODEL_URI": AGENT, "PREDICTOR_REGISTRY_URI": registry,
                       "MLFLOW_TRACKING_URI": registry, "MLFLOW_REGISTRY_URI": registry, "PREDICTOR_HISTORY": url,
                       # the schema filled (app.yaml gives the Streamlit app one of its own on Postgres)
                       "PREDICTOR_HISTORY_SCHEMA": PG_SCHEMA}
                server = wait_ready(launch_app(kind, env, logs / f"{kind}-{db}.log"), timeout=180)
                try:
                    with FrontDoor(server.url, User.named(user.split("@")[0], token=None)) as door:
                        bench = Bench(browser, door.url, kind, store, user, long_id)
                        rows.append((kind, db, median_of(args.repeat, bench.list_ms),
                                     median_of(args.repeat, bench.pages_ms),
                                     median_of(args.repeat, bench.open_long_ms), store_list, store_open))
                        print(rows[-1], flush=True)
                except Exception:
                    print(server.output(), file=sys.stderr)
                    raise
                finally:
                    server.stop()
            store.close()
        browser.close()

    load = os.getloadavg()
    print(f"\n# apps with saved conversations, {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load[0]:.1f}, median of {args.repeat}")
    print("| app | database | list: page 1 drawn ms | floor ms | list/floor | page 2 and back ms "
          "| open 200 messages ms | open/floor | store: list ms | store: open ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, db, list_ms, pages_ms, open_ms, s_list, s_open in rows:
        print(f"| {kind} | {db} | {list_ms:.0f} | {floors[kind]:.0f} | {list_ms / floors[kind]:.2f} × | {pages_ms:.0f} "
              f"| {open_ms:.0f} | {open_ms / floors[kind]:.2f} × | {s_list:.1f} | {s_open:.1f} |")


if __name__ == "__main__":
    main()
