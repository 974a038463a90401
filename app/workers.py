"""One worker of ``keyledger run --workers N``, listening on a socket of its own.

Uvicorn's own workers share one listening socket, and asyncio accepts up to 100
connections each time it wakes: a client that opens its connections in a burst (a
connection pool, the benchmark's 64) found all of them on one worker while the others
idled. Each worker here binds the port itself with SO_REUSEPORT, and the kernel spreads
new connections over the workers' sockets (Linux hashes each to one of them).

Run as ``python -m app.workers`` by the supervisor (app/supervisor.py), with the settings
in the environment.
"""

from __future__ import annotations

import socket
import sys

from app.settings import load_settings


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other such sockets may share."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("keyledger run --workers N needs SO_REUSEPORT (Linux, macOS or BSD)")
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def main() -> int:
    import uvicorn

    from app.http_protocol import CoalescingHttpToolsProtocol

    settings = load_settings()
    sock = reuse_port_socket(settings.host, settings.port)
    config = uvicorn.Config(
        "app.main:create_app", factory=True, host=settings.host, port=settings.port,
        log_level=settings.log_level, lifespan="on", access_log=False,
        proxy_headers=False, server_header=False, date_header=False,
        http=CoalescingHttpToolsProtocol,
    )  # fmt: skip
    # Uvicorn listens on the socket once the application has started (lifespan), so no
    # connection waits on a worker that is still building its runtime.
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
