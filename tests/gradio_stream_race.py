"""Is Gradio's client still losing an event whose queue join crosses the stream's close?

    .venv/bin/python tests/gradio_stream_race.py

Not a test of ours (pytest does not collect it): a reproduction of the hang in the README's
Reliability section, to run again after a Gradio upgrade. A ten-line Gradio app (a click, then
a chained ``.then``) behind a proxy that holds back the chunk carrying ``close_stream`` by a
moment, as a loaded proxy or machine may: the server closes the session's event stream when its
last pending event completes; the page, not yet told, sends the chained event's join, sees its
answer, believes the stream still open and opens none, and the chained event's result never
arrives. Prints, per delay, how many rounds completed; exits 1 while a round hangs, 0 when
none does (then the README's paragraph can go). Gradio 6.31, 2026-12-05, four runs: without a
delay 5 of 5 rounds every time (and at 0.2 s, tried once); at 1 s a round hung in every run
(round 1, 1, 3, 3).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import httpx

APP = """
import itertools, sys, gradio as gr
n = itertools.count(1)
with gr.Blocks() as demo:
    go, first, second = gr.Button("go"), gr.Textbox(label="first"), gr.Textbox(label="second")
    go.click(lambda: "first done", outputs=first).then(lambda: f"second {next(n)}", outputs=second)
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""
DELAYS = (0.0, 1.0)  # seconds the close_stream chunk is held back
ROUNDS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(upstream: int, delay: float) -> int:
    """A plain TCP proxy in a thread of its own; its port."""
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if hold and b"close_stream" in chunk:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        app_r, app_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(client_r, app_w, False), pipe(app_r, client_w, True))

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return int(server.sockets[0].getsockname()[1])


def rounds_completed(url: str) -> int:
    """Click, then wait for the chained event's result; the rounds that got it (stops at the first that did not)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            for done in range(ROUNDS):
                page.get_by_role("button", name="go", exact=True).click()
                try:
                    expect(page.get_by_role("textbox", name="second")).to_have_value(f"second {done + 1}",
                                                                                   timeout=15_000)
                except AssertionError:
                    return done
                page.wait_for_timeout(1500)  # every event ended: the stream closes before the next click
            return ROUNDS
        finally:
            browser.close()


def main() -> int:
    lost = False
    for delay in DELAYS:
        port = free_port()  # a new app per delay: its counter starts at 1
        app = subprocess.Popen([sys.executable, "-c", APP, str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or app.poll() is not None:
                        raise SystemExit("the Gradio app did not start") from None
                    time.sleep(0.3)
            done = rounds_completed(f"http://127.0.0.1:{start_proxy(port, delay)}")
        finally:
            app.terminate()
            app.wait(10)
        print(f"close_stream held back {delay:.1f} s: {done} of {ROUNDS} rounds completed"
              + ("" if done == ROUNDS else f"; round {done + 1}'s chained event never got its result"))
        lost = lost or done < ROUNDS
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
