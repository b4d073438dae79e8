"""Ports for the servers the tests start, that nothing else on the machine is handed meanwhile.

The usual ``bind(("127.0.0.1", 0))`` then close gives a port from the kernel's ephemeral range,
and the kernel hands out that same range to every other ``bind(0)`` and outgoing connection, so
between our pick and the server's own bind (seconds, for an app that imports Gradio first) another
server could take it: seen in a ``make test`` run, where test_browser's Gradio app died with
"Cannot find empty port" while a front door started meanwhile answered on its port, so the app
looked up. ``free_port()`` picks below the ephemeral range instead, in a block of its own per
pytest process (xdist worker or the third lane), and never gives the same port twice in a process.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

BLOCK = 1500  # ports per pytest process


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ``bind(0)`` and outgoing connections (Linux; 32768-60999 elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    top = min(ephemeral_range()[0], 65536)
    start = top - BLOCK * (index + 1)
    if start < 1024:
        raise RuntimeError(f"no room below port {top} for pytest process {worker or 'main'}")
    return range(start, start + BLOCK)


_lock = threading.Lock()
_block_ports = _block()
# A random start, so that a run right after another does not meet its ports in TIME_WAIT first.
_offset = random.randrange(BLOCK)
_next = itertools.cycle([*_block_ports[_offset:], *_block_ports[:_offset]])
_given: set[int] = set()


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range, not given before by this process."""
    with _lock:
        for _ in range(BLOCK):
            port = next(_next)
            if port in _given:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port left in {_block_ports}")
