"""The tests' ports: never from the kernel's ephemeral range, never twice (tests/_ports.py).

A port picked by ``bind(0)`` could be handed to another ``bind(0)`` before the server it was for
bound it (a Gradio app imports for seconds first); that happened in a ``make test`` run.
"""

from __future__ import annotations

import socket

from _ports import ephemeral_range, free_port


def test_a_port_is_never_one_the_kernel_hands_out_to_bind_0() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert all(not low <= p <= high for p in ports), ports
    with socket.socket() as s:  # what another server started meanwhile would get
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] not in ports


def test_a_port_is_given_once_and_is_free_when_given() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # raises if it was not free

