"""A fault-injecting HTTP/1.1 proxy for the reliability tests, on loopback.

It sits in front of a real scoring server and answers a chosen fraction of ``POST``
requests with a fault instead of (or, for a truncated body, on top of) the real answer:

``429_retry_after``  429 with ``Retry-After``         ``429``        429 without it
``503`` / ``504``    a gateway error with a JSON body  ``reset``      the connection reset (RST), no answer
``stall``            no answer until past the client's read timeout, then the connection closes
``truncated``        the real answer, cut in half under its full ``Content-Length``, then closed
``non_json``         ``200 OK`` with an HTML body

``delay=`` holds every forwarded request that long first (a slower model behind the same server);
``slowdown=`` holds every forwarded answer until it has taken that many times as long as the
model took for it, ``delay`` included (a model that much slower, whatever the machine's load makes
the upstream take).

Everything else is forwarded unchanged. The server is a plain asyncio stream server (no
framework), so that resets, stalls and short bodies are real socket behaviour; it runs on a
loop in its own thread. Every request is logged with the data rows of its
``dataframe_split`` body and what the proxy did with it, so a test can tell, call by call,
what the client should have seen.

Example::

    with FaultProxy("http://127.0.0.1:5000", fault_rate=0.2, seed=1) as proxy:
        Predictor.from_endpoint(url=f"{proxy.url}/invocations", ...)
        proxy.injected   # Counter({"503": 51, "reset": 49, ...})
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

__all__ = ["FAULTS", "FaultProxy", "Request"]

FAULTS = ("429_retry_after", "429", "503", "504", "reset", "stall", "truncated", "non_json")


@dataclass
class Request:
    """One request the proxy handled: the data rows it carried and what it did (``"ok"`` or a fault).

    ``seconds``: for a forwarded request, how long the answer took (from the request read to the
    answer written); a client whose read timeout is shorter gave up on it first.
    """

    rows: tuple[tuple[Any, ...], ...]
    outcome: str
    seconds: float = 0.0


def _rows(body: bytes) -> tuple[tuple[Any, ...], ...]:
    try:
        data = json.loads(body)["dataframe_split"]["data"]
        return tuple(tuple(r) for r in data)
    except (ValueError, KeyError, TypeError):
        return ()


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float = 0.2,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        stall_seconds: float = 2.5,
        retry_after: str = "1",
        delay: float = 0.0,
        slowdown: float = 1.0,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        self.upstream = upstream.rstrip("/")
        self.fault_rate = fault_rate
        self.faults = faults
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        #: Seconds every forwarded request is held before it goes upstream (a slower model).
        self.delay = delay
        #: Every forwarded answer takes this many times as long as the upstream took for it.
        self.slowdown = slowdown
        self._rng = random.Random(seed)
        #: What was injected, by fault name.
        self.injected: Counter[str] = Counter()
        #: Requests forwarded and answered unchanged.
        self.forwarded = 0
        #: Requests the proxy's own hop to the upstream failed on (relayed, and logged, as "reset").
        self.upstream_failures = 0
        #: Every POST, in arrival order.
        self.log: list[Request] = []
        #: Connections that ended (reset, or mid-request) before a whole request was read: attempts a
        #: client gave up on before the proxy got to them (a loaded machine). The log cannot name them.
        self.unread = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._connections: set[asyncio.StreamWriter] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._startup())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        # Idle upstream connections are dropped after 1 s, well before the scoring server's own
        # keep-alive timeout (uvicorn: 5 s), so the proxy rarely reuses one the server is closing.
        limits = httpx.Limits(max_connections=64, keepalive_expiry=1.0)
        self._http = httpx.AsyncClient(timeout=60.0, limits=limits)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        assert self._server is not None and self._http is not None
        self._server.close()
        for w in list(self._connections):
            w.transport.abort()
        # Handlers still stalling (a long ``stall_seconds``) end here, not as pending tasks at close.
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._http.aclose()

    # -- figures ---------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return len(self.log)

    def requests_for(self, row: tuple[Any, ...]) -> list[Request]:
        """Every request that carried ``row``, in order."""
        return [r for r in self.log if row in r.rows]

    # -- serving ---------------------------------------------------------------------------

    def _pick(self) -> str:
        if self._rng.random() < self.fault_rate:
            return self._rng.choice(self.faults)
        return "ok"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        reading = True  # a failure while reading a request, not while answering one, is "unread"
        try:
            while True:
                reading = True
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                reading = False
                if not await self._respond(method, target, headers, body, writer):
                    return
                if headers.get("connection", "").lower() == "close":
                    return
        except asyncio.IncompleteReadError as err:
            self.unread += bool(err.partial)  # nothing read: an idle keep-alive connection closed
        except (asyncio.LimitOverrunError, ConnectionError):
            self.unread += reading
        finally:
            self._connections.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _respond(
        self, method: str, target: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; ``False`` when the connection is finished."""
        outcome = self._pick() if method == "POST" else "ok"
        record = Request(_rows(body), outcome)
        if method == "POST":
            self.log.append(record)
        if outcome in ("ok", "truncated"):
            started = time.monotonic()
            if self.delay:
                await asyncio.sleep(self.delay)
            try:
                status, content, ctype = await self._forward(method, target, headers, body)
                if self.slowdown > 1:
                    await asyncio.sleep((self.slowdown - 1) * (time.monotonic() - started))
            except httpx.TransportError:
                # The proxy's own hop failed: the client sees a dropped connection, so that
                # is what this request is judged as, not as the planned outcome.
                self.upstream_failures += 1
                record.outcome = "reset"
                _abort(writer)
                return False
            record.seconds = time.monotonic() - started
        if outcome == "ok":
            self.forwarded += 1
            await _write(writer, status, content, ctype)
            return True
        self.injected[outcome] += 1
        if outcome in ("429_retry_after", "429"):
            extra = {"Retry-After": self.retry_after} if outcome == "429_retry_after" else {}
            await _write(writer, 429, _error("REQUEST_LIMIT_EXCEEDED", "rate limit exceeded"), extra=extra)
            return True
        if outcome in ("503", "504"):
            await _write(writer, int(outcome), _error("TEMPORARILY_UNAVAILABLE", "the endpoint is busy"))
            return True
        if outcome == "non_json":
            await _write(writer, 200, b"<html><body>upstream hiccup</body></html>", "text/html")
            return True
        if outcome == "reset":
            _abort(writer)
            return False
        if outcome == "stall":
            await asyncio.sleep(self.stall_seconds)
            writer.transport.abort()
            return False
        assert outcome == "truncated"
        await _write(writer, status, content[: len(content) // 2], ctype, length=len(content))
        writer.transport.abort()
        return False

    async def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        assert self._http is not None
        up = await self._http.request(
            method,
            self.upstream + target,
            content=body,
            headers={"content-type": headers.get("content-type", "application/json")},
        )
        return up.status_code, up.content, up.headers.get("content-type", "application/json")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), not an orderly close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


async def _write(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    *,
    extra: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
