"""A TCP proxy on loopback between a service and PostgreSQL, for outage tests.

Real networking, under the test's control: the service connects to the proxy, the proxy
to the server (a TCP address or a unix socket), and the test can

* ``refuse()``: stop listening and reset every connection, as a stopped server does;
* ``freeze()``: accept connections and read whatever arrives, but forward nothing either
  way until ``resume()``, as a server stopped with SIGSTOP (or a partition) does: the
  client's data is acknowledged and nothing ever answers;
* ``break_next(match, deliver=..., application_name=...)``: on the next chunk that a
  client of that application name sends with ``match`` in it, break that connection,
  either before the server sees the chunk
  (``deliver=False``) or after the server has answered it (``deliver=True``: the reply is
  dropped, so the client cannot know that the statement ran).

The proxy runs its own event loop in a thread; its methods are called from the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.infrastructure.postgres.database import parse_url


@dataclass
class _Break:
    match: bytes
    deliver: bool
    application_name: bytes
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)  # hashed by identity, kept in a set
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    muted: bool = False  # the server's answers are dropped, not forwarded
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    head: bytes = b""  # the client's first bytes: its startup message names the application

    def abort(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class PgProxy:
    def __init__(self, upstream_url: str) -> None:
        params = parse_url(upstream_url)
        host, port = params.get("host", "127.0.0.1"), int(params.get("port") or 5432)
        self._unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._upstream = (host, port)
        self._dbname = params["dbname"]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._break: _Break | None = None
        self.port = _free_port()
        self._thread.start()
        self._call(self._listen())
        self._loop.call_soon_threadsafe(self._flowing.set)

    # --- control (from the test's thread) -------------------------------------------------
    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self._dbname}"

    def refuse(self) -> None:
        """Like a stopped server: connections reset, new ones refused."""
        self._call(self._refuse())

    def freeze(self) -> None:
        """Like a frozen server: nothing is forwarded until ``resume``."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        """Listen and forward again (held data goes on, as after SIGCONT)."""
        self._call(self._listen())
        self._loop.call_soon_threadsafe(self._flowing.set)

    def break_next(self, match: bytes, *, deliver: bool, application_name: str) -> threading.Event:
        """Break the connection of ``application_name`` when it next sends a chunk that
        contains ``match``; the event returned is set once it is broken."""
        armed = _Break(match, deliver, b"application_name\x00" + application_name.encode())
        self._loop.call_soon_threadsafe(setattr, self, "_break", armed)
        return armed.done

    def close(self) -> None:
        self._call(self._refuse())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.resume()

    # --- the proxy (on its own loop) ---------------------------------------------------
    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a frozen server accepts but never answers
        if self._unix is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, upstream=True),
                self._pump(up_reader, writer, link, upstream=False),
            )
        except (ConnectionError, OSError):
            pass  # either side went away: so does the other
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream: bool,
    ) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            if upstream and len(link.head) < 4096:
                link.head += data
            armed = self._break
            if upstream and armed is not None and _matches(armed, link, data):
                self._break = None
                await self._break_link(link, data, armed)
                return
            if link.muted and not upstream:
                link.answered.set()
                continue
            writer.write(data)
            await writer.drain()
        link.abort()

    async def _break_link(self, link: _Link, data: bytes, armed: _Break) -> None:
        if armed.deliver:
            # Let the server run the statement and wait for its answer (sent after the
            # commit), so that the statement surely ran; the answer is dropped.
            link.muted = True
            link.server.write(data)
            await link.server.drain()
            await asyncio.wait_for(link.answered.wait(), timeout=10)
        link.abort()
        armed.done.set()


def _matches(armed: _Break, link: _Link, data: bytes) -> bool:
    return armed.application_name in link.head and armed.match in data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
