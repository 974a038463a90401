"""One worker of ``keyledger run --workers N``, listening on a socket of its own.

Uvicorn's own workers share one listening socket, and asyncio accepts up to 100
connections each time it wakes: a client that opens its connections in a burst (a
connection pool, the benchmark's 64) found all of them on one worker while the others
idled. Each worker here binds the port itself with SO_REUSEPORT, and the kernel spreads
new connections over the workers' sockets (Linux hashes each to one of them).

Run as ``python -m app.entrypoints.server.workers`` by the supervisor
(app/entrypoints/server/supervisor.py), with the settings
in the environment.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import tempfile
from typing import IO

from app.settings import load_settings
from app.support.logs import configure_logging

LINUX = sys.platform.startswith("linux")


class PortInUseError(OSError):
    """Another service listens on (or is starting on) the host and port asked for."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"{host}:{port} is in use: another service listens there (two services on one "
            "port would each get a share of the connections); stop it or choose another --port",
        )


def _bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from error
        raise
    return sock


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other such sockets may share."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("keyledger run --workers N needs SO_REUSEPORT (Linux, macOS or BSD)")
    return _bound_socket(host, port, reuse_port=True)


class PortHold:
    """``host:port`` bound (not listening) for one service's life; its workers bind it too.

    On Linux the bound socket has SO_REUSEADDR but not SO_REUSEPORT: the workers' sockets
    (both options) may join it while it does not listen, but it cannot join another
    service's listening sockets, so a second service fails here rather than sharing the
    port. Two services starting at once could both bind before either listens: the
    claim, an abstract unix socket named after the address (one per network namespace,
    like the port, released when the process dies), lets only one of them on.
    """

    def __init__(self, host: str, port: int) -> None:
        # BSD and macOS let a SO_REUSEPORT socket join only SO_REUSEPORT sockets.
        self.socket = _bound_socket(host, port, reuse_port=not LINUX)
        self.port = int(self.socket.getsockname()[1])
        try:
            self._claim = _claim(host, str(self.socket.getsockname()[0]), self.port)
        except BaseException:
            self.socket.close()
            raise

    def close(self) -> None:
        self._claim.close()
        self.socket.close()


def hold_port(host: str, port: int) -> PortHold:
    """Bind ``host:port`` (any free port for 0) for this service alone.

    Raises `PortInUseError` if another service listens there or is starting there.
    """
    return PortHold(host, port)


def _claim(host: str, address: str, port: int) -> socket.socket | IO[bytes]:
    name = f"keyledger-port:{address}:{port}"
    if LINUX:
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(b"\0" + name.encode())
        except OSError as error:
            claim.close()
            raise PortInUseError(host, port) from error
        return claim
    return _lock_file(host, port, name)


def _lock_file(host: str, port: int, name: str) -> IO[bytes]:
    """Elsewhere: an exclusive flock on a file in the temporary directory."""
    import fcntl

    path = os.path.join(tempfile.gettempdir(), name.replace(":", "_") + ".lock")
    lock = open(path, "ab")  # noqa: SIM115 - held open for the service's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        lock.close()
        raise PortInUseError(host, port) from error
    return lock


def main() -> int:
    import uvicorn

    from app.entrypoints.server.http_protocol import CoalescingHttpToolsProtocol

    settings = load_settings()
    # Every logger, uvicorn's too, in the configured format (app.support.logs).
    configure_logging(settings.log_level, settings.log_format)
    sock = reuse_port_socket(settings.host, settings.port)
    config = uvicorn.Config(
        "app.entrypoints.server.asgi:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's lines go through ours
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        http=CoalescingHttpToolsProtocol,
    )
    # Uvicorn listens on the socket once the application has started (lifespan), so no
    # connection waits on a worker that is still building its runtime.
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
