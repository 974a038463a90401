"""The port holder of ``keyledger run``: its workers share the port, no one else gets it."""

from __future__ import annotations

import pytest

from app.entrypoints.server.workers import PortInUseError, hold_port, reuse_port_socket


def test_the_supervisor_holds_any_free_port_its_workers_share_and_no_one_else_can():
    holder = hold_port("127.0.0.1", 0)
    workers = [reuse_port_socket("127.0.0.1", holder.port) for _ in range(2)]
    try:
        for worker in workers:
            worker.listen()
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{holder.port}"):
            hold_port("127.0.0.1", holder.port)
    finally:
        for worker in workers:
            worker.close()
        holder.close()


def test_a_port_held_before_its_workers_listen_is_refused_to_a_second_holder():
    holder = hold_port("127.0.0.1", 0)
    try:
        with pytest.raises(PortInUseError, match="another service listens there"):
            hold_port("127.0.0.1", holder.port)
    finally:
        holder.close()
    hold_port("127.0.0.1", holder.port).close()  # released with the first
