"""The ASGI application: the AWS protocol at ``POST /``, the REST API everywhere else."""

from __future__ import annotations

from typing import Any

from app.aws_json import AwsJsonHandler
from app.rest import create_rest_app
from app.runtime import Runtime
from app.settings import load_settings


class KeyLedgerApp:
    """Routes AWS protocol calls to the lean handler before FastAPI sees them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.aws = AwsJsonHandler(runtime.service, runtime.identity)
        self.rest = create_rest_app(runtime)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self.aws(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/metrics":
            await self._metrics(send)
        else:
            await self.rest(scope, receive, send)

    async def _metrics(self, send: Any) -> None:
        """Prometheus text format: the writer's group-commit counters."""
        stats = self.runtime.writer.stats
        lines = [
            "# TYPE keyledger_writer_commands_total counter",
            f"keyledger_writer_commands_total {stats.commands}",
            "# TYPE keyledger_writer_batches_total counter",
            f"keyledger_writer_batches_total {stats.batches}",
            "# TYPE keyledger_writer_events_total counter",
            f"keyledger_writer_events_total {stats.events}",
            "# TYPE keyledger_writer_conflicts_total counter",
            f"keyledger_writer_conflicts_total {stats.conflicts}",
            "# TYPE keyledger_writer_commit_seconds_total counter",
            f"keyledger_writer_commit_seconds_total {stats.commit_seconds:.6f}",
        ]
        body = ("\n".join(lines) + "\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; version=0.0.4")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class WorkerApp:
    """One worker process of ``keyledger run --workers N``: builds its runtime at start-up."""

    def __init__(self) -> None:
        self.app: KeyLedgerApp | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                runtime = Runtime.build(load_settings(), run_migrations=False)
                runtime.start()
                self.app = KeyLedgerApp(runtime)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.app is not None:
                    self.app.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> WorkerApp:
    return WorkerApp()
