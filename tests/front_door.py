"""The Databricks Apps front door, on loopback: a reverse proxy that signs one user in.

On Databricks Apps the platform's proxy stands between the browser and the app and adds the
signed-in user's headers to every request, the WebSocket handshake included (Streamlit reads
them there, through ``st.context.headers``; Gradio through ``gr.Request``). A browser test
cannot make Chromium send them (Chromium 150+ drops Playwright's ``extra_http_headers`` on the
WebSocket handshake), so each test user gets a ``FrontDoor`` of their own, on its own port:

    with FrontDoor(app.url, User.named("alice", token="alice-token")) as door:
        page.goto(door.url)   # every request the app sees carries alice's headers

``User.named("carol", token=None)``: a signed-in user without a forwarded token (the app has
no user authorization), as the platform sends when ``user_api_scopes`` are not granted.

Each connection's request head is rewritten: ``X-Forwarded-*``/``X-Real-Ip``/``X-Request-Id``
the browser sent are dropped (a client cannot pose as someone else), the user's are added, and
``Connection: close`` is asked for (an upgrade keeps its ``Connection: Upgrade``), so that every
request on the app's side comes on a connection of its own with a head the proxy wrote. After
the head, bytes flow untouched both ways: bodies, responses and WebSocket frames alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["RECENT", "FrontDoor", "User", "stamp"]

#: The doors started last, open or closed: a failing browser test's report shows the logs of those
#: still open or started during it (conftest; a test's ``with FrontDoor(...)`` has closed by then).
RECENT: deque[FrontDoor] = deque(maxlen=8)

_DROPPED = (b"x-forwarded-", b"x-real-ip", b"x-request-id")
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class User:
    """Who the front door says is signed in; ``token=None``: no ``X-Forwarded-Access-Token``."""

    email: str
    user_id: str
    token: str | None

    @classmethod
    def named(cls, name: str, token: str | None) -> User:
        return cls(email=f"{name}@example.com", user_id=f"{zlib.crc32(name.encode())}@4242", token=token)

    def headers(self) -> list[tuple[str, str]]:
        out = [("X-Forwarded-Email", self.email), ("X-Forwarded-User", self.user_id),
               ("X-Forwarded-Preferred-Username", self.email), ("X-Real-Ip", "127.0.0.1"),
               ("X-Request-Id", str(uuid.uuid4()))]
        if self.token is not None:
            out.insert(0, ("X-Forwarded-Access-Token", self.token))
        return out


def rewrite_head(head: bytes, user: User) -> bytes:
    """The request head as the app receives it (pure; ``head`` ends with its blank line)."""
    request_line, *lines = head[:-4].split(b"\r\n")
    kept = [line for line in lines if not line.split(b":", 1)[0].strip().lower().startswith(_DROPPED)]
    upgrade = any(line.lower().startswith(b"upgrade:") for line in kept)
    if not upgrade:
        kept = [line for line in kept if not line.lower().startswith((b"connection:", b"keep-alive:"))]
        kept.append(b"Connection: close")
    added = [f"{k}: {v}".encode("latin-1") for k, v in user.headers()]
    return b"\r\n".join([request_line, *kept, *added]) + b"\r\n\r\n"


class FrontDoor:
    """A proxy to ``upstream`` (``http://host:port``) for one signed-in ``user``; ``.url`` is its address.

    ``requests`` counts the request heads it forwarded; ``upgrades`` the WebSocket handshakes;
    ``log`` holds the last 400 steps of its connections (request line, sent to the app, more from the
    browser, answered, closed, or the error), so that a page left waiting shows where its request stopped.
    """

    def __init__(self, upstream: str, user: User) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self.user = user
        self.url = ""
        self.requests = 0
        self.upgrades = 0
        self.log: deque[str] = deque(maxlen=400)
        self._connections = 0
        self.started = 0.0  # time.time() at start; at stop (None: still open)
        self.stopped: float | None = None
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="front-door")

    def start(self) -> FrontDoor:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self.started = time.time()
        RECENT.append(self)
        return self

    def stop(self) -> None:
        self.stopped = time.time()

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FrontDoor:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_w: asyncio.StreamWriter | None = None
        self._connections += 1
        number = self._connections
        try:
            try:
                head = await client_r.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                self._note(number, f"no request head ({type(err).__name__})")  # e.g. an unused preconnect
                return
            if len(head) > _MAX_HEAD:
                return
            self._note(number, head.split(b"\r\n", 1)[0].decode("latin-1")[:120])
            new_head = rewrite_head(head, self.user)
            self.requests += 1
            self.upgrades += b"\r\nupgrade:" in new_head.lower()
            upstream_r, upstream_w = await asyncio.open_connection(self._host, self._port)
            upstream_w.write(new_head)
            self._note(number, f"sent from port {upstream_w.get_extra_info('sockname')[1]}")
            # "more from the browser": a body, or a second request on the same connection (which
            # would pass unrewritten: the head asks the app to close after one answer)
            await asyncio.gather(_pipe(client_r, upstream_w, lambda: self._note(number, "more from the browser")),
                                 _pipe(upstream_r, client_w, lambda: self._note(number, "answered")))
            self._note(number, "closed")
        except (ConnectionError, OSError, asyncio.CancelledError) as err:
            self._note(number, type(err).__name__)  # a closed connection, or the door shutting
        except Exception as err:  # anything else ends the connection too: say what it was
            self._note(number, f"{type(err).__name__}: {err}")
            raise
        finally:
            for w in (client_w, upstream_w):
                if w is not None:
                    w.close()

    def _note(self, number: int, step: str) -> None:
        self.log.append(f"{stamp()} #{number} {step}")


def stamp() -> str:
    """The wall-clock time to the millisecond, as the doors' and the pages' logs write it."""
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]  # one clock read: seconds and ms agree


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                first: Callable[[], None] | None = None) -> None:
    """Copy until end of stream, then half-close the other side (the answer may still be coming);
    ``first()`` is called when the first bytes come."""
    try:
        while chunk := await reader.read(65536):
            if first is not None:
                first()
                first = None
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
