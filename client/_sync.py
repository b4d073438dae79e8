"""Run the async core from sync code, also where an event loop is already running.

One daemon thread owns one event loop for the whole process; ``run`` hands it a coroutine
and blocks for the result. Because that loop is never the caller's, this works inside
Jupyter and Gradio handlers, where ``asyncio.run`` would refuse.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _portal() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="client-sync-portal", daemon=True).start()
            _loop = loop
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for its result (exceptions propagate)."""
    loop = _portal()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # called from a coroutine on the portal itself: would deadlock
        coro.close()
        raise RuntimeError("use the async API (apredict) from inside a coroutine on the client's loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
